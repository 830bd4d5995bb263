"""The strategy interface: named, registered, pure pieces composed into a strategy.

A strategy turns a group batch into advantages, and may shape the loss and the sampling:

    reward transform (0-1) -> estimator (1) -> calibrations (0+, in order)   per sample [B, G]
    token calibrations (0+)                                                  per token, in the loss
    sampling calibration (0-1)                                               logits processor in rollouts

plus loss overrides (clip ranges, aggregation, entropy coefficient) and the number of
optimiser updates per batch (``updates_per_batch``). The trainer calls
these hooks and never branches on a strategy's name. Shapes: B prompts, G samples per
prompt, N = B*G sequences, T generated positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import torch

from workbench.errors import ConfigError, UnknownNameError
from workbench.strategies.catalog import LOSS_PREFIXES, OPTIM_OVERRIDES, PIECES, PRESETS, split_composition


@dataclass
class GroupBatch:
    """What a strategy sees of one step's rollouts."""

    problem_ids: list[str]        # [B]
    rewards: torch.Tensor         # [B, G] raw verifier rewards (never overwritten)
    correct: torch.Tensor         # [B, G] bool
    parsed: torch.Tensor          # [B, G] bool: the completion parses as an answer
    answers: list[list[str | None]]  # [B][G] parsed answers (for label-free rewards)
    entropy: torch.Tensor         # [B, G] mean token entropy of each sample
    step: int = 0
    history: Any = None           # the session's per-problem SuccessHistory (before this step)
    seed: int = 0

    @property
    def G(self) -> int:
        return int(self.rewards.shape[1])


@dataclass
class Advantages:
    reward: torch.Tensor          # [B, G] reward after the transform (the raw one stays in GroupBatch)
    advantage: torch.Tensor       # [B, G] per-sample advantage fed to the loss


@dataclass
class TokenBatch:
    """What a token calibration sees inside the loss (all [N, T], detached)."""

    logp: torch.Tensor            # log pi_theta of the sampled tokens (current update)
    old_logp: torch.Tensor        # log pi_old (sampling distribution)
    adv: torch.Tensor             # per-token advantage
    mask: torch.Tensor            # 1 on valid tokens
    generator: torch.Generator    # seeded per (run, step, update) for random selections
    clipped: torch.Tensor | None = None  # bool: the PPO clip is in force on this token (ratio outside the range)


@dataclass
class TokenShaping:
    """A token calibration's effect on the loss: a gradient gate, tokens whose surrogate is
    the unclipped -rho*A, and a per-token |log rho| penalty."""

    weight: torch.Tensor | None = None      # [N, T] multiplies the surrogate (0 = no gradient)
    extra_coef: torch.Tensor | None = None  # [N, T] coefficient c_t of an added c_t * |log pi - log pi_old|
    unclipped: torch.Tensor | None = None   # [N, T] bool: these tokens take -rho*A instead of the clipped surrogate
    selected: int = 0                       # tokens affected (logged)

    def loss_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``workbench.losses.policy_loss`` that apply this shaping."""
        return {"token_weight": self.weight, "unclipped": self.unclipped, "abs_logratio_coef": self.extra_coef}


@dataclass
class Piece:
    kind: str
    name: str
    fn: Callable[..., Any]
    params: type
    doc: str = ""


REGISTRY: dict[str, Piece] = {}


def register(kind: str, name: str):
    """Register ``fn`` as the implementation of catalogue piece ``name``. Signatures:

    - reward:      fn(batch, p) -> [B, G] rewards
    - estimator:   fn(rewards [B, G], batch, p) -> [B, G] advantages
    - calibration: fn(adv [B, G], rewards [B, G], batch, p) -> [B, G] advantages
    - token:       fn(tokens: TokenBatch, p) -> TokenShaping
    - sampling:    a class; see ``workbench.strategies.memory``
    """
    spec = PIECES.get(name)
    if spec is None or spec.kind != kind:
        raise ValueError(f"piece {name!r} of kind {kind!r} is not in the catalogue")

    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"piece {name!r} registered twice")
        REGISTRY[name] = Piece(kind, name, fn, spec.params, (fn.__doc__ or "").strip())
        return fn

    return deco


@dataclass
class Strategy:
    """A composition of pieces with their parameter values, and its own state (e.g. the
    memory network), which survives being switched away from and back to."""

    name: str
    reward: list[tuple[Piece, Any]] = field(default_factory=list)
    estimator: tuple[Piece, Any] | None = None
    calibrations: list[tuple[Piece, Any]] = field(default_factory=list)
    token: list[tuple[Piece, Any]] = field(default_factory=list)
    sampling: tuple[Piece, Any] | None = None
    loss_overrides: dict[str, Any] = field(default_factory=dict)
    optim_overrides: dict[str, Any] = field(default_factory=dict)   # set by parameters: {"updates_per_batch": 4}
    min_updates_per_batch: int = 1                                  # a preset's floor (kl_cov: 2)
    params: dict[str, Any] = field(default_factory=dict)   # the dotted parameters it was built with
    state: dict[str, Any] = field(default_factory=dict)    # per-piece state objects

    def advantages(self, batch: GroupBatch) -> Advantages:
        rewards = batch.rewards.float()
        for piece, p in self.reward:
            rewards = piece.fn(batch, p).float()
        est, p = self.estimator
        adv = est.fn(rewards, batch, p)
        for piece, p in self.calibrations:
            adv = piece.fn(adv, rewards, batch, p)
        return Advantages(reward=rewards, advantage=adv)

    def shape_tokens(self, tokens: TokenBatch) -> TokenShaping:
        """Combine the token calibrations (gates multiply, penalties add, unclipped sets unite)."""
        out = TokenShaping()
        for piece, p in self.token:
            s = piece.fn(tokens, p)
            if s.weight is not None:
                out.weight = s.weight if out.weight is None else out.weight * s.weight
            if s.extra_coef is not None:
                out.extra_coef = s.extra_coef if out.extra_coef is None else out.extra_coef + s.extra_coef
            if s.unclipped is not None:
                out.unclipped = s.unclipped if out.unclipped is None else out.unclipped | s.unclipped
            out.selected += s.selected
        return out

    def sampler(self, context: dict[str, Any]):
        """The sampling calibration's object (created once, then kept in ``state``)."""
        if self.sampling is None:
            return None
        piece, p = self.sampling
        obj = self.state.get(piece.name)
        if obj is None:
            obj = self.state[piece.name] = piece.fn(p, **context)
        else:
            obj.params = p
        return obj

    def describe(self) -> dict:
        """JSON-serialisable description (stored with events and runs)."""
        pieces = [*self.reward, self.estimator, *self.calibrations, *self.token,
                  *([self.sampling] if self.sampling else [])]
        return {"name": self.name, "pieces": [pc.name for pc, _ in pieces],
                "params": {pc.name: _jsonable(dataclasses.asdict(p)) for pc, p in pieces if dataclasses.fields(p)},
                "loss": _jsonable(dict(self.loss_overrides)), "optim": dict(self.optim_overrides),
                "min_updates_per_batch": self.min_updates_per_batch}

    def updates_per_batch(self, configured: int) -> int:
        """Optimiser updates on each batch: ``optim.updates_per_batch`` among the strategy's
        parameters if given, else the run's configured value raised to the preset's floor."""
        if "updates_per_batch" in self.optim_overrides:
            return int(self.optim_overrides["updates_per_batch"])
        return max(int(configured), self.min_updates_per_batch)


def _jsonable(d: dict) -> dict:
    import math

    return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in d.items()}


def build_strategy(spec: str, params: dict[str, Any] | None = None) -> Strategy:
    """A preset name or a '+'-joined composition of piece names, with dotted parameters
    ``{"piece.param": value}`` (and ``{"loss.eps_high": 0.28}`` or ``clip.eps_high`` for
    loss overrides, ``{"optim.updates_per_batch": 4}`` for the updates per batch). A preset's
    loss overrides replace the run's config values; parameters given here replace both."""
    from workbench.config import LossConfig, parse_value

    params = dict(params or {})
    spec = spec.strip()
    loss: dict[str, Any] = dict(PRESETS[spec]["loss"]) if spec in PRESETS else {}
    optim: dict[str, Any] = {}
    names = split_composition(spec)
    unknown = [n for n in names if n not in PIECES]
    if unknown or not names:
        raise UnknownNameError("strategy", spec, [*PRESETS, *PIECES],
                               "Use a preset, or join pieces with '+', e.g. 'grpo+negative_only'")
    missing = [n for n in names if n not in REGISTRY]
    if missing:
        raise ConfigError(f"strategy {spec!r}: piece(s) {', '.join(missing)} have no implementation loaded")
    loss_hints = get_type_hints(LossConfig)
    by_piece: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        piece, _, pname = key.partition(".")
        if piece in LOSS_PREFIXES:
            if pname not in loss_hints:
                raise ConfigError(f"strategy parameter {key!r}: the loss has no field {pname!r}; "
                                  f"valid: {', '.join(f'loss.{f}' for f in loss_hints)}")
            loss[pname] = parse_value(value, loss_hints[pname], key)
            continue
        if piece == "optim":
            if pname not in OPTIM_OVERRIDES:
                raise ConfigError(f"strategy parameter {key!r}: a strategy can override only "
                                  f"{', '.join(f'optim.{f}' for f in OPTIM_OVERRIDES)}; set other optimiser "
                                  f"fields in the run's config ({key}=... outside the strategy)")
            optim[pname] = parse_value(value, OPTIM_OVERRIDES[pname], key)
            if pname == "updates_per_batch" and optim[pname] < 1:
                raise ConfigError(f"strategy parameter {key!r} = {optim[pname]} is not allowed: expected >= 1")
            continue
        if piece not in names:
            raise ConfigError(f"strategy parameter {key!r}: piece {piece!r} is not part of {spec!r} "
                              f"(its pieces: {', '.join(names)}; loss overrides go as 'loss.<field>', "
                              f"optimiser overrides as 'optim.updates_per_batch')")
        by_piece.setdefault(piece, {})[pname] = value
    strat = Strategy(name=spec, loss_overrides=loss, optim_overrides=optim, params=params,
                     min_updates_per_batch=int(PRESETS[spec]["min_updates_per_batch"]) if spec in PRESETS else 1)
    for n in names:
        piece = REGISTRY[n]
        p = _make_params(piece, by_piece.get(n, {}))
        if piece.kind == "reward":
            strat.reward.append((piece, p))
        elif piece.kind == "estimator":
            if strat.estimator is not None:
                raise ConfigError(f"strategy {spec!r} has two estimators ({strat.estimator[0].name}, {n}); use one")
            strat.estimator = (piece, p)
        elif piece.kind == "calibration":
            strat.calibrations.append((piece, p))
        elif piece.kind == "token":
            strat.token.append((piece, p))
        else:
            if strat.sampling is not None:
                raise ConfigError(f"strategy {spec!r} has two sampling calibrations; use one")
            strat.sampling = (piece, p)
    if strat.estimator is None:
        ests = sorted(k for k, v in PIECES.items() if v.kind == "estimator")
        raise ConfigError(f"strategy {spec!r} has no estimator; add one of: {', '.join(ests)}")
    if len(strat.reward) > 1:
        raise ConfigError(f"strategy {spec!r} has more than one reward transform")
    return strat


def _make_params(piece: Piece, values: dict[str, Any]):
    from workbench.config import parse_value

    fields = {f.name: f for f in dataclasses.fields(piece.params)}
    bad = set(values) - set(fields)
    if bad:
        valid = ", ".join(f"{piece.name}.{f}" for f in fields) or "none"
        raise ConfigError(f"unknown parameter(s) {', '.join(piece.name + '.' + b for b in sorted(bad))}; "
                          f"valid parameters of {piece.name}: {valid}")
    hints = get_type_hints(piece.params)
    kwargs = {k: parse_value(v, hints[k], f"{piece.name}.{k}") for k, v in values.items()}
    p = piece.params(**kwargs)
    check = getattr(p, "validate", None)
    if check:
        check()
    return p

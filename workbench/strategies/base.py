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
from typing import Any

import torch

from workbench.errors import ConfigError
from workbench.strategies.catalog import PIECES, PRESETS, parse_strategy


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
    loss overrides replace the run's config values; parameters given here replace both.
    Parsing and validation are ``catalog.parse_strategy``'s, shared with the dashboard."""
    from workbench.strategies import pieces  # noqa: F401  (registers every implementation)

    parsed = parse_strategy(spec, params)
    spec = parsed.spec
    missing = [n for n in parsed.pieces if n not in REGISTRY]
    if missing:
        raise ConfigError(f"strategy {spec!r}: piece(s) {', '.join(missing)} have no implementation loaded")
    strat = Strategy(name=spec, loss_overrides=dict(parsed.loss), optim_overrides=dict(parsed.optim),
                     params=dict(params or {}),
                     min_updates_per_batch=int(PRESETS[spec]["min_updates_per_batch"]) if spec in PRESETS else 1)
    for n in parsed.pieces:
        piece, p = REGISTRY[n], parsed.piece_params[n]
        if piece.kind == "reward":
            strat.reward.append((piece, p))
        elif piece.kind == "estimator":
            strat.estimator = (piece, p)
        elif piece.kind == "calibration":
            strat.calibrations.append((piece, p))
        elif piece.kind == "token":
            strat.token.append((piece, p))
        else:
            strat.sampling = (piece, p)
    return strat

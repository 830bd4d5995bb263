"""The strategy interface: named, registered, pure pieces composed into a strategy.

A strategy turns a group batch into advantages in three stages, each a registered piece:

    reward transform (0 or 1)  ->  estimator (exactly 1)  ->  calibrations (0 or more, in order)

plus optional loss overrides (e.g. clip ranges). The trainer calls ``Strategy.advantages``
and never branches on a strategy's name. Shapes: B prompts, G samples per prompt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from workbench.errors import ConfigError, UnknownNameError

KINDS = ("reward", "estimator", "calibration")


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
    history: Any = None           # the session's per-problem SuccessHistory
    seed: int = 0

    @property
    def G(self) -> int:
        return int(self.rewards.shape[1])


@dataclass
class Advantages:
    reward: torch.Tensor          # [B, G] reward after the transform (the raw one stays in GroupBatch)
    advantage: torch.Tensor       # [B, G] per-sample advantage fed to the loss


@dataclass
class Piece:
    kind: str
    name: str
    fn: Callable[..., torch.Tensor]
    params: type                  # a dataclass of the piece's parameters (defaults = the papers' or our choice)
    doc: str = ""


REGISTRY: dict[str, Piece] = {}


@dataclass
class NoParams:
    """This piece has no parameters."""


def register(kind: str, name: str, params: type = NoParams):
    """Register ``fn`` as a piece. Signatures by kind:

    - reward:      fn(batch, p) -> [B, G] rewards
    - estimator:   fn(rewards [B, G], batch, p) -> [B, G] advantages
    - calibration: fn(adv [B, G], rewards [B, G], batch, p) -> [B, G] advantages
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")

    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"piece {name!r} registered twice")
        REGISTRY[name] = Piece(kind, name, fn, params, (fn.__doc__ or "").strip())
        return fn

    return deco


@dataclass
class Strategy:
    """A composition of pieces with their parameter values."""

    name: str
    reward: list[tuple[Piece, Any]] = field(default_factory=list)
    estimator: tuple[Piece, Any] | None = None
    calibrations: list[tuple[Piece, Any]] = field(default_factory=list)
    loss_overrides: dict[str, Any] = field(default_factory=dict)

    def advantages(self, batch: GroupBatch) -> Advantages:
        rewards = batch.rewards.float()
        for piece, p in self.reward:
            rewards = piece.fn(batch, p)
        est, p = self.estimator
        adv = est.fn(rewards, batch, p)
        for piece, p in self.calibrations:
            adv = piece.fn(adv, rewards, batch, p)
        return Advantages(reward=rewards, advantage=adv)

    def describe(self) -> dict:
        """JSON-serialisable description (stored with events and runs)."""
        pieces = [*self.reward, self.estimator, *self.calibrations]
        return {"name": self.name, "pieces": [pc.name for pc, _ in pieces],
                "params": {pc.name: dataclasses.asdict(p) for pc, p in pieces if dataclasses.fields(p)},
                "loss": dict(self.loss_overrides)}


#: Named presets: a preset is only a composition (pieces joined by '+') plus loss overrides.
PRESETS: dict[str, dict[str, Any]] = {}


def preset(name: str, composition: str, loss: dict | None = None, doc: str = "") -> None:
    PRESETS[name] = {"composition": composition, "loss": dict(loss or {}), "doc": doc}


def build_strategy(spec: str, params: dict[str, Any] | None = None) -> Strategy:
    """A preset name or a '+'-joined composition of piece names, with dotted parameters
    ``{"piece.param": value}`` (also ``{"loss.eps_high": 0.28}`` for loss overrides)."""
    params = dict(params or {})
    spec = spec.strip()
    loss: dict[str, Any] = {}
    if spec in PRESETS:
        composition = PRESETS[spec]["composition"]
        loss.update(PRESETS[spec]["loss"])
    else:
        composition = spec
    names = [n.strip() for n in composition.split("+") if n.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        raise UnknownNameError("strategy", spec, [*PRESETS, *REGISTRY],
                               "Use a preset or join pieces with '+', e.g. 'grpo+negative_only'")
    by_piece: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        piece, _, pname = key.partition(".")
        if piece == "loss":
            loss[pname] = value
            continue
        if piece not in names:
            raise ConfigError(f"strategy parameter {key!r}: piece {piece!r} is not part of {spec!r} "
                              f"(its pieces: {', '.join(names)}; loss overrides go as 'loss.<field>')")
        by_piece.setdefault(piece, {})[pname] = value
    strat = Strategy(name=spec, loss_overrides=loss)
    for n in names:
        piece = REGISTRY[n]
        p = _make_params(piece, by_piece.get(n, {}))
        if piece.kind == "reward":
            strat.reward.append((piece, p))
        elif piece.kind == "estimator":
            if strat.estimator is not None:
                raise ConfigError(f"strategy {spec!r} has two estimators ({strat.estimator[0].name}, {n}); use one")
            strat.estimator = (piece, p)
        else:
            strat.calibrations.append((piece, p))
    if strat.estimator is None:
        ests = sorted(k for k, v in REGISTRY.items() if v.kind == "estimator")
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
    from typing import get_type_hints

    hints = get_type_hints(piece.params)
    kwargs = {k: parse_value(v, hints[k], f"{piece.name}.{k}") for k, v in values.items()}
    return piece.params(**kwargs)

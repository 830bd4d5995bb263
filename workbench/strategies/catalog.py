"""What strategies exist: every piece's kind, parameters and defaults, and the presets.

Torch-free on purpose: the dashboard (which imports no torch) builds its strategy forms
from this module. The implementations live beside it and register against these names;
a test holds the two in agreement. Defaults marked (choice) are this project's where the
source paper left the detail open (see docs/strategies.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, get_type_hints


def _p(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _need(ok: bool, piece: str, name: str, value: Any, expected: str) -> None:
    if not ok:
        from workbench.errors import ConfigError

        raise ConfigError(f"{piece}.{name} = {value!r} is not allowed: expected {expected}")


# ---------------------------------------------------------------- parameters per piece
@dataclass
class NoParams:
    """This piece has no parameters."""


@dataclass
class RandomRewardParams:
    p: float = _p(0.5, "Probability of reward 1, independent of the output.")

    def validate(self) -> None:
        _need(0 <= self.p <= 1, "random", "p", self.p, "a probability in [0, 1]")


@dataclass
class GrpoParams:
    eps: float = _p(1e-6, "Added to the group std in the denominator.")


@dataclass
class WReinforceParams:
    lam: float = _p(0.1, "Weight lambda of a correct sample (a wrong one gets -1).")


@dataclass
class InverseSuccessParams:
    alpha: float = _p(1.0, "Exponent of the factor (G - c)^alpha on positive advantages.")
    renormalize: bool = _p(False, "(choice) Divide the factors by their batch mean over positive samples.")

    def validate(self) -> None:
        _need(self.alpha >= 0, "inverse_success", "alpha", self.alpha, ">= 0")


@dataclass
class BbgParams:
    k: int = _p(16, "(choice) The k of the Pass@k whose posterior slope is the boundary utility.")
    tau: float = _p(0.01, "(choice) Gate: groups with u_k < tau*(G+1) get no gradient.")
    a0: float = _p(1.0, "Beta prior a0.")
    b0: float = _p(1.0, "Beta prior b0.")
    w0: float = _p(1.0, "(choice) Magnitude of the signed REINFORCE term -w0 on all-fail groups.")
    history: bool = _p(False, "(choice) Count c and G over the problem's past rollouts, decayed by gamma.")
    gamma: float = _p(0.9, "(choice) Per-step decay of past rollouts when history is on.")

    def validate(self) -> None:
        _need(self.k >= 1, "bbg", "k", self.k, "an integer >= 1")
        _need(self.tau >= 0, "bbg", "tau", self.tau, ">= 0")
        _need(self.a0 > 0 and self.b0 > 0, "bbg", "a0/b0", (self.a0, self.b0), "positive prior counts")
        _need(0 < self.gamma <= 1, "bbg", "gamma", self.gamma, "in (0, 1]")


@dataclass
class BucketMaskParams:
    theta: float = _p(0.75, "Drop groups whose success fraction c/G >= theta.")

    def validate(self) -> None:
        _need(0 < self.theta <= 1, "bucket_mask", "theta", self.theta, "in (0, 1]")


@dataclass
class ClipCovParams:
    ratio: float = _p(2e-4, "Fraction r of the batch's tokens whose gradient is zeroed (at least one).")
    low: float = _p(1.0, "Lower bound of the centred log-prob x advantage product.")
    high: float = _p(5.0, "Upper bound of the centred product.")

    def validate(self) -> None:
        _need(0 < self.ratio <= 1, "clip_cov", "ratio", self.ratio, "in (0, 1]")
        _need(self.low <= self.high, "clip_cov", "low", self.low, f"<= high ({self.high})")


@dataclass
class KlCovParams:
    ratio: float = _p(2e-4, "Fraction r of the batch's tokens (top by covariance) penalised (at least one).")
    coef: float = _p(1.0, "k: weight of |log pi_theta - log pi_old| on the selected tokens.")
    clip_others: bool = _p(False, "Keep the PPO-clipped surrogate on the tokens not selected (the authors' code "
                                  "uses the unclipped one on every token).")

    def validate(self) -> None:
        _need(0 < self.ratio <= 1, "kl_cov", "ratio", self.ratio, "in (0, 1]")
        _need(self.coef >= 0, "kl_cov", "coef", self.coef, ">= 0")


@dataclass
class MemoryParams:
    mu: float = _p(0.3, "(choice) Sampling logits z_theta - mu*log pi_m: sampling ∝ pi_theta / pi_m^mu.")
    train_on: str = _p("correct", "(choice) Which rollouts train the memory: correct or all.")
    steps: int = _p(2, "Memory optimiser steps per training step.")
    lr: float = _p(3e-3, "Memory learning rate (Adam).")
    hidden: int = _p(64, "Memory model width (a one-layer GRU language model).")
    buffer: int = _p(512, "How many recent rollouts the memory trains on.")
    batch: int = _p(128, "Sequences per memory optimiser step (sampled from the buffer).")

    def validate(self) -> None:
        _need(self.mu >= 0, "memory", "mu", self.mu, ">= 0")
        _need(self.train_on in ("correct", "all"), "memory", "train_on", self.train_on, "'correct' or 'all'")
        _need(self.steps >= 0, "memory", "steps", self.steps, ">= 0")
        _need(self.lr > 0, "memory", "lr", self.lr, "> 0")
        _need(self.hidden >= 1 and self.buffer >= 1 and self.batch >= 1, "memory", "hidden/buffer/batch",
              (self.hidden, self.buffer, self.batch), "positive integers")


# ---------------------------------------------------------------- pieces
@dataclass(frozen=True)
class PieceSpec:
    kind: str          # reward | estimator | calibration | token | sampling
    params: type
    summary: str


KINDS = ("reward", "estimator", "calibration", "token", "sampling")

PIECES: dict[str, PieceSpec] = {
    # reward transforms (before the estimator)
    "random": PieceSpec("reward", RandomRewardParams, "Spurious reward: Bernoulli(p), independent of the output."),
    "format_only": PieceSpec("reward", NoParams, "1 if the completion parses as an answer of the task's form."),
    "incorrect_only": PieceSpec("reward", NoParams, "1 if it parses and is wrong."),
    "majority_vote": PieceSpec("reward", NoParams, "1 if its answer is the group's most frequent parsed answer."),
    "entropy_min": PieceSpec("reward", NoParams, "EM-RL: r = -mean token entropy of the sample."),
    # estimators
    "grpo": PieceSpec("estimator", GrpoParams, "(r - mean) / (std + eps) within the group."),
    "dr_grpo": PieceSpec("estimator", NoParams, "r - mean (no std); pair with seq_sum_const."),
    "rloo": PieceSpec("estimator", NoParams, "r_i - mean of the other samples."),
    "reinforce": PieceSpec("estimator", NoParams, "r_i, no baseline."),
    "psr": PieceSpec("estimator", NoParams, "+1 if correct else 0."),
    "nsr": PieceSpec("estimator", NoParams, "0 if correct else -1."),
    "w_reinforce": PieceSpec("estimator", WReinforceParams, "lambda if correct else -1."),
    "zero": PieceSpec("estimator", NoParams, "A = 0 (for loss-only objectives such as EM-FT)."),
    # calibrations (advantage -> advantage, in order)
    "negative_only": PieceSpec("calibration", NoParams, "GRPO-N: keep negative advantages only."),
    "inverse_success": PieceSpec("calibration", InverseSuccessParams, "IAC: positive A times (G - c)^alpha."),
    "bbg": PieceSpec("calibration", BbgParams, "Bayesian Boundary Gating by the posterior Pass@k slope."),
    "zero_success_only": PieceSpec("calibration", NoParams, "Only all-fail groups, with A = -1."),
    "bucket_mask": PieceSpec("calibration", BucketMaskParams, "Drop groups with c/G >= theta."),
    # per-token calibrations (inside the loss)
    "clip_cov": PieceSpec("token", ClipCovParams, "Zero the gradient of a random few high-covariance tokens."),
    "kl_cov": PieceSpec("token", KlCovParams, "KL penalty on the top-covariance tokens."),
    # sampling calibration
    "memory": PieceSpec("sampling", MemoryParams, "DLC: sample away from modes a memory LM has seen."),
}

# ---------------------------------------------------------------- presets
PRESETS: dict[str, dict[str, Any]] = {}


def _preset(name: str, composition: str, doc: str, min_updates: int = 1, **loss: Any) -> None:
    """``min_updates``: the preset makes at least this many optimiser updates per batch."""
    PRESETS[name] = {"composition": composition, "loss": loss, "min_updates_per_batch": min_updates, "doc": doc}


_preset("grpo", "grpo", "Group-normalised advantages (Shao et al. 2024).")
_preset("dr_grpo", "dr_grpo", "Dr. GRPO: no std, no length normalisation (Liu et al. 2025).",
        aggregation="seq_sum_const")
_preset("rloo", "rloo", "Leave-one-out baseline (Ahmadian et al. 2024).")
_preset("iac", "grpo+inverse_success", "GRPO with inverse-success advantage calibration.")
_preset("iac_dlc", "grpo+inverse_success+memory", "IAC plus distribution-level calibration (memory network).")
_preset("bbg", "grpo+bbg", "Bayesian Boundary Gating.")
_preset("zero_success_only", "grpo+zero_success_only", "Train only on all-fail groups.")
_preset("bucket_mask", "grpo+bucket_mask", "Mask groups that are already mostly solved.")
_preset("grpo_n", "grpo+negative_only", "GRPO-N: relative negative gradients only.")
_preset("nsr", "nsr", "Negative sample reinforcement (Zhu et al. 2025).")
_preset("psr", "psr", "Positive sample reinforcement (Zhu et al. 2025).")
_preset("w_reinforce", "w_reinforce", "Weighted REINFORCE, lambda = 0.1 (Zhu et al. 2025).")
_preset("spurious_random", "random+grpo", "Random rewards with GRPO and clipping.")
_preset("spurious_random_noclip", "random+grpo", "Random rewards with GRPO and no clipping.",
        eps_low=math.inf, eps_high=math.inf)
_preset("entropy_min", "entropy_min+grpo", "EM-RL: reward = negative mean token entropy.")
_preset("em_ft", "zero", "EM-FT: minimise token entropy on own samples, no reward.", entropy_coef=-0.01)
_preset("clip_higher", "grpo", "DAPO's clip-higher: eps_high = 0.28.", eps_high=0.28)
_preset("clip_cov", "grpo+clip_cov", "Clip-Cov (Cui et al. 2025).")
_preset("kl_cov", "grpo+kl_cov", "KL-Cov (Cui et al. 2025); at least two updates per batch, since the penalty "
        "has no gradient while the ratio is 1.", min_updates=2)

#: Parameter namespaces for loss overrides: ``loss.eps_high`` and ``clip.eps_high`` alike.
LOSS_PREFIXES = ("loss", "clip")

#: Optimiser fields a strategy's parameters may set (``optim.updates_per_batch=4``), with their types.
OPTIM_OVERRIDES: dict[str, type] = {"updates_per_batch": int}


def split_composition(spec: str) -> list[str]:
    """Piece names of a preset or a '+'-joined composition (no validation)."""
    spec = spec.strip()
    comp = PRESETS[spec]["composition"] if spec in PRESETS else spec
    return [n.strip() for n in comp.split("+") if n.strip()]


@dataclass(frozen=True)
class StrategySpec:
    """A parsed, validated strategy: what ``parse_strategy`` returns and both the engine
    (``build_strategy``) and the dashboard's forms use."""

    spec: str                                  # the preset name or composition as given
    pieces: tuple[str, ...]                    # piece names, in composition order
    piece_params: dict[str, Any]               # piece -> its params dataclass (validated)
    loss: dict[str, Any]                       # loss overrides: the preset's, then the given ones
    optim: dict[str, Any]                      # optimiser overrides (updates_per_batch)
    values: dict[str, Any]                     # the given "piece.param" keys, typed


def parse_strategy(spec: Any, params: dict[str, Any] | None = None) -> StrategySpec:
    """The one parser of a strategy spec and its dotted parameters (torch-free).

    ``spec``: a preset name or pieces joined by '+' (exactly one estimator, at most one
    reward transform and one sampling calibration, no piece twice). ``params``:
    ``{"piece.param": value}`` for the spec's pieces, ``loss.<field>`` (or ``clip.<field>``)
    for loss overrides, ``optim.updates_per_batch``. Values may be strings (parsed to the
    field's type). Raises ConfigError (UnknownNameError for unknown names) naming what is
    wrong and what is valid.
    """
    from workbench.config import LossConfig, parse_value
    from workbench.errors import ConfigError, UnknownNameError

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("strategy: choose a preset (e.g. grpo, bbg) or type a composition such as "
                          "grpo+negative_only")
    spec = spec.strip()
    comp = PRESETS[spec]["composition"] if spec in PRESETS else spec
    names = [n.strip() for n in comp.split("+")]
    if any(not n for n in names):
        raise ConfigError(f"strategy {spec!r}: empty piece name (join pieces with a single '+')")
    unknown = [n for n in names if n not in PIECES]
    if unknown:
        raise UnknownNameError("strategy", spec if len(names) == 1 else ", ".join(unknown), sorted({*PRESETS, *PIECES}),
                               f"unknown piece(s) {', '.join(unknown)}. Use a preset, or join pieces with '+', "
                               "e.g. 'grpo+negative_only'")
    if len(set(names)) != len(names):
        raise ConfigError(f"strategy {spec!r} repeats a piece")
    kinds = [PIECES[n].kind for n in names]
    ests = [n for n in names if PIECES[n].kind == "estimator"]
    if not ests:
        valid = sorted(k for k, v in PIECES.items() if v.kind == "estimator")
        raise ConfigError(f"strategy {spec!r} has no estimator; add one of: {', '.join(valid)} "
                          "(a strategy needs exactly one estimator)")
    if len(ests) > 1:
        raise ConfigError(f"strategy {spec!r} has two estimators ({', '.join(ests)}); use one "
                          "(a strategy needs exactly one estimator)")
    if kinds.count("reward") > 1:
        raise ConfigError(f"strategy {spec!r} has more than one reward transform")
    if kinds.count("sampling") > 1:
        raise ConfigError(f"strategy {spec!r} has two sampling calibrations; use one")

    loss: dict[str, Any] = dict(PRESETS[spec]["loss"]) if spec in PRESETS else {}
    optim: dict[str, Any] = {}
    values: dict[str, Any] = {}
    raw: dict[str, dict[str, Any]] = {}
    loss_hints = get_type_hints(LossConfig)
    for key, value in dict(params or {}).items():
        key = str(key).strip()
        piece, _, pname = key.partition(".")
        if piece in LOSS_PREFIXES:
            if pname not in loss_hints:
                raise ConfigError(f"strategy parameter {key!r}: the loss has no field {pname!r}; "
                                  f"valid: {', '.join(f'loss.{f}' for f in loss_hints)}")
            loss[pname] = values[key] = _no_nan(parse_value(value, loss_hints[pname], key), key)
            continue
        if piece == "optim":
            if pname not in OPTIM_OVERRIDES:
                raise ConfigError(f"strategy parameter {key!r}: a strategy can override only "
                                  f"{', '.join(f'optim.{f}' for f in OPTIM_OVERRIDES)}; set other optimiser "
                                  f"fields in the run's config ({key}=... outside the strategy)")
            optim[pname] = values[key] = parse_value(value, OPTIM_OVERRIDES[pname], key)
            if pname == "updates_per_batch" and optim[pname] < 1:
                raise ConfigError(f"strategy parameter {key!r} = {optim[pname]} is not allowed: expected >= 1")
            continue
        if piece not in names:
            raise ConfigError(f"strategy parameter {key!r}: piece {piece!r} is not part of {spec!r} "
                              f"(its pieces: {', '.join(names)}; loss overrides go as 'loss.<field>', "
                              f"optimiser overrides as 'optim.updates_per_batch')")
        raw.setdefault(piece, {})[pname] = value
    piece_params: dict[str, Any] = {}
    for n in names:
        cls = PIECES[n].params
        fields = [f.name for f in dataclasses.fields(cls)]
        given = raw.get(n, {})
        bad = sorted(set(given) - set(fields))
        if bad:
            valid = ", ".join(f"{n}.{f}" for f in fields) or "none"
            raise ConfigError(f"unknown parameter(s) {', '.join(n + '.' + b for b in bad)}; "
                              f"valid parameters of {n}: {valid}")
        hints = get_type_hints(cls)
        typed = {k: _no_nan(parse_value(v, hints[k], f"{n}.{k}"), f"{n}.{k}") for k, v in given.items()}
        values.update({f"{n}.{k}": v for k, v in typed.items()})
        p = cls(**typed)
        check = getattr(p, "validate", None)
        if check:
            check()
        piece_params[n] = p
    order = [str(k).strip() for k in dict(params or {})]
    values = {k: values[k] for k in order if k in values}          # as given
    return StrategySpec(spec, tuple(names), piece_params, loss, optim, values)


def _no_nan(v: Any, key: str) -> Any:
    if isinstance(v, float) and math.isnan(v):
        from workbench.errors import ConfigError

        raise ConfigError(f"{key} = nan is not a valid value")
    return v


def describe_params(name: str) -> dict[str, dict[str, Any]]:
    """{param: {"default", "help", "type"}} of a piece (for forms and `workbench strategies`)."""
    out = {}
    for f in dataclasses.fields(PIECES[name].params):
        out[f.name] = {"default": f.default, "help": f.metadata.get("help", ""), "type": type(f.default).__name__}
    return out


def catalog() -> dict[str, Any]:
    """Everything a UI needs, JSON-serialisable (inf as the string 'inf')."""
    def clean(v):
        return "inf" if isinstance(v, float) and math.isinf(v) else v

    return {
        "presets": {n: {"composition": p["composition"], "loss": {k: clean(v) for k, v in p["loss"].items()},
                        "min_updates_per_batch": p["min_updates_per_batch"], "doc": p["doc"]}
                    for n, p in PRESETS.items()},
        "pieces": {n: {"kind": s.kind, "summary": s.summary,
                       "params": {k: {**v, "default": clean(v["default"])} for k, v in describe_params(n).items()}}
                   for n, s in PIECES.items()},
    }

"""The simulator's typed configuration and the "world" it describes.

A world is P problems × M solution modes. Each mode of each problem has a reward (binary
by default: a mode is *correct* when its reward is > 0, as the strategies count
successes) and a base probability, from which the policy starts. Shapes: P problems,
M modes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import numpy as np

from workbench.config import AGGREGATIONS, LossConfig, parse_value
from workbench.errors import ConfigError

LAYOUTS = ("random", "shared")
OPTIMIZERS = ("sgd", "adam")
UPDATES = ("gradient", "natural")


def _f(default: Any, help: str) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: [*d] if isinstance(d, list) else dict(d),
                     metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class SimConfig:
    """Everything that defines a simulator run (saved with it in the run store)."""

    problems: int = _f(32, "P: number of problems.")
    modes: int = _f(8, "M: solution modes per problem (the policy's 'vocabulary' for a problem).")
    correct_modes: int = _f(3, "How many of a problem's M modes are correct (reward 1); the rest have reward 0.")
    layout: str = _f("random", "Which modes are correct, and the base model's order of preference among them: "
                               "'random' (drawn per problem, so a mode that is correct for one problem is often "
                               "wrong for another) or 'shared' (modes 0..C-1 are correct everywhere, mode 0 the "
                               "favourite: a mode index is the same solution strategy in every problem).")
    success: list = _f([0.02, 0.9], "[lo, hi]: the base model's success probabilities, spaced evenly on the logit "
                                    "scale over the problems (in a seeded order).")
    skew: float = _f(1.0, "Zipf exponent of the base distribution within the correct and within the wrong modes "
                          "(mode j of a kind has weight (j+1)^-skew; 0 = uniform).")
    mode_rewards: list = _f([], "Optional [P][M] reward table; overrides correct_modes and layout. Correct = reward > 0.")
    base_probs: list = _f([], "Optional [P][M] base probabilities (rows normalised); overrides success and skew.")
    coupling: float = _f(0.0, "Semantic coupling kappa in [0, 1]: the logit of (problem p, mode m) is "
                              "z0[p,m] + sqrt(1-kappa)*a[p,m] + sqrt(kappa)*s[m], so an update of one problem "
                              "moves mode m of every problem by kappa times as much (0 = tabular, 1 = shared).")
    train_problems: int = _f(0, "Train on the first n problems only (the rest are held out, evaluated as split "
                                "'eval'); 0 = train on all.")
    group_size: int = _f(8, "G: samples per problem in a training group.")
    prompts_per_step: int = _f(8, "B: problems per training step (drawn without replacement).")
    lr: float = _f(0.05, "Learning rate. With adam (the default) each logit parameter moves by about lr per update "
                         "whatever the gradient's size; with sgd the loss is a mean over B*G samples, so a "
                         "problem's logits move by about lr/B times its group-mean gradient (try lr = 2).")
    optimizer: str = _f("adam", "adam (as the LLM engine's AdamW, without weight decay; betas 0.9, 0.999) or sgd "
                                "(plain gradient descent: the step is the policy gradient itself).")
    update: str = _f("gradient", "How the loss's gradient reaches the optimiser: 'gradient' (as is; with sgd a "
                                  "softmax's logit step is pi*A, so likely modes gain most, even in expectation) or "
                                  "'natural' (the natural gradient: preconditioned by the Fisher information of the "
                                  "problems' softmaxes; with sgd and kappa = 0 the expected step is "
                                  "pi_new ∝ pi_old*exp(lr*A), the KL-regularised update the over-sharpening "
                                  "analysis idealises).")
    natural_damping: float = _f(1e-6, "Damping added to the Fisher information of the natural update (per "
                                      "problem): it bounds the step of modes whose probability is below it.")
    updates_per_batch: int = _f(1, "Optimiser steps per sampled batch (> 1 makes the ratio to pi_old, and so "
                                   "clipping, active).")
    loss: LossConfig = field(default_factory=LossConfig,
                             metadata={"help": "The engine's loss settings (clip ranges, KL to the base, entropy "
                                               "coefficient, aggregation); a strategy's overrides apply on top."})
    strategy: str = _f("grpo", "Strategy preset or composition (see `workbench strategies`); sampling "
                               "calibrations (DLC's memory) are not available in the simulator.")
    strategy_params: dict = _f({}, "Parameters of the strategy's pieces, e.g. {'bbg.k': 64}.")
    diagnostics: bool = _f(True, "Log the engine's per-step diagnostics too (clip fractions, advantage statistics, "
                                 "group split, KL, log-prob/advantage covariance); off is about twice as fast.")
    eval_n: int = _f(64, "n of the evaluation draw: per problem, n modes are drawn with the same uniforms at every "
                         "evaluation (common random numbers) for the stored (n, c) and mode counts; the summary's "
                         "pass@k, entropy and mode figures are exact.")
    eval_every: int = _f(0, "Evaluate (and store, when attached) every N steps; 0 = only when asked.")
    log_every: int = _f(1, "Write every N-th step's scalars to the store when attached.")
    seed: int = _f(0, "Seed of the world (layout, order of success rates), the prompt draws and the samples.")
    name: str = _f("", "A short name for the run (part of its id in the store).")

    def validate(self) -> "SimConfig":
        """Raise ConfigError naming the first impossible field; return self."""
        _check(self.problems >= 1, "problems", self.problems, ">= 1")
        _check(self.modes >= 2, "modes", self.modes, ">= 2")
        _check(self.layout in LAYOUTS, "layout", self.layout, f"one of {', '.join(LAYOUTS)}")
        if not self.mode_rewards:
            _check(0 <= self.correct_modes <= self.modes, "correct_modes", self.correct_modes, f"in [0, modes={self.modes}]")
        else:
            shape = np.shape(np.asarray(self.mode_rewards, dtype=object))
            _check(shape == (self.problems, self.modes), "mode_rewards", f"shape {shape}",
                   f"a [problems={self.problems}][modes={self.modes}] table")
        if self.base_probs:
            arr = np.asarray(self.base_probs, dtype=np.float64)
            _check(arr.shape == (self.problems, self.modes), "base_probs", f"shape {arr.shape}",
                   f"a [problems={self.problems}][modes={self.modes}] table")
            _check(bool(np.all(arr > 0)), "base_probs", "a zero or negative entry",
                   "positive probabilities (a softmax policy gives every mode some mass)")
        else:
            _check(len(self.success) == 2, "success", self.success, "[lo, hi]")
            lo, hi = (float(x) for x in self.success)
            _check(0 < lo <= hi < 1 or (self.correct_modes == 0 and not self.mode_rewards), "success", self.success,
                   "0 < lo <= hi < 1")
            if self.correct_modes == self.modes and not self.mode_rewards:
                raise ConfigError("correct_modes = modes leaves no wrong mode; give base_probs, or fewer correct modes")
        _check(self.skew >= 0, "skew", self.skew, ">= 0")
        _check(0.0 <= self.coupling <= 1.0, "coupling", self.coupling, "in [0, 1]")
        _check(0 <= self.train_problems <= self.problems, "train_problems", self.train_problems,
               f"in [0, problems={self.problems}] (0 = all)")
        _check(self.group_size >= 2, "group_size", self.group_size, ">= 2 (a group needs a baseline)")
        n_train = self.train_problems or self.problems
        _check(1 <= self.prompts_per_step <= n_train, "prompts_per_step", self.prompts_per_step,
               f"in [1, {n_train}] (the number of training problems)")
        _check(self.lr > 0 and math.isfinite(self.lr), "lr", self.lr, "a positive finite number")
        _check(self.update in UPDATES, "update", self.update, f"one of {', '.join(UPDATES)}")
        _check(self.natural_damping > 0, "natural_damping", self.natural_damping, "> 0")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        _check(self.updates_per_batch >= 1, "updates_per_batch", self.updates_per_batch, ">= 1")
        _check(self.eval_n >= 1, "eval_n", self.eval_n, ">= 1")
        _check(self.eval_every >= 0, "eval_every", self.eval_every, ">= 0")
        _check(self.log_every >= 1, "log_every", self.log_every, ">= 1")
        l = self.loss
        _check(l.eps_low >= 0 and l.eps_high >= 0, "loss.eps_low/eps_high", (l.eps_low, l.eps_high), ">= 0 (inf = no clipping)")
        _check(l.kl_coef >= 0, "loss.kl_coef", l.kl_coef, ">= 0")
        _check(l.aggregation in AGGREGATIONS, "loss.aggregation", l.aggregation, f"one of {', '.join(AGGREGATIONS)}")
        return self

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        """Rebuild from ``to_dict()`` output (values given as strings are parsed)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a simulator config must be a mapping, got {type(d).__name__}")
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown simulator field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        kwargs: dict[str, Any] = {}
        for name, value in d.items():
            if name == "loss":
                loss = value if isinstance(value, LossConfig) else None
                if loss is None:
                    if not isinstance(value, dict):
                        raise ConfigError("sim.loss must be a mapping of loss fields (eps_low, eps_high, ...)")
                    lh = get_type_hints(LossConfig)
                    bad = sorted(set(value) - set(lh))
                    if bad:
                        raise ConfigError(f"unknown loss field(s) {', '.join(bad)}; valid: {', '.join(lh)}")
                    loss = LossConfig(**{k: parse_value(v, lh[k], f"loss.{k}") for k, v in value.items()})
                kwargs[name] = loss
            else:
                kwargs[name] = parse_value(value, hints[name], f"sim.{name}")
        return cls(**kwargs)

    @classmethod
    def coerce(cls, config: "SimConfig | dict | None" = None, **overrides: Any) -> "SimConfig":
        """A config from a SimConfig, a ``to_dict()`` mapping or None (the defaults), with
        ``overrides`` applied (as ``replace``); not validated yet."""
        if config is None:
            config = cls()
        elif isinstance(config, dict):
            config = cls.from_dict(config)
        return config.replace(**overrides) if overrides else config

    def replace(self, **changes: Any) -> "SimConfig":
        """A copy with fields changed; ``{"loss.eps_high": 0.28}``-style keys reach the loss."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, sub = key.partition(".")
            if sub:
                if section != "loss":
                    raise ConfigError(f"unknown simulator field {key!r}: only 'loss.<field>' has sub-fields")
                d["loss"][sub] = value
            else:
                d[key] = value
        return SimConfig.from_dict(d)


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"sim.{name} = {value!r} is not allowed: expected {expected}.")


@dataclass
class World:
    """The fixed part of a simulator: rewards and the base policy (numpy, float64)."""

    rewards: np.ndarray       # [P, M] reward of each mode
    correct: np.ndarray       # [P, M] bool, reward > 0
    base_logp: np.ndarray     # [P, M] log-probabilities of the base policy (rows sum to 1 in prob)
    train_ids: np.ndarray     # [P_train] indices of the training problems
    heldout_ids: np.ndarray   # [P - P_train] indices of the held-out problems
    problem_ids: list[str]    # [P] "p00", "p01", ...


def _zipf(n: int, skew: float) -> np.ndarray:
    w = (np.arange(n) + 1.0) ** -skew   # [n]
    return w / w.sum()


def build_world(cfg: SimConfig) -> World:
    """Rewards and base probabilities from the config (deterministic given ``cfg.seed``)."""
    P, M, C = cfg.problems, cfg.modes, cfg.correct_modes
    rng = np.random.default_rng([cfg.seed, 7])
    # which modes are correct, in the base model's order of preference
    order = np.stack([rng.permutation(M) if cfg.layout == "random" else np.arange(M) for _ in range(P)])  # [P, M]
    if cfg.mode_rewards:
        rewards = np.asarray(cfg.mode_rewards, dtype=np.float64)                                         # [P, M]
    else:
        rewards = np.zeros((P, M))
        rows = np.arange(P)[:, None]
        rewards[rows, order[:, :C]] = 1.0
    correct = rewards > 0                                                                               # [P, M]
    if cfg.base_probs:
        probs = np.asarray(cfg.base_probs, dtype=np.float64)
        probs = probs / probs.sum(1, keepdims=True)                                                     # [P, M]
    else:
        lo, hi = (float(x) for x in cfg.success)
        logit = np.linspace(math.log(lo / (1 - lo)), math.log(hi / (1 - hi)), P) if P > 1 else np.array([math.log(lo / (1 - lo))])
        succ = 1.0 / (1.0 + np.exp(-logit))                                                             # [P]
        succ = succ[rng.permutation(P)]
        probs = np.zeros((P, M))
        for p in range(P):
            good = [m for m in order[p] if correct[p, m]]            # preference order among correct modes
            bad = [m for m in order[p] if not correct[p, m]]
            s = succ[p] if good and bad else (1.0 if good else 0.0)
            if good:
                probs[p, good] = s * _zipf(len(good), cfg.skew)
            if bad:
                probs[p, bad] = (1 - s) * _zipf(len(bad), cfg.skew)
    n_train = cfg.train_problems or P
    ids = [f"p{i:0{max(2, len(str(P - 1)))}d}" for i in range(P)]
    return World(rewards=rewards, correct=correct, base_logp=np.log(probs),
                 train_ids=np.arange(n_train), heldout_ids=np.arange(n_train, P), problem_ids=ids)

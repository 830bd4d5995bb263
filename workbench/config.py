"""Typed configuration: one dataclass per concern, validated once, saved with the run.

Every field carries its help text in ``metadata["help"]``; the CLI builds its options
from these dataclasses (``--rollout.group_size 8`` or ``--set rollout.group_size=8``),
so the help a user reads and the defaults a run records never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from workbench.errors import ConfigError


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its help text (mutable defaults go through a factory)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelConfig:
    name_or_path: str = _f("tiny-primes", "Embedded model name (data/models/<name>), a local folder, or a Hub id.")
    dtype: str = _f("auto", "Weights dtype: auto (bfloat16 on a GPU, float32 on a CPU), float32, bfloat16, float16. "
                            "The LoRA weights stay float32.")
    device: str = _f("auto", "auto (cuda when available), cpu, cuda, cuda:N, mps.")
    chat_template: str = _f("auto", "auto (use the tokenizer's chat template when it has one), on, off.")


@dataclass
class LoraConfig:
    rank: int = _f(16, "LoRA rank r.")
    alpha: float = _f(32.0, "LoRA scaling alpha (the update is scaled by alpha / r).")
    dropout: float = _f(0.0, "Dropout on the LoRA input.")
    targets: str = _f("all-linear", "Comma-separated module names to adapt, or 'all-linear'.")


@dataclass
class TaskConfig:
    name: str = _f("two_primes", "Task family (see `workbench tasks`).")
    params: dict = _f({}, "Keyword parameters of the task family (e.g. path, verifier, timeout; see `workbench tasks`).")
    train_split: str = _f("train", "Split whose problems are the RL training prompts.")
    eval_split: str = _f("eval", "Held-out split used at evaluation points.")


@dataclass
class RolloutConfig:
    group_size: int = _f(8, "G: samples per prompt (the group the advantage is computed over).")
    prompts_per_step: int = _f(32, "B: prompts per training step.")
    max_new_tokens: int = _f(0, "Generation limit per sample; 0 = the task's default.")
    temperature: float = _f(1.0, "Sampling temperature for training rollouts.")
    chunk_size: int = _f(1024, "Most sequences generated in one batched forward (memory bound).")
    reuse_forward_mb: int = _f(512, "On-policy, the first update back-propagates through the rollout's own "
                                    "forwards instead of running the model again over the same tokens, when the "
                                    "key/value history this keeps is at most this many MB; 0 = never.")


@dataclass
class LossConfig:
    eps_low: float = _f(0.2, "Lower clip range: ratio below 1-eps_low stops the gradient for A<0. inf = no clipping.")
    eps_high: float = _f(0.2, "Upper clip range: ratio above 1+eps_high stops the gradient for A>0. inf = no clipping.")
    kl_coef: float = _f(0.0, "beta: weight of the k3 KL to the reference policy (adapter disabled).")
    ref_kl_every: int = _f(5, "With kl_coef = 0, log the KL to the reference every N steps (it costs a forward "
                              "pass; 1 = every step, 0 = never). With kl_coef > 0 it is logged every step.")
    entropy_coef: float = _f(0.0, "lambda_H: weight of the entropy bonus (subtracted from the loss).")
    aggregation: str = _f("token_mean", "token_mean (DAPO), seq_mean_token_mean (GRPO), seq_sum_const (Dr. GRPO).")


@dataclass
class OptimConfig:
    lr: float = _f(5e-4, "AdamW learning rate on the LoRA weights.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    beta1: float = _f(0.9, "AdamW beta1.")
    beta2: float = _f(0.999, "AdamW beta2.")
    max_grad_norm: float = _f(1.0, "Gradient norm clip; 0 = off.")
    updates_per_batch: int = _f(2, "Optimiser steps on each rollout batch (>1 makes the ratio and clipping active).")
    skip_zero_advantage: bool = _f(True, "On-policy with no KL and no entropy term, the first update's forward skips "
                                         "the rows whose every advantage is 0 (their gradient is exactly 0); "
                                         "false = every row.")


@dataclass
class EvalConfig:
    every: int = _f(10, "Evaluate every N training steps (0 = only at the start and the end).")
    n: int = _f(64, "Samples per evaluation problem.")
    ks: list = _f([], "k values of the Pass@k curve; empty = 1, 2, 4, ..., n.")
    temperature: float = _f(1.0, "Evaluation sampling temperature, > 0 (pass@k needs sampled completions; "
                                 "for near-greedy decoding use e.g. 0.1).")
    max_problems: int = _f(0, "Use at most this many evaluation problems (0 = the whole split).")
    seen_problems: int = _f(32, "Also evaluate this many training problems as a 'seen' split (0 = none).")
    seed: int = _f(1234, "Sampling seed of evaluations: the same at every evaluation point.")
    bank_cap: int = _f(8, "Most banked base-model correct modes per problem (over-sharpening).")
    samples_kept: int = _f(4, "Completions stored per problem and evaluation (for drill-down).")
    boundary_k: int = _f(0, "k of the boundary's pass@k delta (now - base), reported beside the one at k = n; "
                            "0 = min(8, eval.n).")

    def resolved_boundary_k(self) -> int:
        """The k of the boundary pass@k delta: ``boundary_k``, or min(8, n) when it is 0."""
        return self.boundary_k or min(8, self.n)


@dataclass
class RunConfig:
    """Everything that defines a run; saved (resolved) with it in the store."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    strategy: str = _f("grpo", "Strategy preset or composition (see `workbench strategies`).")
    strategy_params: dict = _f({}, "Parameters of the strategy's pieces, e.g. {'grpo.eps': 1e-6}.")
    seed: int = _f(0, "Seed of the LoRA init, prompt selection and training samples.")
    steps: int = _f(100, "Training steps to run.")
    checkpoint_every: int = _f(10, "Write a checkpoint every N steps (0 = only at the end).")
    workspace: str = _f("runs", "Run store folder.")
    name: str = _f("", "A short name for the run (part of its id).")
    report_to: str = _f("none", "Also mirror the per-step scalars and evaluations to these trackers: a "
                                 "comma-separated list of trackio, tensorboard, wandb; all (every "
                                 "installed one) or none. The run store stays the source of truth.")

    # ---------------------------------------------------------------- validation
    def validate(self) -> "RunConfig":
        """Raise ConfigError naming the first impossible field; return self."""
        _check_types(self, RunConfig, "")
        r, o, l, e = self.rollout, self.optim, self.loss, self.eval
        _check(r.group_size >= 2, "rollout.group_size", r.group_size, "at least 2 (a group needs a baseline)")
        _check(r.prompts_per_step >= 1, "rollout.prompts_per_step", r.prompts_per_step, "at least 1")
        _check(r.max_new_tokens >= 0, "rollout.max_new_tokens", r.max_new_tokens, ">= 0 (0 = task default)")
        _check(0 < r.temperature < math.inf, "rollout.temperature", r.temperature, "a finite number > 0")
        _check(r.chunk_size >= 1, "rollout.chunk_size", r.chunk_size, ">= 1")
        _check(r.reuse_forward_mb >= 0, "rollout.reuse_forward_mb", r.reuse_forward_mb, ">= 0 (0 = never)")
        _check(o.lr > 0 and math.isfinite(o.lr), "optim.lr", o.lr, "a positive finite number, e.g. 5e-4")
        _check(0 <= o.weight_decay < math.inf, "optim.weight_decay", o.weight_decay, "a finite number >= 0")
        _check(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1/beta2", (o.beta1, o.beta2), "in [0, 1)")
        _check(o.max_grad_norm >= 0, "optim.max_grad_norm", o.max_grad_norm, ">= 0 (0 = off)")
        _check(o.updates_per_batch >= 1, "optim.updates_per_batch", o.updates_per_batch, ">= 1")
        _check(l.eps_low >= 0, "loss.eps_low", l.eps_low, ">= 0 (inf = no clipping)")
        _check(l.eps_high >= 0, "loss.eps_high", l.eps_high, ">= 0 (inf = no clipping)")
        _check(0 <= l.kl_coef < math.inf, "loss.kl_coef", l.kl_coef, "a finite number >= 0")
        _check(math.isfinite(l.entropy_coef), "loss.entropy_coef", l.entropy_coef, "a finite number")
        _check(l.ref_kl_every >= 0, "loss.ref_kl_every", l.ref_kl_every, ">= 0 (0 = never)")
        _check(l.aggregation in AGGREGATIONS, "loss.aggregation", l.aggregation, f"one of {', '.join(AGGREGATIONS)}")
        _check(self.lora.rank >= 1, "lora.rank", self.lora.rank, ">= 1")
        _check(math.isfinite(self.lora.alpha) and self.lora.alpha > 0, "lora.alpha", self.lora.alpha,
               "a finite number > 0")
        _check(0 <= self.lora.dropout < 1, "lora.dropout", self.lora.dropout, "in [0, 1)")
        _check(e.n >= 1, "eval.n", e.n, ">= 1")
        _check(e.every >= 0, "eval.every", e.every, ">= 0")
        _check(0 < e.temperature < math.inf, "eval.temperature", e.temperature,
               "a finite number > 0 (pass@k needs sampled completions; for near-greedy decoding use e.g. 0.1)")
        _check(e.max_problems >= 0, "eval.max_problems", e.max_problems, ">= 0 (0 = the whole split)")
        _check(e.seen_problems >= 0, "eval.seen_problems", e.seen_problems, ">= 0 (0 = none)")
        _check(e.bank_cap >= 0, "eval.bank_cap", e.bank_cap, ">= 0 (0 = bank no modes)")
        _check(e.samples_kept >= 0, "eval.samples_kept", e.samples_kept, ">= 0")
        _check(0 <= self.seed < 2**63, "seed", self.seed, "a whole number in 0 .. 2**63-1")
        for k in e.ks:
            _check(isinstance(k, int) and not isinstance(k, bool) and k >= 1, "eval.ks", e.ks, "positive integers")
        if e.ks and max(e.ks) > e.n:
            raise ConfigError(
                f"eval.n = {e.n} is smaller than the largest k in eval.ks ({max(e.ks)}): pass@k needs n >= k. "
                f"Raise eval.n or drop k > {e.n}."
            )
        _check(isinstance(e.boundary_k, int) and e.boundary_k >= 0, "eval.boundary_k", e.boundary_k,
               "an integer >= 0 (0 = min(8, eval.n))")
        if e.boundary_k > e.n:
            raise ConfigError(
                f"eval.boundary_k = {e.boundary_k} is larger than eval.n = {e.n}: the boundary's pass@k delta "
                f"needs k <= n samples. Lower eval.boundary_k, raise eval.n, or set eval.boundary_k = 0 (min(8, n))."
            )
        _check(self.steps >= 0, "steps", self.steps, ">= 0")
        _check(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        _check(self.model.chat_template in ("auto", "on", "off"), "model.chat_template", self.model.chat_template, "auto, on or off")
        _check(self.model.dtype in ("auto", "float32", "bfloat16", "float16"), "model.dtype", self.model.dtype, "auto, float32, bfloat16 or float16")
        _check(bool(DEVICE.fullmatch(self.model.device)), "model.device", self.model.device,
               "auto, cpu, cuda, cuda:N (N = the GPU's index) or mps")
        _check(bool(self.model.name_or_path.strip()), "model.name_or_path", self.model.name_or_path,
               "an embedded model name, a local model folder or a Hub id")
        _check(bool(self.task.name.strip()), "task.name", self.task.name, "a task family (see `workbench tasks`)")
        from workbench.trackers import check_report_to

        check_report_to(self.report_to)    # unknown names and missing packages, before anything starts
        return self

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return _from_dict(cls, d, "")

    def override(self, dotted: dict[str, Any]) -> "RunConfig":
        """A copy with ``{"section.field": value}`` set; values given as strings are parsed."""
        d = self.to_dict()
        for key, value in dotted.items():
            parts = key.split(".")
            target_cls, node = RunConfig, d
            for i, part in enumerate(parts):
                names = {f.name: f for f in dataclasses.fields(target_cls)}
                if part not in names:
                    where = ".".join(parts[:i]) or "the run config"
                    raise ConfigError(f"unknown config field {key!r}: {where} has {', '.join(names)}")
                if i == len(parts) - 1:
                    hint = get_type_hints(target_cls)[part]
                    if dataclasses.is_dataclass(hint):  # a whole section: merge a mapping into it
                        if not isinstance(value, dict):
                            raise ConfigError(f"config section {key!r} must be a mapping of its fields")
                        node[part] = {**node[part], **value}
                    else:
                        node[part] = parse_value(value, hint, key)
                else:
                    target_cls = get_type_hints(target_cls)[part]
                    if not dataclasses.is_dataclass(target_cls):
                        raise ConfigError(f"config field {'.'.join(parts[: i + 1])!r} has no sub-fields")
                    node = node[part]
        return RunConfig.from_dict(d)


AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_sum_const")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} = {value!r} is not allowed: expected {expected}.")


def _check_types(obj: Any, cls: type, prefix: str) -> None:
    """Every section a dataclass of its type, every leaf of its field's type (a config built
    in Python is not parsed, so ``RunConfig(rollout=5)`` or ``group_size="8"`` reach here)."""
    if not isinstance(obj, cls):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'root'!r} is of type {type(obj).__name__}; "
                          f"expected {cls.__name__} (or a mapping of its fields)")
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, value, name = hints[f.name], getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(hint):
            _check_types(value, hint, name + ".")
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            _check(ok, name, value, "a number")
        elif hint is int:
            _check(isinstance(value, int) and not isinstance(value, bool), name, value, "a whole number")
        elif hint is bool:
            _check(isinstance(value, bool), name, value, "true or false")
        elif hint in (str, dict, list):
            _check(isinstance(value, hint), name, value, f"a {hint.__name__}")


def _from_dict(cls: type, d: dict, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"config section {prefix or 'root'!r} must be a mapping, got {type(d).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(sorted(prefix + u for u in unknown))}; "
            f"valid fields{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in d.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = parse_value(value, hint, prefix + name)
    return cls(**kwargs)


def parse_value(value: Any, hint: Any, name: str) -> Any:
    """Coerce ``value`` (possibly a CLI string) to the field's type, or raise ConfigError."""
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)  # accepts "inf"
        if hint is str:
            return str(value)
        if hint in (dict, list):
            if isinstance(value, str):
                value = json.loads(value) if value.strip() else hint()
            if hint is list and isinstance(value, (int, float)):
                value = [value]
            if not isinstance(value, hint):
                raise ValueError(value)
            return value
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        tname = getattr(hint, "__name__", str(hint))
        expected = " (expected true or false)" if hint is bool else ""
        raise ConfigError(f"{name} = {value!r} is not a valid {tname}{expected}") from exc
    return value


def iter_fields(cls: type = RunConfig, prefix: str = ""):
    """Yield (dotted name, type, default, help) for every leaf field (used by the CLI)."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from iter_fields(hint, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            yield prefix + f.name, hint, default, f.metadata.get("help", "")

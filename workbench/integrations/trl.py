"""The TRL backend: TRL's ``GRPOTrainer`` driven by the workbench's strategies, measured and
steered through the workbench's run store.

    workbench train --backend trl [the usual options] [--trl.FIELD VALUE ...]
    accelerate launch -m workbench train --backend trl ...        # several processes / GPUs

What comes from where:

- generation, the clipped surrogate, the optimiser and the distribution (accelerate: DDP,
  FSDP, DeepSpeed; vLLM generation with ``--trl.use_vllm true``) are TRL's;
- the advantages are the workbench's: ``WorkbenchGRPOTrainer`` overrides
  ``_generate_and_score_completions`` (TRL's documented place for custom advantages). The
  task's verifier scores each completion, the verdicts of all processes are gathered into
  the ``[B, G]`` group batch, the run's strategy (reward transform -> estimator ->
  calibrations, with its per-problem success history) turns it into advantages, and each
  process keeps the slice of its own completions;
- the loss settings TRL can express are mapped from the run's config and the strategy's
  overrides (``loss.eps_low/eps_high`` -> ``epsilon/epsilon_high``, ``loss.kl_coef`` ->
  ``beta``, ``loss.entropy_coef``, ``loss.aggregation`` -> ``loss_type``: token_mean ->
  dapo, seq_mean_token_mean -> grpo, seq_sum_const -> dr_grpo); ``optim.updates_per_batch``
  is TRL's ``num_iterations``;
- ``WorkbenchCallback`` writes one store step per rollout batch (TRL makes
  ``updates_per_batch`` optimiser steps on each), the workbench's evaluations (pass@k,
  modes, collapse index, boundary against the base, banked over-sharpening) from the main
  process only, and applies the store's commands between steps on every process alike.

Strategy pieces that live inside the workbench's own rollouts or loss are refused here
with a ConfigError: token calibrations (Clip-Cov, KL-Cov gate or penalise single tokens in
the loss) and the DLC memory sampler (a logits processor in the workbench's sampler).

Shapes: B prompts, G samples per prompt, N = B*G completions over all processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from workbench.config import RunConfig
from workbench.errors import ConfigError, WorkbenchError
from workbench.metrics import SuccessHistory, advantage_stats, group_split, mode_stats
from workbench.seeding import row_seed
from workbench.strategies import pieces as _pieces  # noqa: F401  (registers the implementations)
from workbench.strategies.base import Advantages, GroupBatch, Strategy, build_strategy
from workbench.tasks.base import Verdict

try:
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer
except ImportError as exc:  # pragma: no cover - trl is an optional extra
    raise ConfigError("the TRL backend needs trl and accelerate: pip install 'rlvr-workbench[trl]' "
                      f"(import failed: {exc})") from exc

__all__ = ["LOSS_TYPES", "WorkbenchGRPOTrainer", "WorkbenchCallback", "check_trl_strategy", "trl_loss_settings",
           "train_trl", "resume_trl", "grpo_config"]

#: The workbench's loss aggregation -> TRL's loss_type with the same normalisation.
LOSS_TYPES = {"token_mean": "dapo", "seq_mean_token_mean": "grpo", "seq_sum_const": "dr_grpo"}

#: GRPOConfig fields the run's config decides (set the workbench field instead).
RESERVED = {
    "num_generations": "rollout.group_size", "max_completion_length": "rollout.max_new_tokens",
    "num_iterations": "optim.updates_per_batch", "max_steps": "steps", "learning_rate": "optim.lr",
    "temperature": "rollout.temperature", "beta": "loss.kl_coef", "epsilon": "loss.eps_low",
    "epsilon_high": "loss.eps_high", "loss_type": "loss.aggregation", "entropy_coef": "loss.entropy_coef",
    "seed": "seed", "per_device_train_batch_size": "rollout.prompts_per_step and rollout.group_size",
    "generation_batch_size": "rollout.prompts_per_step and rollout.group_size",
    "steps_per_generation": "trl.gradient_accumulation_steps", "output_dir": "workspace",
}


# ---------------------------------------------------------------------- strategies on TRL
def check_trl_strategy(strategy: Strategy, updates_per_batch: int | None = None,
                       default_updates: int | None = None) -> None:
    """Raise ConfigError when ``strategy`` needs the workbench engine (token calibrations, the
    DLC memory sampler) or would change TRL's fixed number of updates per batch."""
    if strategy.token:
        names = ", ".join(p.name for p, _ in strategy.token)
        raise ConfigError(
            f"strategy {strategy.name!r} is not available on the TRL backend: its token-level calibration(s) "
            f"({names}) gate or penalise single tokens inside the loss, which TRL's GRPOTrainer cannot express. "
            "Run it with the workbench engine (--backend workbench), or drop the piece.")
    if strategy.sampling is not None:
        raise ConfigError(
            f"strategy {strategy.name!r} is not available on the TRL backend: its sampling calibration "
            f"({strategy.sampling[0].name}, the DLC memory network) is a logits processor inside the workbench's own "
            "rollouts, and TRL generates with transformers or vLLM. Run it with the workbench engine "
            "(--backend workbench), or use the same strategy without 'memory' (e.g. 'iac' instead of 'iac_dlc').")
    if updates_per_batch is not None:
        want = int(strategy.optim_overrides.get("updates_per_batch", default_updates or updates_per_batch))
        if want != updates_per_batch:
            raise ConfigError(
                f"strategy {strategy.name!r} asks for optim.updates_per_batch = {want}, but a TRL run keeps the "
                f"number of updates per rollout batch it started with ({updates_per_batch}, TRL's num_iterations). "
                f"Start a new run with optim.updates_per_batch = {want}, or use the workbench engine.")


def trl_loss_settings(cfg: RunConfig, strategy: Strategy) -> dict[str, Any]:
    """TRL's loss settings for the run's loss config with the strategy's overrides."""
    loss = dict(vars(cfg.loss))
    loss.update(strategy.loss_overrides)
    if loss["aggregation"] not in LOSS_TYPES:
        raise ConfigError(f"loss.aggregation = {loss['aggregation']!r} has no TRL loss_type; "
                          f"expected one of {', '.join(LOSS_TYPES)}")
    return {"epsilon_low": float(loss["eps_low"]), "epsilon_high": float(loss["eps_high"]),
            "beta": float(loss["kl_coef"]), "entropy_coef": float(loss["entropy_coef"]),
            "loss_type": LOSS_TYPES[loss["aggregation"]]}


def needs_entropy(strategy: Strategy) -> bool:
    """Whether the strategy reads each sample's mean token entropy (EM-RL's reward)."""
    return any(p.name == "entropy_min" for p, _ in strategy.reward)


def group_batch(samples: list[dict], G: int, step: int, history: SuccessHistory | None, seed: int) -> GroupBatch:
    """The [B, G] group batch of ``samples`` (all processes' completions in TRL's order:
    each prompt's G completions consecutive)."""
    if len(samples) % G:
        raise WorkbenchError(f"{len(samples)} completions do not form groups of G = {G}")
    B = len(samples) // G
    ids = [samples[b * G]["problem_id"] for b in range(B)]
    for b in range(B):
        if any(s["problem_id"] != ids[b] for s in samples[b * G:(b + 1) * G]):
            raise WorkbenchError(f"TRL's batch is not grouped by prompt at group {b}: "
                                 f"{[s['problem_id'] for s in samples[b * G:(b + 1) * G]]}")

    def t(key, dtype):
        return torch.tensor([s[key] for s in samples], dtype=dtype).view(B, G)

    return GroupBatch(problem_ids=ids, rewards=t("reward", torch.float32), correct=t("correct", torch.bool),
                      parsed=t("parsed", torch.bool), answers=[[s["answer"] for s in samples[b * G:(b + 1) * G]]
                                                               for b in range(B)],
                      entropy=t("entropy", torch.float32), step=step, history=history, seed=seed)


def _text(completion: Any) -> str:
    """A completion's text (TRL passes chat completions as message lists)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
    return str(completion)


# ---------------------------------------------------------------------- the trainer
class WorkbenchGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rewards come from a workbench task and whose advantages come from a
    workbench strategy. Extra keyword arguments:

    - ``wb_task``: the task (its ``verify_batch`` scores completions; ``wb_verify`` replaces it);
    - ``wb_problems``: the problems the dataset's ``problem_id`` column refers to;
    - ``wb_strategy``: a preset or composition (str) or a built ``Strategy``; ``wb_strategy_params``;
    - ``wb_config``: the RunConfig (loss settings, seed).

    After each rollout batch ``wb_record`` holds what the callback stores (the group batch,
    the advantages, per-sample verdicts and lengths, timings).
    """

    def __init__(self, *args: Any, wb_task, wb_problems, wb_config: RunConfig, wb_strategy: str | Strategy = "grpo",
                 wb_strategy_params: dict | None = None, wb_verify=None, **kwargs: Any):
        self.wb_task = wb_task
        self.wb_problems = {p.id: p for p in wb_problems}
        self.wb_config = wb_config
        self.wb_verify = wb_verify or wb_task.verify_batch
        self.wb_history = SuccessHistory()
        self.wb_step = 0                       # rollout batches scored so far (= store steps)
        self.wb_record: dict[str, Any] | None = None
        self.wb_strategies: dict[str, Strategy] = {}
        self._wb_local: list[dict] = []
        self._wb_gen_s = 0.0
        strategy = wb_strategy if isinstance(wb_strategy, Strategy) else build_strategy(wb_strategy, wb_strategy_params)
        check_trl_strategy(strategy)

        def workbench_verifier(prompts, completions, problem_id, **_):
            texts = [_text(c) for c in completions]
            verdicts: list[Verdict] = self.wb_verify([self.wb_problems[pid] for pid in problem_id], texts)
            self._wb_local = [{"problem_id": pid, "text": txt, "reward": float(v.reward), "correct": bool(v.correct),
                               "parsed": bool(v.parsed), "answer": v.answer, "mode_key": v.mode_key}
                              for pid, txt, v in zip(problem_id, texts, verdicts)]
            return [float(v.reward) for v in verdicts]

        super().__init__(*args, reward_funcs=[workbench_verifier], **kwargs)
        self.wb_strategy = strategy
        check_trl_strategy(strategy, self.num_iterations, wb_config.optim.updates_per_batch)
        self._wb_apply_loss()

    # -- strategy -------------------------------------------------------------------------
    def set_strategy(self, spec: str, params: dict | None = None) -> Strategy:
        """Use ``spec`` from the next rollout batch on; a strategy switched back to gets its state back."""
        new = build_strategy(spec, params or {})
        check_trl_strategy(new, self.num_iterations, self.wb_config.optim.updates_per_batch)
        self.wb_strategies[self.wb_strategy.name] = self.wb_strategy
        old = self.wb_strategies.get(spec)
        if old is not None:
            new.state = old.state
        self.wb_strategy = new
        self._wb_apply_loss()
        return new

    def _wb_apply_loss(self) -> None:
        s = trl_loss_settings(self.wb_config, self.wb_strategy)
        self.epsilon_low, self.epsilon_high = s["epsilon_low"], s["epsilon_high"]
        self.beta, self.loss_type = s["beta"], s["loss_type"]
        self.entropy_coef = s["entropy_coef"]
        self._entropy_bonus_enabled = self.entropy_coef != 0.0 or self.use_adaptive_entropy

    # -- rollouts and advantages ----------------------------------------------------------
    def _generate(self, prompts):
        t0 = time.perf_counter()
        try:
            return super()._generate(prompts)
        finally:
            self._wb_gen_s += time.perf_counter() - t0

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:  # TRL's own evaluation loop: its advantages as they are
            return super()._generate_and_score_completions(inputs)
        t0 = time.perf_counter()
        self._wb_gen_s = 0.0
        out = super()._generate_and_score_completions(inputs)
        t_scored = time.perf_counter()
        strat = self.wb_strategy
        mask = out["completion_mask"]                                                   # [n, T] local
        if "tool_mask" in out:
            mask = mask * out["tool_mask"]
        lengths = mask.sum(-1)                                                          # [n]
        eos = torch.tensor(sorted(self.eos_token_ids), device=mask.device)
        finished = (torch.isin(out["completion_ids"], eos) & out["completion_mask"].bool()).any(-1)   # [n]
        entropy = self._wb_entropy(out) if needs_entropy(strat) else torch.zeros(len(lengths))
        local = [{**rec, "length": int(n), "finished": bool(f), "entropy": float(e)}
                 for rec, n, f, e in zip(self._wb_local, lengths.tolist(), finished.tolist(), entropy.tolist())]
        if len(local) != len(lengths):
            raise WorkbenchError(f"scored {len(self._wb_local)} completions but TRL generated {len(lengths)}")
        samples = gather_object(local)                                                  # [N] all processes
        step = self.wb_step + 1
        G = self.num_generations
        batch = group_batch(samples, G, step, self.wb_history, self.wb_config.seed)
        adv = strat.advantages(batch)                                                   # [B, G]
        n = len(local)
        start = self.accelerator.process_index * n
        out["advantages"] = adv.advantage.reshape(-1)[start:start + n].to(out["advantages"].device,
                                                                            out["advantages"].dtype)
        self.wb_history.update(step, batch.problem_ids, batch.correct.sum(1).tolist(), G)
        self.wb_step = step
        self.wb_record = {"step": step, "batch": batch, "adv": adv, "samples": samples, "strategy": strat.name,
                          "t_start": t0, "t_rollout": self._wb_gen_s, "t_score": t_scored - t0,
                          "t_scored": time.perf_counter()}
        return out

    @torch.no_grad()
    def _wb_entropy(self, out) -> torch.Tensor:
        """[n] mean token entropy of each local completion (one extra forward)."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        _, ent, _ = self._get_per_token_logps_and_entropies(self.model, ids, att, out["completion_ids"].size(1),
                                                           batch_size=self.args.per_device_train_batch_size,
                                                           compute_entropy=True)
        m = out["completion_mask"].float()
        return ((ent * m).sum(-1) / m.sum(-1).clamp(min=1)).cpu()


# ---------------------------------------------------------------------- store and commands
class WorkbenchCallback(TrainerCallback):
    """Writes each rollout batch as one store step (main process only), evaluates and
    checkpoints on the run's schedule, and applies the store's commands between steps on
    every process (the main process reads them and broadcasts what to do)."""

    def __init__(self, run: "TrlRun"):
        self.run = run
        self._logs: list[dict] = []

    def on_train_begin(self, args, state, control, **kw):
        self.run.started()
        self.run.sync_commands(control)
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "train_runtime" in logs:  # the trainer's closing summary, not a step
            return control
        self._logs.append(dict(logs))
        updates = self.run.trainer.num_iterations
        if state.global_step % updates:
            return control
        self.run.finish_step(state.global_step // updates, self._logs, control)
        self._logs = []
        return control

    def on_save(self, args, state, control, **kw):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.run.saved(state.global_step // self.run.trainer.num_iterations, path)
        return control


class TrlRun:
    """One run of the TRL backend: the trainer, and on the main process the Session that owns
    the run in the store (its evaluation, base model bank and events)."""

    def __init__(self, trainer: WorkbenchGRPOTrainer, session, run_id: str, config: RunConfig):
        self.trainer, self.session, self.run_id, self.config = trainer, session, run_id, config
        self.is_main = session is not None
        self.store = session.store if session is not None else None
        self.paused = False
        self.stopped = False
        self.steps_allowed: int | None = None
        self.last_eval = -1
        self.last_ckpt = -1
        self.step = 0
        self.step_times: list[float] = []

    # -- steps ----------------------------------------------------------------------------
    def started(self) -> None:
        if self.is_main:
            self.store.set_status(self.run_id, "running")

    def finish_step(self, s: int, logs: list[dict], control) -> None:
        rec = self.trainer.wb_record
        if rec is None or rec["step"] != s:
            raise WorkbenchError(f"store step {s} has no scored rollout batch (last scored: "
                                 f"{None if rec is None else rec['step']})")
        t_end = time.perf_counter()
        self.step = s
        self.step_times.append(t_end - rec["t_start"])
        if self.is_main:
            self._write_step(s, rec, logs, t_end)
            self.session.step_count = s
        cfg = self.config
        if cfg.eval.every and s % cfg.eval.every == 0:
            self.evaluate()
        if (cfg.checkpoint_every and s % cfg.checkpoint_every == 0) or s >= cfg.steps:
            control.should_save = True
        if self.steps_allowed:
            self.steps_allowed -= 1
            if self.steps_allowed == 0:
                self.steps_allowed, self.paused = None, True
                if self.is_main:
                    self.store.set_status(self.run_id, "paused")
        self.sync_commands(control)

    def _write_step(self, s: int, rec: dict, logs: list[dict], t_end: float) -> None:
        batch: GroupBatch = rec["batch"]
        adv: Advantages = rec["adv"]
        samples = rec["samples"]
        B, G = batch.rewards.shape

        def mean_log(key: str) -> float | None:
            vals = [lg[key] for lg in logs if isinstance(lg.get(key), (int, float)) and not math.isnan(lg[key])]
            return sum(vals) / len(vals) if vals else None

        n_tok = float(sum(x["length"] for x in samples))
        t_update = max(t_end - rec["t_scored"], 1e-9)
        scalars: dict[str, float] = {
            "train/reward_mean": float(batch.rewards.mean()),
            "train/reward_transformed_mean": float(adv.reward.mean()),
            "train/pass@1": float(batch.correct.float().mean()),
            "train/parse_error_frac": float((~batch.parsed).float().mean()),
            "train/completion_len": n_tok / len(samples),
            "train/truncated_frac": float(sum(not x["finished"] for x in samples)) / len(samples),
            "train/num_tokens": n_tok,
            "time/rollout": rec["t_rollout"],
            "time/reward": rec["t_score"] - rec["t_rollout"],
            "time/update": t_update,
            "time/step": t_end - rec["t_start"],
            "perf/rollout_tok_s": n_tok / max(rec["t_rollout"], 1e-9),
            "perf/update_tok_s": n_tok * self.trainer.num_iterations / t_update,
        }
        for ours, theirs in (("train/loss", "loss"), ("train/grad_norm", "grad_norm"), ("train/lr", "learning_rate"),
                             ("train/entropy", "entropy"), ("train/kl_ref", "kl"),
                             ("train/clip_frac_low", "clip_ratio/low_mean"),
                             ("train/clip_frac_high", "clip_ratio/high_mean"),
                             ("train/clip_frac", "clip_ratio/region_mean")):
            v = mean_log(theirs)
            if v is not None:
                scalars[ours] = float(v)
        scalars.update(group_split(batch.correct))
        scalars.update(advantage_stats(adv.advantage))
        problem_rows, stored = [], []
        for b, pid in enumerate(batch.problem_ids):
            group = samples[b * G:(b + 1) * G]
            ms = mode_stats([x["mode_key"] if x["correct"] else None for x in group])
            c = int(batch.correct[b].sum())
            problem_rows.append({"problem_id": pid, "split": "train", "n": G, "c": c, "num_modes": ms["num_modes"],
                                 "mode_counts": ms["counts"], "reward_mean": float(batch.rewards[b].mean()),
                                 "adv_abs_mean": float(adv.advantage[b].abs().mean())})
            for x in group[:2]:
                stored.append({"problem_id": pid, "completion": x["text"], "reward": x["reward"],
                               "correct": x["correct"], "mode_key": x["mode_key"]})
        self.store.write_step(self.run_id, s, scalars, problem_rows, stored)
        trackers = getattr(self.session, "trackers", None)   # --report-to mirrors, as on the engine
        if trackers:
            trackers.log_step(s, scalars)

    def sharded(self) -> str | None:
        """What shards the weights across processes (FSDP, ZeRO-3), or None."""
        t = self.trainer
        if getattr(t, "is_fsdp_enabled", False):
            return "FSDP"
        plugin = getattr(t.accelerator.state, "deepspeed_plugin", None) if getattr(t, "is_deepspeed_enabled", False) \
            else None
        if plugin is not None and getattr(plugin, "zero_stage", 0) == 3:
            return "DeepSpeed ZeRO-3"
        return None

    def evaluate(self) -> None:
        how = self.sharded() if self.trainer is not None else None
        if how is not None:  # the main process does not hold the whole model: no evaluation
            if self.is_main and not getattr(self, "_warned_sharded", False):
                self._warned_sharded = True
                self.store.add_event(self.run_id, self.step, "warning", {"message": (
                    f"{how} shards the weights across processes, and the workbench's evaluations run on the main "
                    "process with the whole model: evaluations after the base model's are skipped. Use DDP or "
                    "ZeRO-1/2 for evaluation points, or evaluate a checkpoint with `workbench eval --run RUN`.")})
            self.last_eval = self.step
            return
        if self.is_main:
            self.session.step_count = self.step
            was_training = self.session.model.training
            self.session.evaluate()
            self.session.model.train(was_training)
        self.last_eval = self.step

    def saved(self, s: int, path: Path) -> None:
        self.last_ckpt = s
        if self.is_main:
            strat = self.trainer.wb_strategy
            (Path(path) / STATE_FILE).write_text(json.dumps({
                "step": s, "history": self.trainer.wb_history.to_json(), "strategy": strat.name,
                "strategy_params": strat.params}))
            self.store.record_checkpoint(self.run_id, s, path)
            stored = next((c["stored_path"] for c in self.store.checkpoints(self.run_id) if c["step"] == s), str(path))
            self.store.add_event(self.run_id, s, "checkpoint", {"path": stored, "format": "trl"})

    # -- commands -------------------------------------------------------------------------
    def sync_commands(self, control) -> None:
        """Apply pending commands (main reads, everyone follows); block while paused."""
        while True:
            decision = self._read_commands() if self.is_main else None
            decision = _broadcast(decision)
            if decision["strategy"] is not None:
                spec, params = decision["strategy"]
                self.trainer.set_strategy(spec, params)
            if decision["checkpoint"]:
                control.should_save = True
            if decision["evaluate"] and not self.is_main:
                self.last_eval = self.step
            self.paused, self.stopped = decision["paused"], decision["stopped"]
            if decision["steps_allowed"] is not None:
                self.steps_allowed = decision["steps_allowed"]
            if self.stopped:
                control.should_training_stop = True
                control.should_save = self.step > 0 and self.last_ckpt != self.step
                return
            if not self.paused or self.steps_allowed:
                return
            time.sleep(0.2)

    def _read_commands(self) -> dict:
        from workbench.store import check_command

        out = {"strategy": None, "checkpoint": False, "evaluate": False, "paused": self.paused,
               "stopped": self.stopped, "steps_allowed": None}
        store, run_id, s = self.store, self.run_id, self.step
        for cmd in store.pending_commands(run_id):
            kind = cmd["kind"]
            try:
                payload = check_command(kind, cmd.get("payload"))
                if kind == "pause":
                    out["paused"] = True
                    store.set_status(run_id, "paused")
                    store.add_event(run_id, s, "pause", {})
                elif kind == "resume":
                    out["paused"], out["steps_allowed"] = False, None
                    self.steps_allowed = None
                    store.set_status(run_id, "running")
                    store.add_event(run_id, s, "resume", {})
                elif kind == "stop":
                    out["stopped"] = True
                    store.add_event(run_id, s, "stop", {})
                elif kind == "step":
                    out["steps_allowed"] = payload["n"]
                elif kind == "evaluate":
                    self.evaluate()
                    out["evaluate"] = True
                elif kind == "checkpoint":
                    out["checkpoint"] = True
                elif kind == "set_strategy":
                    spec, params = payload["strategy"], dict(payload["params"])
                    check_trl_strategy(build_strategy(spec, params), self.trainer.num_iterations,
                                       self.config.optim.updates_per_batch)
                    self.session.set_strategy(spec, **params)   # records the switch (event, run's strategy)
                    out["strategy"] = (spec, params)
                else:  # pragma: no cover - check_command knows every kind
                    raise ConfigError(f"unknown command {kind!r}")
            except Exception as exc:  # noqa: BLE001 - no command may stop the trainer
                reason = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
                self._mark(cmd, "rejected", reason)
                store.add_event(run_id, s, "command_rejected", {"id": cmd["id"], "kind": str(kind), "reason": reason})
                continue
            self._mark(cmd, "applied")
        if out["paused"] and out["steps_allowed"]:
            store.set_status(run_id, "running")
        return out

    def _mark(self, cmd: dict, status: str, message: str | None = None) -> None:
        try:
            self.store.mark_command(cmd["id"], status, self.step, message)
        except WorkbenchError:
            pass

    # -- the end ----------------------------------------------------------------------------
    def finished(self) -> None:
        if not self.is_main:
            return
        if self.last_eval != self.step and self.step > 0:
            self.evaluate()
        self.store.set_status(self.run_id, "stopped" if self.stopped else "finished")
        self.session.close()

    def failed(self, exc: BaseException) -> None:
        if not self.is_main:
            return
        if isinstance(exc, KeyboardInterrupt):  # the user stopped it: resumable, not failed
            self.store.set_status(self.run_id, "stopped")
            self.session.close()
            return
        try:
            self.store.set_status(self.run_id, "failed")
            self.store.add_event(self.run_id, self.step, "error", {
                "message": f"training failed at step {self.step}: {type(exc).__name__}: {exc}"})
        except WorkbenchError:
            pass
        self.session.close()


def process_state(cfg: RunConfig) -> PartialState:
    """accelerate's process state, on the CPU when the run's device is (accelerate treats
    several CPU processes as one distributed job only when told so at its first use)."""
    from workbench.models.loading import pick_device

    return PartialState(cpu=pick_device(cfg.model.device) == "cpu")


def _broadcast(obj: Any) -> Any:
    if PartialState().num_processes == 1:
        return obj
    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


# ---------------------------------------------------------------------- configuration
def parse_trl_args(pairs: dict[str, Any]) -> dict[str, Any]:
    """Check ``{GRPOConfig field: value}`` (values may be CLI strings) against GRPOConfig."""
    fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if key in RESERVED:
            raise ConfigError(f"--trl.{key}: the run's config sets TRL's {key}; set {RESERVED[key]} instead")
        if key not in fields:
            near = sorted(n for n in fields if key.split("_")[0] in n)[:8]
            raise ConfigError(f"--trl.{key}: GRPOConfig has no field {key!r}"
                              + (f" (similar: {', '.join(near)})" if near else ""))
        out[key] = _parse_scalar(value) if isinstance(value, str) else value
    return out


def _parse_scalar(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def grpo_config(cfg: RunConfig, output_dir: str | Path, max_new_tokens: int, device: str,
                trl_args: dict[str, Any] | None = None, num_processes: int | None = None) -> GRPOConfig:
    """GRPOConfig for the run: one rollout batch of B*G completions per TRL generation,
    ``optim.updates_per_batch`` optimiser steps on it, the run's optimiser settings, a
    constant learning rate, float32 on a CPU, and the TRL-only options in ``trl_args``."""
    trl_args = dict(trl_args or {})
    n_proc = num_processes or PartialState().num_processes
    accum = int(trl_args.pop("gradient_accumulation_steps", 1))
    B, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    if (B * G) % (n_proc * accum):
        raise ConfigError(
            f"rollout.prompts_per_step x rollout.group_size = {B} x {G} = {B * G} completions per step must divide "
            f"evenly over {n_proc} process(es) x {accum} gradient accumulation step(s); change B or G, the number "
            "of processes, or --trl.gradient_accumulation_steps")
    loss = trl_loss_settings(cfg, build_strategy(cfg.strategy, cfg.strategy_params))
    updates = int(build_strategy(cfg.strategy, cfg.strategy_params).optim_overrides.get(
        "updates_per_batch", cfg.optim.updates_per_batch))
    cpu = device == "cpu"
    half = cfg.model.dtype in ("bfloat16", "auto") and not cpu
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), per_device_train_batch_size=B * G // (n_proc * accum),
        gradient_accumulation_steps=accum, steps_per_generation=accum, num_generations=G,
        max_completion_length=max_new_tokens, temperature=cfg.rollout.temperature, top_p=1.0, top_k=0,
        num_iterations=updates, max_steps=cfg.steps * updates, learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay, adam_beta1=cfg.optim.beta1, adam_beta2=cfg.optim.beta2,
        max_grad_norm=cfg.optim.max_grad_norm, lr_scheduler_type="constant", warmup_steps=0,
        beta=loss["beta"], epsilon=loss["epsilon_low"], epsilon_high=loss["epsilon_high"],
        loss_type=loss["loss_type"], entropy_coef=loss["entropy_coef"], scale_rewards="group",
        use_cpu=cpu, bf16=half, fp16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=1, logging_strategy="steps", shuffle_dataset=False, seed=cfg.seed,
        data_seed=cfg.seed, disable_tqdm=True, log_completions=False, remove_unused_columns=False,
        dataloader_num_workers=0, save_only_model=False,
    )
    kwargs.update(trl_args)
    try:
        with warnings.catch_warnings():  # transformers renames gradient_checkpointing; TRL still reads it
            warnings.simplefilter("ignore", FutureWarning)
            return GRPOConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"TRL rejected the configuration: {exc}") from exc


def training_prompts(cfg: RunConfig, task, problems: list, use_chat: bool) -> list[dict]:
    """Rows of TRL's dataset in step order: step s's B prompts are the workbench engine's
    (the same seeded draw), so both backends train on the same problems at the same step."""
    B = cfg.rollout.prompts_per_step
    rows = []
    for s in range(1, cfg.steps + 1):
        rng = random.Random(row_seed(cfg.seed, "prompts", s))
        chosen = rng.sample(problems, B) if B <= len(problems) else \
            [problems[i % len(problems)] for i in rng.sample(range(B), B)]
        for p in chosen:
            prompt = [{"role": "user", "content": task.instruction(p)}] if use_chat else task.prompt(p)
            rows.append({"prompt": prompt, "problem_id": p.id})
    return rows


# ---------------------------------------------------------------------- entry point
def train_trl(config: RunConfig | dict | None = None, *, run_id: str | None = None,
              trl_args: dict[str, Any] | None = None, callbacks: list | tuple = (), verify=None,
              progress: bool = False, **overrides: Any) -> TrlRun:
    """Start a new run on TRL's GRPOTrainer and train it to ``config.steps``; returns the
    finished ``TrlRun`` (``run_id``, ``step_times``). Under ``accelerate launch`` every
    process calls this; only the main one touches the store."""
    if config is None:
        config = RunConfig()
    elif isinstance(config, dict):
        config = RunConfig.from_dict(config)
    if overrides:
        config = config.override(overrides)
    return _train(config.validate(), trl_args, callbacks, verify, progress, new_run_id=run_id)


def resume_trl(run_id: str, workspace: str | os.PathLike = "runs", *, trl_args: dict[str, Any] | None = None,
               callbacks: list | tuple = (), verify=None, progress: bool = False, **overrides: Any) -> TrlRun:
    """Continue a TRL-backend run from its last TRL checkpoint (optimiser, scheduler, RNG,
    the step's strategy and per-problem history); store rows after it are dropped and
    recomputed. ``overrides`` (dotted config fields) may change e.g. ``steps`` or ``strategy``."""
    from workbench.store import RunStore

    run = RunStore(workspace).get_run(run_id)
    stored = {k: v for k, v in run["config"].items() if k != "resolved"}
    if run["config"].get("resolved", {}).get("backend") != "trl":
        raise ConfigError(f"run {run_id} was trained by the workbench engine; resume it without --backend trl")
    cfg = RunConfig.from_dict(stored)
    if overrides:
        cfg = cfg.override(overrides)
    cfg.workspace = str(workspace)
    switch = "strategy" in overrides or "strategy_params" in overrides
    return _train(cfg.validate(), trl_args, callbacks, verify, progress, resume_id=run_id, switch=switch)


#: The workbench's part of a TRL checkpoint: store step, strategy in force, per-problem history.
STATE_FILE = "workbench_state.json"


def _last_trl_checkpoint(store, run_id: str) -> dict:
    from workbench.errors import CheckpointError

    problems = []
    for ck in sorted(store.checkpoints(run_id), key=lambda c: c["step"], reverse=True):
        path = Path(ck["path"])
        try:
            state = json.loads((path / STATE_FILE).read_text())
            if not (path / "trainer_state.json").is_file():
                raise FileNotFoundError(path / "trainer_state.json")
        except (OSError, ValueError) as exc:
            problems.append(f"step {ck['step']} ({path}): {exc}")
            continue
        return {"step": int(ck["step"]), "path": str(path), "stored": ck["stored_path"], "state": state}
    raise CheckpointError(f"run {run_id} has no usable TRL checkpoint to resume from"
                          + (": " + "; ".join(problems) if problems else " (none was recorded)")
                          + ". Nothing in the store was changed.")


def _train(cfg: RunConfig, trl_args, callbacks, verify, progress: bool, *, new_run_id: str | None = None,
           resume_id: str | None = None, switch: bool = False) -> TrlRun:
    from datasets import Dataset

    from workbench.models.loading import add_lora, load_model_and_tokenizer
    from workbench.session import Session
    from workbench.store import RunStore
    from workbench.tasks import get_task

    trl_args = parse_trl_args(trl_args or {})
    if progress:
        trl_args.setdefault("disable_tqdm", False)
    check_trl_strategy(build_strategy(cfg.strategy, cfg.strategy_params))   # before anything is written
    state = process_state(cfg)
    resume: dict | None = None
    if state.is_main_process:
        if resume_id is None:
            session = Session(cfg, run_id=new_run_id)
        else:
            store = RunStore(cfg.workspace)
            lease = store.claim(resume_id)
            try:
                resume = _last_trl_checkpoint(store, resume_id)
                session = Session(cfg, store=store, _run_id=resume_id)
            except BaseException:
                lease.release()
                raise
            session._lease = lease
        model, tok, info, task = session.model, session.tokenizer, session.model_info, session.task
        problems, max_new = session.train_problems, session.max_new_tokens
        rid = session.run_id
    else:
        session = None
        task = get_task(cfg.task.name, **cfg.task.params)
        problems = task.load_split(cfg.task.train_split)
        model, tok, info = load_model_and_tokenizer(cfg.model)
        model = add_lora(model, cfg.lora, seed=cfg.seed)
        max_new = cfg.rollout.max_new_tokens or int(getattr(task, "max_new_tokens", 64))
        rid = None
    rid, resume = _broadcast((rid, resume))
    try:
        if session is not None:
            out_dir = session.store.checkpoint_dir(rid, 0).parent / "trl"
        else:
            out_dir = Path(cfg.workspace) / "checkpoints" / rid / "trl"
        args = grpo_config(cfg, out_dir, max_new, info["device"], trl_args)
        use_chat = bool(info["chat_template"])
        dataset = Dataset.from_list(training_prompts(cfg, task, problems, use_chat))
        strategy, params = cfg.strategy, dict(cfg.strategy_params)
        if resume is not None and not switch:  # the strategy in force at the checkpoint
            strategy, params = resume["state"]["strategy"], resume["state"].get("strategy_params") or {}
        if session is not None:
            store, s0 = session.store, 0 if resume is None else resume["step"]
            resolved = session.resolved_config()
            resolved["resolved"].update({"backend": "trl", "trl": _jsonable(trl_args),
                                         "num_processes": state.num_processes})
            if resume is not None:
                store.truncate_after(rid, s0)
                session.step_count = s0
                session.config.strategy, session.config.strategy_params = strategy, params
            store.update_config(rid, resolved)
            store.add_event(rid, s0, "backend", {"backend": "trl", "num_processes": state.num_processes})
            session.ensure_base()
            if resume is not None:
                if switch:
                    session.set_strategy(strategy, **params)
                store.set_strategy(rid, strategy)
                store.add_event(rid, s0, "resumed", {"from_step": s0, "checkpoint": resume["stored"], "backend": "trl"})
            model.train()
        trainer = WorkbenchGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                                       wb_task=task, wb_problems=problems, wb_config=cfg, wb_strategy=strategy,
                                       wb_strategy_params=params, wb_verify=verify)
    except BaseException as exc:
        if session is not None:
            TrlRun(None, session, rid, cfg).failed(exc)  # type: ignore[arg-type]
        raise
    run = TrlRun(trainer, session, rid, cfg)
    if resume is not None:
        s0 = resume["step"]
        trainer.wb_history = SuccessHistory.from_json(resume["state"]["history"])
        trainer.wb_step = run.step = run.last_ckpt = s0
        if session is not None and any(e["step"] == s0 for e in session.store.evaluations(rid, label="policy")):
            run.last_eval = s0
    trainer.remove_callback(PrinterCallback)  # it prints every log dict when the progress bar is off
    trainer.add_callback(WorkbenchCallback(run))
    for cb in callbacks:
        trainer.add_callback(cb)
    try:
        trainer.train(resume_from_checkpoint=None if resume is None else resume["path"])
    except BaseException as exc:
        run.failed(exc)
        raise
    run.finished()
    return run


def _jsonable(d: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)) for k, v in d.items()}



def cli_train(args, base: RunConfig | None, overrides: dict[str, Any]) -> int:
    """``workbench train --backend trl``: a new run on TRL (every process of an
    ``accelerate launch`` runs this; only the main one prints)."""
    import sys

    cfg = (base or RunConfig()).override(overrides) if overrides else (base or RunConfig())
    main = process_state(cfg).is_main_process
    if args.resume:
        workspace = overrides.pop("workspace", "runs")
        if main:
            print(f"TRL backend: resuming run {args.resume}, {PartialState().num_processes} process(es)", flush=True)
        run = resume_trl(args.resume, workspace, trl_args=args.trl, progress=not args.quiet and main, **overrides)
    else:
        if main:
            print(f"TRL backend: model {cfg.model.name_or_path}, task {cfg.task.name}, strategy {cfg.strategy}, "
                  f"{PartialState().num_processes} process(es)", flush=True)
        run = train_trl(cfg, run_id=args.run_id, trl_args=args.trl, progress=not args.quiet and main)
    if main:
        status = run.store.get_run(run.run_id)["status"]
        evs = run.store.evaluations(run.run_id, label="policy", split="eval")
        if evs:
            s = evs[-1]["summary"]
            print(f"final (step {evs[-1]['step']}): pass@1 {s.get('eval/pass@1', float('nan')):.3f}, "
                  f"entropy {s.get('eval/mean_entropy', float('nan')):.3f}")
        times = ", ".join(f"{t:.2f}" for t in run.step_times)
        print(f"run {run.run_id} {status} at step {run.step}; step times (s): {times}; "
              f"store: {Path(run.store.root).resolve() / 'store.sqlite'}")
        sys.stdout.flush()
    return 0

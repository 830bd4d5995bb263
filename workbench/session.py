"""The Session: one RLVR run, stepped from Python, the CLI, a notebook or the dashboard.

One step:  apply pending commands -> pick B prompts -> sample G completions each ->
verify -> strategy (reward transform -> estimator -> calibrations) -> clipped surrogate
(+ KL, entropy) -> AdamW on the LoRA weights -> metrics -> one store transaction.

Shapes: B prompts, G samples per prompt, N = B*G sequences, T generated positions.
Seeds are derived per (run seed, step, problem, sample), so a run is deterministic and a
resumed run recomputes exactly the steps it lost.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from workbench.checkpoint import copy_adapter, read_checkpoint, remove_partial, write_checkpoint
from workbench.config import RunConfig
from workbench.errors import CheckpointError, ConfigError, TrainingError, WorkbenchError
from workbench.evaluation import Evaluator
from workbench.metrics import (
    SuccessHistory,
    advantage_stats,
    approx_kl,
    group_split,
    logprob_advantage_cov,
    masked_mean,
    mode_stats,
)
from workbench.models.fast_lora import MergedLoRA
from workbench.models.loading import add_lora, encode_prompts, load_model_and_tokenizer
from workbench.models.memory import check_session as check_memory
from workbench.allocator import keep_freed_memory
from workbench.rollout import sample, sampling_graph_bytes, token_logprobs
from workbench.store import COMMANDS, RunStore, check_command
from workbench.strategies.base import GroupBatch, Strategy
from workbench.strategies import pieces as _pieces  # noqa: F401  (registers the implementations)
from workbench.strategies.switching import StrategyRoster
from workbench.tasks import get_task
from workbench.seeding import row_seed
from workbench.trackers import Mirror, parse_report_to
from workbench.update import loss_settings, update

#: Commands a session understands (sent through the store by any process): ``COMMANDS``,
#: checked by ``workbench.store.check_command`` at the sender and again here.
__all__ = ["COMMANDS", "Session", "load_run_policy"]


class Session:
    """A LoRA RLVR run. ``Session(config)`` starts a new run in the store;
    ``Session.resume(run_id)`` continues one from its last checkpoint."""

    def __init__(self, config: RunConfig | dict | None = None, *, store: RunStore | None = None,
                 run_id: str | None = None, _run_id: str | None = None, **overrides: Any):
        if config is None:
            config = RunConfig()
        elif isinstance(config, dict):
            config = RunConfig.from_dict(config)
        elif not isinstance(config, RunConfig):
            raise ConfigError(f"Session(config): got {config!r} of type {type(config).__name__}; expected a RunConfig, "
                              "a dict of config fields (RunConfig().to_dict() shows them) or None for the defaults")
        if overrides:
            config = config.override(overrides)
        self.config = config.validate()
        cfg = self.config
        keep_freed_memory()                             # freed tensors' pages stay in the process (Linux)
        self.store = store or RunStore(cfg.workspace)
        self.task = get_task(cfg.task.name, **cfg.task.params)
        self.train_problems = self.task.load_split(cfg.task.train_split)
        if not self.train_problems:
            raise ConfigError(f"task.train_split = {cfg.task.train_split!r} of {cfg.task.name!r} has no problems")
        eval_problems = self.task.load_split(cfg.task.eval_split)
        if cfg.eval.max_problems:
            eval_problems = eval_problems[: cfg.eval.max_problems]
        self.eval_sets = {"eval": eval_problems}
        if cfg.eval.seen_problems:
            rng = random.Random(row_seed(cfg.seed, "seen"))
            k = min(cfg.eval.seen_problems, len(self.train_problems))
            self.eval_sets["seen"] = sorted(rng.sample(self.train_problems, k), key=lambda p: p.id)
        self.roster = StrategyRoster(cfg.strategy, cfg.strategy_params, seed=cfg.seed)   # switching, per-strategy state

        model, self.tokenizer, self.model_info = load_model_and_tokenizer(cfg.model)
        self.model = add_lora(model, cfg.lora, seed=cfg.seed)
        self.model.train()
        self.fast = MergedLoRA(self.model)               # the policy's forward for rollouts and updates
        self.device = self.model_info["device"]
        self.lora_params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.lora_params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                           betas=(cfg.optim.beta1, cfg.optim.beta2),
                                           foreach=True)   # one call per operation for all tensors (same values)
        self.max_new_tokens = cfg.rollout.max_new_tokens or int(getattr(self.task, "max_new_tokens", 64))
        self.use_chat = bool(self.model_info["chat_template"])
        self._prompt_cache: dict[str, list[int]] = {}
        self.history = SuccessHistory()
        self.step_count = 0
        self.paused = False
        self.stopped = False
        self._steps_allowed: int | None = None          # "step N" while paused
        self._last_eval_step = -1
        self._last_ckpt_step = -1
        self._lease = None                              # this process's claim on the run (one trainer per run)
        self._error_recorded = False                    # an "error" event already says why the run failed
        self.expired_commands: list[dict] = []          # commands a resume expired (sent while no trainer ran)
        self.pending_commands: list[dict] = []          # ... or kept, to apply (resume(apply_pending=True))
        self.checkpoint_warnings: list[str] = []        # checkpoints a resume could not use
        check_memory(self)                              # sizes that cannot fit: refused before the run exists
        if _run_id is None:
            self.run_id = self.store.create_run(self.resolved_config(), name=cfg.name or None, strategy=cfg.strategy,
                                                run_id=run_id)
            self._lease = self.store.claim(self.run_id)
            self.store.add_event(self.run_id, 0, "strategy", self.strategy.describe())
        else:
            self.run_id = _run_id
        # e.g. a custom verifier call past its time limit: an event at the current step
        self.task.on_event = lambda kind, payload: self.store.add_event(self.run_id, self.step_count, kind, payload)
        # report_to: a copy of every step's scalars and evaluation summary for trackio/tensorboard/wandb
        self.trackers = Mirror(parse_report_to(cfg.report_to), self.run_id, self.resolved_config(), self.store.root,
                               on_event=self.task.on_event)
        # the base model's results and banked modes, and each policy evaluation compared with them
        self.evaluator = Evaluator(self.task, self.tokenizer, self.eval_sets, cfg, max_new_tokens=self.max_new_tokens,
                                   use_chat=self.use_chat, device=self.device, prompt_ids=self._prompt_ids,
                                   store=self.store, run_id=self.run_id, trackers=self.trackers)

    @property
    def strategy(self) -> Strategy:
        """The strategy in force."""
        return self.roster.current

    @property
    def base(self) -> dict[str, dict[str, dict]]:
        """The base model's evaluation rows: split -> problem id -> row (empty before ``ensure_base``)."""
        return self.evaluator.base

    # ------------------------------------------------------------------ public API
    def resolved_config(self) -> dict:
        d = self.config.to_dict()
        d["resolved"] = {"model": self.model_info, "max_new_tokens": self.max_new_tokens,
                         "num_train_problems": len(self.train_problems),
                         "num_eval_problems": {k: len(v) for k, v in self.eval_sets.items()}}
        return d

    @classmethod
    def resume(cls, run_id: str, workspace: str | os.PathLike = "runs", *, apply_pending: bool = False,
               **overrides: Any) -> "Session":
        """Continue ``run_id`` from its last usable checkpoint. Store rows written after that
        checkpoint are dropped and recomputed (same seeds), so no step is duplicated or
        missing. ``overrides`` (dotted config fields) may change e.g. ``steps``.

        - Only one trainer per run: a run another process is training is refused (StoreError).
        - A checkpoint that cannot be read is skipped for the one before it (a "warning"
          event); when none is usable, or the run has steps but no checkpoint at all, the
          resume is refused with a CheckpointError and the store is left as it was.
        - Half-written checkpoint folders of a killed process are removed.
        - Commands sent while no trainer ran are expired (``expired_commands``), unless
          ``apply_pending`` is true: then they are applied before the first step.
        """
        started = time.time()
        store = RunStore(workspace)
        store.get_run(run_id)  # an unknown run: the error lists the known ones
        lease = store.claim(run_id)
        try:
            sess = cls._resume_claimed(store, run_id, workspace, lease, started, apply_pending, overrides)
        except BaseException:
            lease.release()
            raise
        return sess

    @classmethod
    def _resume_claimed(cls, store: RunStore, run_id: str, workspace: str | os.PathLike, lease: Any,
                        started: float, apply_pending: bool, overrides: dict[str, Any]) -> "Session":
        run = store.get_run(run_id)
        cfg_dict = {k: v for k, v in run["config"].items() if k != "resolved"}
        cfg = RunConfig.from_dict(cfg_dict)
        if overrides:
            cfg = cfg.override(overrides)
        cfg.workspace = str(workspace)
        switch = ((cfg.strategy, dict(cfg.strategy_params))
                  if "strategy" in overrides or "strategy_params" in overrides else None)
        sess = cls(cfg, store=store, _run_id=run_id)
        sess._lease = lease
        removed = remove_partial(store.checkpoint_dir(run_id, 0).parent)
        ck = sess._restore_checkpoint(run["last_step"])
        store.truncate_after(run_id, sess.step_count)
        for msg in sess.checkpoint_warnings:
            store.add_event(run_id, sess.step_count, "warning", {"message": msg})
        if removed:
            store.add_event(run_id, sess.step_count, "warning", {
                "message": f"removed {len(removed)} half-written checkpoint folder(s) of a stopped process: "
                           + ", ".join(p.name for p in removed)})
        sess.evaluator.load_base()
        if sess.evaluator.complete_at(sess.step_count):   # no duplicate at the end of the run
            sess._last_eval_step = sess.step_count
        if switch is not None:  # the checkpoint restored the old strategy; switch at this boundary
            sess.set_strategy(switch[0], **switch[1])
        if cfg.to_dict() != cfg_dict:
            store.update_config(run_id, sess.resolved_config())
        store.set_strategy(run_id, sess.config.strategy)
        if apply_pending:
            sess.pending_commands = store.pending_commands(run_id)
        else:
            sess.expired_commands = store.expire_commands(
                run_id, started, sess.step_count,
                "expired: sent while no trainer ran this run, so it was not applied when the run was resumed; "
                "send it again, or resume with --apply-pending (Session.resume(..., apply_pending=True))")
            if sess.expired_commands:
                store.add_event(run_id, sess.step_count, "commands_expired",
                                {"ids": [c["id"] for c in sess.expired_commands],
                                 "kinds": [str(c["kind"]) for c in sess.expired_commands]})
        store.add_event(run_id, sess.step_count, "resumed",
                        {"from_step": sess.step_count, "checkpoint": None if ck is None else ck["stored_path"]})
        return sess

    def run(self, n: int | None = None) -> Iterator[dict]:
        """Yield one record per training step until ``n`` more steps (default: up to
        ``config.steps``) are done or a ``stop`` command arrives. Blocks while paused,
        polling the store's command table."""
        target = self.step_count + n if n is not None else self.config.steps
        self._hold()
        try:
            self.ensure_base()
            self.store.set_status(self.run_id, "running")
            while self.step_count < target:
                self.apply_commands()
                if self.stopped:
                    break
                if self.paused and not self._steps_allowed:
                    time.sleep(0.2)
                    continue
                record = self.step(_commands=False)
                if self._steps_allowed:
                    self._steps_allowed -= 1
                    if self._steps_allowed == 0:
                        self._steps_allowed = None
                        self.paused = True
                        self.store.set_status(self.run_id, "paused")
                yield record
            if self._last_eval_step != self.step_count:
                self.evaluate()
            if self._last_ckpt_step != self.step_count:
                self.checkpoint()
        except (GeneratorExit, KeyboardInterrupt):  # the caller stopped: the run can be resumed
            self.store.set_status(self.run_id, "stopped")
            self._release()
            raise
        except BaseException as exc:
            self._record_failure(exc)
            self._release()
            raise
        self.store.set_status(self.run_id, "stopped" if self.stopped else "finished")
        self._release()
        self.trackers.close()      # deliver what the trackers buffer; a later write reopens them

    def step(self, _commands: bool = True) -> dict:
        """One training step; returns its scalar record (also written to the store)."""
        self._hold()
        if _commands:
            self.apply_commands()
        self.ensure_base()
        cfg = self.config
        s = self.step_count + 1
        G, B = cfg.rollout.group_size, cfg.rollout.prompts_per_step
        t_start = time.perf_counter()

        # 1. rollouts ------------------------------------------------------------
        problems = self._select_prompts(s)                                        # [B]
        prompts = self._prompt_ids(problems)
        rows = [prompts[b] for b in range(B) for _ in range(G)]                   # [N]
        seeds = [row_seed(cfg.seed, "train", s, problems[b].id, g) for b in range(B) for g in range(G)]
        sampler = self.roster.sampler({"vocab_size": int(self.model.get_input_embeddings().num_embeddings),
                                       "pad_id": self.tokenizer.pad_token_id, "device": self.device})
        loss_cfg = self._loss_settings()
        # The first update's forward, on-policy: with no KL and no entropy term it runs only over
        # the rows that carry gradient (``skip`` below); otherwise through the rollout itself
        # when its history fits (``reuse``), else over every row.
        skip = (sampler is None and loss_cfg["kl_coef"] == 0 and loss_cfg["entropy_coef"] == 0
                and cfg.optim.skip_zero_advantage)
        reuse = sampler is None and not skip and self._reuse_forward(prompts)
        self.model.eval()
        with self.fast.shared() if reuse else self.fast.frozen():
            ro = sample(self.fast, rows, seeds, max_new_tokens=self.max_new_tokens,
                        eos_id=self.tokenizer.eos_token_id, pad_id=self.tokenizer.pad_token_id,
                        temperature=cfg.rollout.temperature, decode=self._decode, group_size=G,
                        processors=[sampler.processor()] if sampler is not None else (),
                        grad=reuse, grad_entropy=reuse and loss_cfg["entropy_coef"] != 0)
        self.model.train()
        t_rollout = time.perf_counter()

        # 2. rewards -> advantages ----------------------------------------------------
        verdicts = self.task.verify_batch([problems[i // G] for i in range(len(rows))], ro.texts)
        rewards = torch.tensor([v.reward for v in verdicts], dtype=torch.float32).view(B, G)   # [B, G]
        correct = torch.tensor([v.correct for v in verdicts]).view(B, G)                      # [B, G]
        parsed = torch.tensor([v.parsed for v in verdicts]).view(B, G)                        # [B, G]
        mask = ro.completion_mask.float()                                                     # [N, T]
        seq_entropy = ((ro.entropy * mask).sum(-1) / mask.sum(-1).clamp(min=1)).view(B, G)    # [B, G]
        batch = GroupBatch(problem_ids=[p.id for p in problems], rewards=rewards, correct=correct, parsed=parsed,
                           answers=[[verdicts[b * G + g].answer for g in range(G)] for b in range(B)],
                           entropy=seq_entropy, step=s, history=self.history, seed=cfg.seed)
        out = self.strategy.advantages(batch)
        adv_tok = out.advantage.reshape(-1, 1).to(self.device).expand_as(mask)                # [N, T]
        t_reward = time.perf_counter()

        # 3. update ---------------------------------------------------------------------
        every = cfg.loss.ref_kl_every
        need_ref = loss_cfg["kl_coef"] > 0 or (every > 0 and (s - 1) % every == 0)
        ref_logp = None
        if need_ref:
            with torch.no_grad(), self.model.disable_adapter():
                ref_logp, _ = token_logprobs(self.model, ro, cfg.rollout.temperature)            # [N, T]
        # pi_old: with a sampling calibration, the adjusted distribution the sampler drew from;
        # on-policy (None), the first update's own forward (detached), so the ratio is 1 bit for
        # bit there. With ``reuse`` that first forward is the rollout's: its log-probs are still
        # attached to the sampling forwards, and only later updates run the model again.
        # ``skip``: on-policy with no KL and no entropy term, a row whose every token has
        # advantage 0 gets exactly zero gradient from the first update (its surrogate is
        # -min(rho * 0, clip(rho) * 0), and rho = 1 there): that update's forward runs only
        # over the other rows, and the skipped rows' log-probs are the sampler's (which the
        # forward would reproduce up to float rounding). Later updates run over every row.
        first_rows = None
        if skip:
            live = ((adv_tok != 0) & (mask > 0)).any(-1)                                     # [N]
            if not bool(live.all()):
                # at least one row, so that the loss still reaches every adapter weight (with
                # exactly zero gradient) and the optimiser steps as it would have
                first_rows = (live.nonzero().squeeze(-1) if bool(live.any())
                              else torch.zeros(1, dtype=torch.long, device=live.device))

        def forward(u: int):
            if u == 0 and reuse:
                return ro.policy_logp, ro.policy_entropy                                     # [N, T]
            with self.fast.shared():
                if u == 0 and first_rows is not None:
                    part, _ = token_logprobs(self.fast, ro.select(first_rows), cfg.rollout.temperature)  # [n, w]
                    part = torch.nn.functional.pad(part, (0, mask.shape[1] - part.shape[1]))              # [n, T]
                    return ro.sample_logp.index_put((first_rows,), part), None                           # [N, T]
                return token_logprobs(self.fast, ro, cfg.rollout.temperature,
                                      with_entropy=loss_cfg["entropy_coef"] != 0)            # [N, T]

        def check(u: int, parts) -> None:
            if not torch.isfinite(parts.loss):
                self._fail(s, f"the loss is {parts.loss.item()} at step {s} (update {u + 1})",
                           "Lower optim.lr, raise optim.max_grad_norm clipping, or check the strategy's parameters")

        def descend(loss: torch.Tensor) -> float:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(self.lora_params, cfg.optim.max_grad_norm or float("inf"))
            if not torch.isfinite(gn):
                self._fail(s, f"the gradient norm is {gn.item()} at step {s}", "Lower optim.lr")
            self.optimizer.step()
            return float(gn)

        updates = self._updates_per_batch()
        res = update(forward, adv_tok, mask, strategy=self.strategy, loss=loss_cfg, updates=updates,
                     max_len=self.max_new_tokens, descend=descend, check=check, ref_logp=ref_logp,
                     old_logp=ro.sample_logp if sampler is not None else None,
                     token_seeds=lambda u: [row_seed(cfg.seed, "token", s, u)])
        old_logp = res.old_logp                                                              # [N, T]
        t_update = time.perf_counter()
        dlc_stats = sampler.observe(ro, correct) if sampler is not None else {}

        # 4. metrics ----------------------------------------------------------------------
        N_tok = float(mask.sum())
        c = correct.sum(1)                                                                   # [B]
        scalars: dict[str, float] = {
            "train/reward_mean": float(rewards.mean()),
            "train/reward_transformed_mean": float(out.reward.mean()),
            "train/pass@1": float(correct.float().mean()),
            "train/parse_error_frac": float((~parsed).float().mean()),
            "train/loss": float(res.loss[0]),
            "train/grad_norm": res.grad_norm,
            "train/entropy": float(masked_mean(ro.entropy, mask)),
            "train/logp_adv_cov": logprob_advantage_cov(old_logp, adv_tok, mask),
            "train/kl_old": float(res.kl_old[0]),

            "train/completion_len": N_tok / len(rows),
            "train/truncated_frac": float((~ro.finished).float().mean()),
            "train/num_tokens": N_tok,
            "train/lr": self.optimizer.param_groups[0]["lr"],
            # how off-policy the samples are (0 on-policy): mean |log pi_theta - log pi_old| over the
            # tokens before the first update, and the exact KL(sampling dist || policy) per token
            "train/offpolicy_abs_logratio": res.offpolicy_abs_logratio,
            "train/kl_sample_policy": (float(masked_mean(ro.sample_kl, mask))
                                       if sampler is not None and ro.sample_kl is not None else 0.0),
        }
        if ref_logp is not None:  # only at the steps where the reference forward ran
            scalars["train/kl_ref"] = approx_kl(ref_logp, old_logp, mask)
        if self.strategy.token:
            scalars["train/token_calibrated"] = float(res.token_selected[0]) / updates
        scalars.update(dlc_stats)
        scalars.update(group_split(correct))
        scalars.update(advantage_stats(out.advantage))
        scalars.update({k: float(v[0]) for k, v in res.clip.items()})
        upd_tokens = N_tok * updates
        scalars.update({
            "time/rollout": t_rollout - t_start,
            "time/reward": t_reward - t_rollout,
            "time/update": t_update - t_reward,
            "perf/rollout_tok_s": N_tok / max(t_rollout - t_start, 1e-9),
            "perf/update_tok_s": upd_tokens / max(t_update - t_reward, 1e-9),
            "perf/update_through_rollout": float(reuse),   # 1: the first update reused the rollout's forward
            # share of the rows whose forward the first update skipped (zero advantage; 0 when not skipping)
            "perf/update_rows_skipped": 1.0 - len(first_rows) / len(rows) if first_rows is not None else 0.0,
        })
        self.history.update(s, batch.problem_ids, c.tolist(), G)
        problem_rows, samples = [], []
        for b, prob in enumerate(problems):
            vs = verdicts[b * G : (b + 1) * G]
            ms = mode_stats([v.mode_key if v.correct else None for v in vs])
            problem_rows.append({"problem_id": prob.id, "split": "train", "n": G, "c": int(c[b]),
                                 "num_modes": ms["num_modes"], "mode_counts": ms["counts"],
                                 "reward_mean": float(rewards[b].mean()), "adv_abs_mean": float(out.advantage[b].abs().mean())})
            for g in range(min(2, G)):
                v = vs[g]
                samples.append({"problem_id": prob.id, "completion": ro.texts[b * G + g], "reward": float(v.reward),
                                "correct": bool(v.correct), "mode_key": v.mode_key})
        t_metrics = time.perf_counter()
        scalars["time/metrics"] = t_metrics - t_update - dlc_stats.get("time/dlc_train", 0.0)
        scalars["time/step"] = t_metrics - t_start
        self.store.write_step(self.run_id, s, scalars, problem_rows, samples)
        self.trackers.log_step(s, scalars)
        self.step_count = s

        every, ck_every = cfg.eval.every, cfg.checkpoint_every
        if every and s % every == 0:
            self.evaluate()
        if ck_every and s % ck_every == 0:
            self.checkpoint()
        return {"step": s, **scalars}

    # ------------------------------------------------------------------ evaluation
    def ensure_base(self) -> None:
        """Evaluate the base model (adapter disabled) once, at step 0, and bank its modes."""
        todo = self.evaluator.base_todo()
        if not todo:
            return
        try:
            with self.model.disable_adapter():
                self.evaluator.evaluate_base(self.model, todo)
        except Exception as exc:
            self._record_failure(exc, "the base model's evaluation failed")
            raise

    def evaluate(self) -> dict[str, float]:
        """Evaluate the current policy on every evaluation split; store and return the
        summary (eval/, collapse/, boundary/, sharpen/ keys; 'seen' split keys prefixed)."""
        self.ensure_base()
        with self.fast.frozen():
            merged = self.evaluator.evaluate_policy(self.fast, self.step_count)
        self._last_eval_step = self.step_count
        return merged

    # ------------------------------------------------------------------ control
    def set_strategy(self, spec: str, /, **params: Any) -> None:
        """Switch strategy at the next step boundary (recorded as an event at the current
        step). Per-problem history stays with the session; a strategy's own state (the
        memory network) is kept and restored when the same strategy is switched back to."""
        self.roster.switch(spec, params)
        self.config.strategy, self.config.strategy_params = spec, dict(params)
        self.store.set_strategy(self.run_id, spec)
        self.store.add_event(self.run_id, self.step_count, "strategy", self.strategy.describe())

    def pause(self) -> None:
        self.paused = True
        self.store.set_status(self.run_id, "paused")
        self.store.add_event(self.run_id, self.step_count, "pause", {})

    def apply_commands(self) -> None:
        """Apply commands other processes wrote to the store, oldest first.

        Each is checked again here (a row may have reached the table without
        ``send_command``); one that is malformed or fails is marked "rejected" with the
        reason, recorded as a "command_rejected" event, and training goes on.
        """
        for cmd in self.store.pending_commands(self.run_id):
            kind = cmd["kind"]
            try:
                payload = check_command(kind, cmd.get("payload"))
                if kind == "set_strategy" and payload.get("at_step", -1) > self.step_count:
                    continue  # a switch scheduled after a later step: it stays pending until then
                if kind == "pause":
                    self.pause()
                elif kind == "resume":
                    self.paused, self._steps_allowed = False, None
                    self.store.set_status(self.run_id, "running")
                    self.store.add_event(self.run_id, self.step_count, "resume", {})
                elif kind == "stop":
                    self.stopped = True
                    self.store.add_event(self.run_id, self.step_count, "stop", {})
                elif kind == "step":
                    self._steps_allowed = payload["n"]
                elif kind == "evaluate":
                    self.evaluate()
                elif kind == "checkpoint":
                    self.checkpoint()
                elif kind == "set_strategy":
                    self.set_strategy(payload["strategy"], **payload["params"])
                else:  # pragma: no cover - check_command knows every kind
                    raise ConfigError(f"unknown command {kind!r}; valid: {', '.join(COMMANDS)}")
            except Exception as exc:  # noqa: BLE001 - no command may stop the trainer
                reason = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
                self._close_command(cmd, "rejected", reason)
                self.store.add_event(self.run_id, self.step_count, "command_rejected",
                                     {"id": cmd["id"], "kind": str(kind), "reason": reason})
                continue
            self._close_command(cmd, "applied")

    def _close_command(self, cmd: dict, status: str, message: str | None = None) -> None:
        try:
            self.store.mark_command(cmd["id"], status, self.step_count, message)
        except WorkbenchError:  # closed meanwhile by another reader (e.g. expired): nothing to do
            pass

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> Path:
        """Write adapter, optimiser, strategy state and session state atomically, then record it."""
        final = self.store.checkpoint_dir(self.run_id, self.step_count)
        state = {"step": self.step_count, "history": self.history.to_json(), "strategy": self.config.strategy,
                 "strategy_params": self.config.strategy_params, "paused": self.paused}
        try:
            write_checkpoint(final, self.model, self.optimizer, self.roster.state_dicts(), state)
        except CheckpointError as exc:
            msg = f"run {self.run_id}, step {self.step_count}: {exc}"
            self.store.add_event(self.run_id, self.step_count, "error", {"message": msg})
            raise CheckpointError(msg) from exc
        self.store.record_checkpoint(self.run_id, self.step_count, final)
        rel = self.store.checkpoints(self.run_id)
        stored = next((c["stored_path"] for c in rel if c["step"] == self.step_count), str(final))
        self.store.add_event(self.run_id, self.step_count, "checkpoint", {"path": stored})
        self._last_ckpt_step = self.step_count
        return final

    def _restore_checkpoint(self, last_step: int) -> dict | None:
        """Load the newest checkpoint that reads back whole; older ones are the fallback.

        Returns None (start at step 0) only for a run that had not reached its first
        checkpoint; with checkpoints recorded but none readable, or more steps than a first
        checkpoint would cover, restarting would delete history that cannot come back the
        same way, so that is a CheckpointError and nothing is changed.
        """
        records = sorted(self.store.checkpoints(self.run_id), key=lambda c: c["step"], reverse=True)
        problems: list[str] = []
        for ck in records:
            try:
                self._load_checkpoint(Path(ck["path"]))
            except (CheckpointError, KeyError, ValueError, TypeError, RuntimeError) as exc:
                why = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
                problems.append(f"checkpoint of step {ck['step']} ({ck['path']}) is unusable: {why}")
                continue
            self.checkpoint_warnings = [f"{p}; resumed from the checkpoint of step {ck['step']} instead"
                                        for p in problems]
            return ck
        if records:
            raise CheckpointError(
                f"run {self.run_id} has no usable checkpoint: " + "; ".join(problems)
                + ". Nothing in the store was changed. Put an intact checkpoint folder back in place "
                  f"({self.store.checkpoint_dir(self.run_id, records[0]['step'])}) or start a new run.")
        every = self.config.checkpoint_every
        if last_step > 0 and not (0 < every and last_step <= every):
            raise CheckpointError(
                f"run {self.run_id} has steps 1..{last_step} in the store but no checkpoint to continue from "
                f"(none was recorded; checkpoint_every = {every}). Resuming would start again "
                "at step 0 and delete them, so nothing was changed. Start a new run instead (with a "
                "checkpoint_every that writes checkpoints), or keep this run's results as they are.")
        if last_step > 0:  # stopped before its first checkpoint: those steps are recomputed, identically
            self.checkpoint_warnings = [f"no checkpoint yet (the first is due at step {every}): started again from "
                                        f"step 0; steps 1..{last_step} are computed again with the same seeds"]
        return None

    # ------------------------------------------------------------------ the run's claim and status
    def _hold(self) -> None:
        """Claim the run for this process if it does not hold it (refused while another trains it)."""
        if self._lease is None or not self._lease.held:
            self._lease = self.store.claim(self.run_id)

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def _record_failure(self, exc: BaseException, what: str = "training failed") -> None:
        """Mark the run failed with an "error" event (once), so it never stays 'created' or 'running'."""
        if self._error_recorded:
            return
        self._error_recorded = True
        try:
            self.store.set_status(self.run_id, "failed")
            self.store.add_event(self.run_id, self.step_count, "error",
                                 {"message": f"{what} at step {self.step_count}: {type(exc).__name__}: {exc}"})
        except WorkbenchError:  # the store itself is what failed: the exception says so
            pass

    def close(self) -> None:
        """Give the run back (another process may resume it); a run left mid-way is marked stopped."""
        if self._lease is not None and self._lease.held:
            if self.store.get_run(self.run_id)["stored_status"] in ("created", "running", "paused"):
                self.store.set_status(self.run_id, "stopped")
        self._release()
        self.trackers.close()

    def _load_checkpoint(self, path: Path) -> None:
        ck = read_checkpoint(path, self.device)
        copy_adapter(self.model, ck.weights, path)
        self.optimizer.load_state_dict(ck.optimizer)
        state = ck.state
        self.history = SuccessHistory.from_json(state["history"])
        self.step_count = int(state["step"])
        self._last_ckpt_step = self.step_count
        strategy = state.get("strategy")  # the strategy in force at that step (it may have been switched)
        if strategy:
            self.config.strategy, self.config.strategy_params = strategy, state.get("strategy_params") or {}
        self.roster.restore(ck.strategy_states, strategy, self.config.strategy_params)
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))

    # ------------------------------------------------------------------ helpers
    def _reuse_forward(self, prompts: list[list[int]]) -> bool:
        """Whether this step's first update back-propagates through the rollout (see
        ``rollout.reuse_forward_mb``): on-policy sampling through the merged-LoRA forward, and
        a key/value history within the limit."""
        limit = self.config.rollout.reuse_forward_mb
        if limit <= 0 or not self.fast.usable:
            return False
        n = len(prompts) * self.config.rollout.group_size
        need = sampling_graph_bytes(self.model, n, max(len(p) for p in prompts), self.max_new_tokens)
        return need <= limit * 2**20

    def _loss_settings(self) -> dict[str, Any]:
        return loss_settings(self.config.loss, self.strategy)

    def _updates_per_batch(self) -> int:
        """Optimiser steps on this step's batch (the config's, unless the strategy sets it)."""
        return self.strategy.updates_per_batch(self.config.optim.updates_per_batch)

    def _select_prompts(self, step: int) -> list:
        """B training problems for ``step``: a seeded draw without replacement."""
        rng = random.Random(row_seed(self.config.seed, "prompts", step))
        B, pool = self.config.rollout.prompts_per_step, self.train_problems
        if B <= len(pool):
            return rng.sample(pool, B)
        return [pool[i % len(pool)] for i in rng.sample(range(B), B)]

    def _prompt_ids(self, problems) -> list[list[int]]:
        todo = [p for p in problems if p.id not in self._prompt_cache]
        if todo:
            for p, ids in zip(todo, encode_prompts(self.tokenizer, self.task, todo, self.use_chat)):
                self._prompt_cache[p.id] = ids
        return [self._prompt_cache[p.id] for p in problems]

    def _decode(self, ids: list[int]) -> str:
        return self._decode_tuple(tuple(ids))

    @functools.cached_property
    def _decode_tuple(self):
        """The tokenizer's decode, remembered for the completions seen most recently (a
        collapsing policy samples the same few completions over and over)."""
        return functools.lru_cache(maxsize=1 << 16)(
            lambda ids: self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def _fail(self, step: int, what: str, remedy: str) -> None:
        msg = (f"{what}. Nothing of step {step} was stored; the store keeps steps 1..{step - 1}. {remedy}; "
               f"then resume with `workbench train --resume {self.run_id}` (from its last checkpoint).")
        self.store.set_status(self.run_id, "failed")
        self.store.add_event(self.run_id, self.step_count, "error", {"message": msg})
        self._error_recorded = True
        raise TrainingError(msg)

    def __repr__(self) -> str:
        return f"Session(run_id={self.run_id!r}, step={self.step_count}, strategy={self.config.strategy!r})"


def load_run_policy(run_id: str, workspace: str | os.PathLike = "runs", step: int | None = None,
                    model: dict | None = None):
    """(model with the run's adapter at a checkpoint, tokenizer, RunConfig, info) for evaluation,
    without touching the store. ``step`` None = the last checkpoint; ``model`` overrides fields
    of the run's model config (e.g. ``{"dtype": "bfloat16", "device": "cpu"}``)."""
    store = RunStore(workspace)
    run = store.get_run(run_id)
    cfg = RunConfig.from_dict({k: v for k, v in run["config"].items() if k != "resolved"})
    if model:
        cfg = cfg.override({f"model.{k}": v for k, v in model.items()}).validate()
    cks = store.checkpoints(run_id)
    if step is not None:
        cks = [c for c in cks if c["step"] == step]
    if not cks:
        have = ", ".join(str(c["step"]) for c in store.checkpoints(run_id)) or "none"
        raise CheckpointError(f"run {run_id} has no checkpoint{'' if step is None else f' at step {step}'} "
                              f"(checkpoints at steps: {have})")
    ck = max(cks, key=lambda c: c["step"])
    path = Path(ck["path"])
    if not (path / "adapter.safetensors").exists() and (path / "adapter_config.json").is_file():
        from workbench.export import load_checkpoint_model  # a TRL-backend checkpoint: a PEFT folder

        model, tok, info = load_checkpoint_model(cfg, path)
        return model, tok, cfg, {**info, "step": ck["step"]}
    model, tok, info = load_model_and_tokenizer(cfg.model)
    model = add_lora(model, cfg.lora, seed=cfg.seed)
    copy_adapter(model, read_checkpoint(Path(ck["path"]), info["device"]).weights, Path(ck["path"]))
    model.eval()
    return model, tok, cfg, {**info, "step": ck["step"]}

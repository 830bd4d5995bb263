"""The workbench's training step against TRL's GRPOTrainer, on the same work, side by side.

    python benchmarks/vs_trl.py [--steps 8] [--warmup 2] [--json]

Both run on the embedded model and task (two_primes) with identical work: B prompts per
step, G samples per prompt, the same generation limit, LoRA of the same rank on all
linear layers, no KL term, one optimiser step per rollout batch, token-mean loss with
eps = 0.2, the same precision: float32 weights and matmuls for both (TRL with
``bf16=False, fp16=False``), and no activation checkpointing for either (TRL's default
``gradient_checkpointing=True`` recomputes every layer's forward during the backward pass,
work the workbench does not do; ``--trl-checkpointing`` shows TRL with it as an extra
row). The workbench's first update is computed its fastest way: its forward skips the
completions whose every advantage is 0 (on-policy, with no KL and no entropy term their
gradient is exactly 0, so the update is the same as over every row; the output gives the
share skipped), ``--no-skip`` and ``--separate-forward`` show it without that as extra rows.
Each tool runs in its own subprocess (one after the other, so
they do not compete for the cores) and reports the median wall time of a whole training
step after warm-up (the workbench's includes its per-step metrics and store write),
rollout and update tokens per second, and its peak resident memory (and the resident
memory just before the first step, so the growth during training can be read off). Generated lengths
differ a little between the tools (different sampling streams), so tokens per second are
also given. ``--threads N`` pins both tools to N intra-op threads (default: torch's own).

Precision matters more than anything else here: TRL's defaults turn on bf16 mixed
precision where the hardware is not known to lack it, and on a CPU without native bf16
instructions (AVX2 only) those matmuls run in emulation, many times slower. That figure
compares precisions, not tools, so it is only an extra, labelled row (``--trl-defaults``);
the ratio is always taken at equal precision. The output names the precision of each row
and the CPU capability torch dispatches to (``torch.backends.cpu.get_cpu_capability()``).

Needs trl (`pip install trl`, an optional dev dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULTS = {"prompts": 32, "group": 8, "max_new_tokens": 10, "rank": 16, "lr": 5e-4}


def _model_path(a: argparse.Namespace):
    from workbench.paths import MODELS_DIR

    return a.model or str(MODELS_DIR / "tiny-primes")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _environment() -> dict:
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def _allocator() -> str:
    from workbench import allocator

    return "freed memory kept (glibc mallopt)" if allocator._done else "the platform's default"


#: glibc's environment variables for the workbench's allocator settings (workbench/allocator.py)
SAME_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


def run_workbench(a: argparse.Namespace, separate: bool = False, no_skip: bool = False) -> dict:
    """The workbench's own step. ``no_skip`` turns off skipping the zero-advantage rows in the
    first update's forward (``optim.skip_zero_advantage = false``), so that update back-propagates
    through the rollout (as before the skipping existed); ``separate`` also turns that off
    (``rollout.reuse_forward_mb = 0``): a training forward over every row."""
    from workbench.session import Session

    with tempfile.TemporaryDirectory() as ws:
        sess = Session(workspace=ws, steps=a.warmup + a.steps, **{"model.name_or_path": _model_path(a),
            "rollout.prompts_per_step": a.prompts, "rollout.group_size": a.group,
            "rollout.max_new_tokens": a.max_new_tokens, "lora.rank": a.rank, "lora.alpha": 2.0 * a.rank,
            "optim.lr": a.lr, "optim.updates_per_batch": 1, "loss.kl_coef": 0.0, "model.dtype": "float32",
            "eval.every": 0, "eval.n": 1, "eval.max_problems": 1, "eval.seen_problems": 0, "checkpoint_every": 0,
            **({"rollout.reuse_forward_mb": 0} if separate else {}),
            **({"optim.skip_zero_advantage": False} if separate or no_skip else {})})
        sess.ensure_base()
        precision = str(next(sess.model.parameters()).dtype).removeprefix("torch.")
        rss_before = _peak_rss_mb()
        walls, recs = [], []
        for _ in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            recs.append(sess.step())
            walls.append(time.perf_counter() - t0)
    walls, recs = walls[a.warmup:], recs[a.warmup:]
    tokens = [r["train/num_tokens"] for r in recs]
    return {
        "step_s": statistics.median(walls),
        "rollout_tok_s": statistics.median(r["perf/rollout_tok_s"] for r in recs),
        "update_tok_s": statistics.median(r["perf/update_tok_s"] for r in recs),
        "tokens_per_step": statistics.mean(tokens),
        "step_s_per_1k_tokens": statistics.median(w / t * 1000 for w, t in zip(walls, tokens)),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": rss_before,
        "precision": precision,
        "update_forward": ("through the rollout (on-policy update)" if all(r["perf/update_through_rollout"] for r in recs)
                           else "its own training forward, over the rows with a non-zero advantage"
                           if any(r["perf/update_rows_skipped"] for r in recs) else "its own training forward"),
        # share of the rows (completions) whose forward the first update skipped: their advantage was 0
        "update_rows_skipped": statistics.median(r["perf/update_rows_skipped"] for r in recs),
        "activation_checkpointing": False,
        "allocator": _allocator(),
        **_environment(),
    }


def run_trl(a: argparse.Namespace, defaults: bool = False, checkpointing: bool = False) -> dict:
    """TRL's GRPOTrainer on the same work; ``defaults`` leaves its precision and activation
    checkpointing settings alone, ``checkpointing`` keeps only its default activation
    checkpointing (float32)."""
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from workbench.tasks import get_task

    task = get_task("two_primes")
    problems = {task.prompt(p): p for p in task.load_split("train")}
    path = _model_path(a)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path)
    n_steps = a.warmup + a.steps
    prompts = list(problems) * (1 + (n_steps * a.prompts) // len(problems))
    ds = Dataset.from_dict({"prompt": prompts[: n_steps * a.prompts]})
    counted = {"tokens": []}

    def reward(prompts, completions, completion_ids, **_):
        out = [task.verify(problems[p], c).reward for p, c in zip(prompts, completions)]
        counted["tokens"].append(sum(len(ids) for ids in completion_ids))   # EOS included where it was sampled
        return out

    gen_time = {"s": 0.0}
    real_generate = transformers.GenerationMixin.generate

    def timed_generate(self, *args, **kw):
        t0 = time.perf_counter()
        try:
            return real_generate(self, *args, **kw)
        finally:
            gen_time["s"] += time.perf_counter() - t0

    transformers.GenerationMixin.generate = timed_generate
    walls, gens = [], []
    rss_before = {}

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            rss_before["mb"] = _peak_rss_mb()

        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.g0 = time.perf_counter(), gen_time["s"]

        def on_step_end(self, args, state, control, **kw):
            walls.append(time.perf_counter() - self.t0)
            gens.append(gen_time["s"] - self.g0)

    # equal work and precision: float32, and no activation checkpointing (TRL's default
    # recomputes each layer's forward in the backward pass; the workbench does not)
    pinned = {} if defaults else {"bf16": False, "fp16": False, "gradient_checkpointing": checkpointing}
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out, per_device_train_batch_size=a.prompts * a.group, num_generations=a.group,
            max_completion_length=a.max_new_tokens, beta=0.0, num_iterations=1, gradient_accumulation_steps=1,
            learning_rate=a.lr, loss_type="dapo", epsilon=0.2, temperature=1.0, max_steps=n_steps,
            use_cpu=True, report_to="none", save_strategy="no", logging_steps=1000, shuffle_dataset=False,
            disable_tqdm=True, seed=0, **pinned)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok,
                              peft_config=LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules="all-linear",
                                                     task_type="CAUSAL_LM"), callbacks=[Timer()])
        trainer.train()
        mixed = "bfloat16 autocast" if cfg.bf16 else "float16 autocast" if cfg.fp16 else None
        weights = str(next(trainer.model.parameters()).dtype).removeprefix("torch.")
        recomputes = bool(cfg.gradient_checkpointing)
    walls, gens, tokens = walls[a.warmup:], gens[a.warmup:], counted["tokens"][a.warmup:n_steps]
    return {
        "step_s": statistics.median(walls),
        "rollout_tok_s": statistics.median(t / g for t, g in zip(tokens, gens)),
        "update_tok_s": statistics.median(t / (w - g) for t, w, g in zip(tokens, walls, gens)),
        "tokens_per_step": statistics.mean(tokens),
        "step_s_per_1k_tokens": statistics.median(w / t * 1000 for w, t in zip(walls, tokens)),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": rss_before["mb"],
        "precision": f"{weights} + {mixed}" if mixed else weights,
        "activation_checkpointing": recomputes,
        "allocator": ("freed memory kept (glibc environment)" if all(os.environ.get(k) == v for k, v in
                                                                       SAME_ALLOCATOR.items()) else "the platform's default"),
        **_environment(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="measured steps (after warm-up), at least 5")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=DEFAULTS["prompts"], help="B: prompts per step")
    ap.add_argument("--group", type=int, default=DEFAULTS["group"], help="G: samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"])
    ap.add_argument("--rank", type=int, default=DEFAULTS["rank"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--model", default="", help="a local model folder (default: the embedded tiny-primes)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads per tool (0: torch's default)")
    ap.add_argument("--trl-defaults", action="store_true",
                    help="also run TRL with its default precision settings, as an extra row (not in the ratio)")
    ap.add_argument("--no-skip", action="store_true",
                    help="also run the workbench without skipping the zero-advantage rows "
                         "(optim.skip_zero_advantage=false: its update back-propagates through the rollout), as an "
                         "extra row (not in the ratio)")
    ap.add_argument("--separate-forward", action="store_true",
                    help="also run the workbench with a training forward over every row (no skipping, "
                         "rollout.reuse_forward_mb=0), as an extra row (not in the ratio)")
    ap.add_argument("--trl-checkpointing", action="store_true",
                    help="also run TRL with its default activation checkpointing (float32; each layer's forward "
                         "recomputed in the backward pass), as an extra row (not in the ratio)")
    ap.add_argument("--trl-same-allocator", action="store_true",
                    help="also run TRL with the workbench's allocator settings (glibc keeps freed memory), as an "
                         "extra row (not in the ratio)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=["workbench", "workbench_noskip", "workbench_separate", "trl", "trl_checkpointing", "trl_defaults",
                                           "trl_allocator"],
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        run = {"workbench": run_workbench, "workbench_separate": lambda a: run_workbench(a, separate=True),
               "workbench_noskip": lambda a: run_workbench(a, no_skip=True),
               "trl": run_trl, "trl_allocator": run_trl, "trl_defaults": lambda a: run_trl(a, defaults=True),
               "trl_checkpointing": lambda a: run_trl(a, checkpointing=True)}
        print(json.dumps(run[a.worker](a)))
        return
    if a.steps < 5:
        ap.error("--steps must be at least 5")
    results = {}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if a.threads:
        env.update(OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    passed = [x for k, v in vars(a).items()
              if k not in ("worker", "json", "trl_defaults", "separate_forward", "no_skip", "trl_same_allocator",
                           "trl_checkpointing")
              for x in (f"--{k.replace('_', '-')}", str(v))]
    extra = (("workbench_noskip",) if a.no_skip else ()) + (("workbench_separate",) if a.separate_forward else ()) \
        + (("trl_defaults",) if a.trl_defaults else ()) \
        + (("trl_checkpointing",) if a.trl_checkpointing else ()) + (("trl_allocator",) if a.trl_same_allocator else ())
    for worker in ("workbench", "trl") + extra:
        proc = subprocess.run([sys.executable, __file__, "--worker", worker, *passed], capture_output=True, text=True,
                              env={**env, **SAME_ALLOCATOR} if worker == "trl_allocator" else env)
        if proc.returncode != 0:
            sys.exit(f"{worker} benchmark failed:\n{proc.stderr[-3000:]}")
        results[worker] = json.loads(proc.stdout.strip().splitlines()[-1])
    wb, trl = results["workbench"], results["trl"]
    if wb["activation_checkpointing"] != trl["activation_checkpointing"]:
        sys.exit("activation checkpointing differs between the tools; the ratio would compare different work")
    if wb["precision"] != trl["precision"]:
        sys.exit(f"precision differs: workbench {wb['precision']}, TRL {trl['precision']}; the ratio would compare "
                 "precisions, not tools")
    results["precision"] = wb["precision"]
    results["cpu_capability"] = wb["cpu_capability"]
    results["ratio_step_time"] = wb["step_s"] / trl["step_s"]
    results["ratio_per_token"] = wb["step_s_per_1k_tokens"] / trl["step_s_per_1k_tokens"]
    results["config"] = {k: v for k, v in vars(a).items() if k not in ("worker", "json")}
    if a.json:
        print(json.dumps(results, indent=2))
        return
    print(f"same work: B={a.prompts} prompts x G={a.group} samples, <= {a.max_new_tokens} new tokens, "
          f"LoRA r={a.rank} all-linear, 1 optimiser step per batch, no KL; median of {a.steps} steps after {a.warmup}")
    print(f"torch {wb['torch']}, CPU capability {wb['cpu_capability']}, {wb['threads']} thread(s) per tool; "
          f"ratio at equal precision: {results['precision']}")
    print(f"{'':<26} {'precision':<26} {'step s':>8} {'tok/step':>9} {'s/1k tok':>9} {'rollout tok/s':>14} "
          f"{'update tok/s':>13} {'peak MB':>8}")
    labels = {"workbench": "workbench", "trl": "trl", "workbench_noskip": "wb, no skipping (extra)",
              "workbench_separate": "wb, every row (extra)",
              "trl_checkpointing": "trl, checkpointing (extra)", "trl_allocator": "trl, wb's allocator (extra)",
              "trl_defaults": "trl, its defaults (extra)"}
    for name in labels:
        if name in results:
            r = results[name]
            print(f"{labels[name]:<26} {r['precision']:<26} {r['step_s']:>8.3f} {r['tokens_per_step']:>9.0f} "
                  f"{r['step_s_per_1k_tokens']:>9.3f} {r['rollout_tok_s']:>14.0f} {r['update_tok_s']:>13.0f} "
                  f"{r['peak_rss_mb']:>8.0f}")
    print(f"workbench / TRL step time at equal precision ({results['precision']}): {results['ratio_step_time']:.2f} "
          f"(per token: {results['ratio_per_token']:.2f})")
    print(f"workbench's first update: {wb['update_forward']} (median share of rows skipped: "
          f"{wb['update_rows_skipped']:.2f}; their gradient is exactly 0, the update is the same)")
    print(f"allocator: workbench {wb['allocator']}; TRL {trl['allocator']}. Activation checkpointing: off for both "
          "(the extra rows name what they change)")


if __name__ == "__main__":
    main()

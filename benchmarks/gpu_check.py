"""GPU check: LoRA RLVR steps on a random-weight 0.5B Qwen2-style model in bf16, on the
workbench's engine and on the TRL backend, side by side; prints one JSON line.

    python benchmarks/gpu_check.py                    # both backends (a CUDA GPU: a few minutes)
    python benchmarks/gpu_check.py --backend trl      # one backend
    python benchmarks/gpu_check.py --backend trl --vllm   # TRL generating with vLLM (colocated; needs vllm)
    python benchmarks/gpu_check.py --tiny             # a tiny config, to check the script on a CPU

No tokenizer files, task data or Hub access: prompts are random token ids, and the
verifiable reward is synthetic (whether a completion has more even than odd token ids).
Each step: G = 8 samples for each of 16 prompts of 64 tokens, up to 256 new tokens (a
random model rarely stops early), GRPO advantages, the clipped token-mean surrogate, AdamW
on the LoRA weights (rank 16, all linear layers). The engine runs the workbench's own
rollout and loss; the TRL backend runs TRL's GRPOTrainer with the workbench's advantages
(``workbench.integrations.trl``), fed text prompts through a word-per-id tokenizer. Each
backend runs in its own process on a GPU, so peak GPU memory is its own. Per-step lines go to
stderr; stdout is one JSON object: {"config", "workbench": {...}, "trl": {...},
"ratio_step_time"} with, per backend, median step time, rollout and update tokens per
second, peak GPU memory and the steps. (Without a GPU the backends run one after the
other in this process.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _model_config(a: argparse.Namespace):
    from transformers import Qwen2Config

    if a.tiny:
        return Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           tie_word_embeddings=True, eos_token_id=2, pad_token_id=0)
    # the configuration of a 0.5B-parameter Qwen2-style model
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1000000.0, tie_word_embeddings=True, eos_token_id=2, pad_token_id=0)


def _device_dtype():
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, (torch.bfloat16 if device == "cuda" else torch.float32)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _summary(records: list[dict], device: str, extra: dict) -> dict:
    import torch

    measured = records[1:] if len(records) > 1 else records   # the first step warms up kernels
    return {
        **extra,
        "median_step_s": statistics.median(r["step_s"] for r in measured),
        "median_rollout_s": statistics.median(r["rollout_s"] for r in measured),
        "rollout_tok_s": statistics.median(r["tokens"] / max(r["rollout_s"], 1e-9) for r in measured),
        "update_tok_s": statistics.median(r["tokens"] / max(r["update_s"], 1e-9) for r in measured),
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "steps": records,
    }


def run_workbench(a: argparse.Namespace) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    from workbench.losses import policy_loss
    from workbench.models.fast_lora import MergedLoRA
    from workbench.rollout.sampling import sample, token_logprobs
    from workbench.strategies import GroupBatch, build_strategy

    device, dtype = _device_dtype()
    cfg = _model_config(a)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype)
    eos, pad = 2, 0
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    fast = MergedLoRA(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    strategy = build_strategy("grpo")
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    B, G, T = a.prompts, a.group, a.new_tokens
    gen = torch.Generator().manual_seed(0)
    records = []
    for step in range(a.steps):
        prompts = [torch.randint(3, cfg.vocab_size, (a.prompt_len,), generator=gen).tolist() for _ in range(B)]
        rows = [prompts[b] for b in range(B) for _ in range(G)]
        _sync(device)
        t_start = time.perf_counter()
        model.eval()
        with fast.frozen():
            ro = sample(fast, rows, [step * 100000 + i for i in range(len(rows))], max_new_tokens=T,
                        eos_id=eos, pad_id=pad, group_size=G)
        _sync(device)
        t_roll = time.perf_counter()
        ids = ro.completion_ids.masked_fill(ro.completion_mask == 0, 1)
        reward = ((ids % 2 == 0).sum(1) > (ids % 2 == 1).sum(1)).float().view(B, G).cpu()    # [B, G]
        batch = GroupBatch([str(b) for b in range(B)], reward, reward > 0, torch.ones(B, G, dtype=torch.bool),
                           [[None] * G for _ in range(B)], torch.zeros(B, G), step=step)
        adv = strategy.advantages(batch).advantage.reshape(-1, 1).to(device)                # [N, 1]
        model.train()
        mask = ro.completion_mask.float()
        logp, _ = token_logprobs(fast, ro)
        parts = policy_loss(logp, ro.sample_logp, adv.expand_as(mask), mask, eps_low=0.2, eps_high=0.2,
                            aggregation="token_mean", max_len=T)
        opt.zero_grad(set_to_none=True)
        parts.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        _sync(device)
        t_end = time.perf_counter()
        tokens = float(mask.sum())
        records.append({"step_s": t_end - t_start, "rollout_s": t_roll - t_start, "update_s": t_end - t_roll,
                        "tokens": tokens, "loss": parts.loss.item()})
        print(f"workbench step {step + 1}: {t_end - t_start:.2f} s (rollout {t_roll - t_start:.2f} s), "
              f"{tokens:.0f} tokens", file=sys.stderr, flush=True)
    return _summary(records, device, {"backend": "workbench", "device": _device_name(device), "params": n_params,
                                      "dtype": str(dtype), "build_s": build_s})


def run_trl(a: argparse.Namespace) -> dict:
    import tempfile

    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from workbench.config import LoraConfig, RunConfig
    from workbench.integrations.trl import WorkbenchGRPOTrainer, grpo_config
    from workbench.models.loading import add_lora
    from workbench.tasks.base import Problem, Verdict

    device, dtype = _device_dtype()
    cfg = _model_config(a)
    V = cfg.vocab_size
    backend = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(V)}, unk_token="t1"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", unk_token="t1", eos_token="t2",
                                  padding_side="left")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype)
    model = add_lora(model, LoraConfig(rank=a.rank, alpha=2.0 * a.rank))
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())

    class Parity:  # the synthetic verifiable reward: more even than odd token ids
        def verify_batch(self, problems, texts):
            out = []
            for text in texts:
                ids = [int(w[1:]) for w in text.split() if w[1:].isdigit()]
                ok = sum(i % 2 == 0 for i in ids) > sum(i % 2 == 1 for i in ids)
                out.append(Verdict(reward=float(ok), correct=ok, parsed=True, answer=None, mode_key=None))
            return out

    B, G, T = a.prompts, a.group, a.new_tokens
    gen = torch.Generator().manual_seed(0)
    problems = [Problem(f"p{i}", {}) for i in range(B * a.steps)]
    rows = [{"prompt": " ".join(f"t{x}" for x in torch.randint(3, V, (a.prompt_len,), generator=gen).tolist()),
             "problem_id": p.id} for p in problems]
    run_cfg = RunConfig().override({"rollout.prompts_per_step": B, "rollout.group_size": G,
                                    "rollout.max_new_tokens": T, "optim.updates_per_batch": 1, "optim.lr": 1e-5,
                                    "lora.rank": a.rank, "steps": a.steps,
                                    "model.dtype": "bfloat16" if device == "cuda" else "float32"})
    trl_args = {"use_vllm": True, "vllm_mode": "colocate"} if a.vllm else {}
    records: list[dict] = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            t_end = time.perf_counter()
            rec = trainer.wb_record
            tokens = float(sum(s["length"] for s in rec["samples"]))
            step_s = t_end - self.t0
            records.append({"step_s": step_s, "rollout_s": rec["t_rollout"], "update_s": step_s - rec["t_rollout"],
                            "tokens": tokens})
            print(f"trl step {state.global_step}: {step_s:.2f} s (rollout {rec['t_rollout']:.2f} s), "
                  f"{tokens:.0f} tokens", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as out:
        args = grpo_config(run_cfg, out, T, device, trl_args, num_processes=1)
        trainer = WorkbenchGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                       processing_class=tok, wb_task=Parity(), wb_problems=problems,
                                       wb_config=run_cfg)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(Timer())
        trainer.train()
    return _summary(records, device, {"backend": "trl", "vllm": a.vllm, "device": _device_name(device),
                                      "params": n_params, "dtype": str(dtype), "build_s": build_s})


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["both", "workbench", "trl"], default="both")
    ap.add_argument("--vllm", action="store_true", help="TRL generates with vLLM (colocate mode; GPU and vllm needed)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="a tiny model on whatever device (a smoke test of the script)")
    ap.add_argument("--worker", choices=["workbench", "trl"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps((run_workbench if a.worker == "workbench" else run_trl)(a)))
        return
    if a.vllm and a.backend == "workbench":
        ap.error("--vllm applies to the TRL backend (--backend trl or both)")
    backends = ["workbench", "trl"] if a.backend == "both" else [a.backend]
    config = {k: v for k, v in vars(a).items() if k not in ("worker", "backend")}
    report: dict = {"config": config}
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TOKENIZERS_PARALLELISM": "false"}
    import torch

    for worker in backends:
        if not torch.cuda.is_available():  # no GPU memory to keep apart: one process is quicker
            report[worker] = (run_workbench if worker == "workbench" else run_trl)(a)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker]
        for k, v in config.items():
            flag = f"--{k.replace('_', '-')}"
            if isinstance(v, bool):
                cmd += [flag] if v else []
            else:
                cmd += [flag, str(v)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            report[worker] = {"error": f"exit status {proc.returncode} (its stderr is above)"}
            continue
        report[worker] = json.loads(proc.stdout.strip().splitlines()[-1])
    if all("median_step_s" in report.get(b, {}) for b in ("workbench", "trl")):
        report["ratio_step_time"] = report["workbench"]["median_step_s"] / report["trl"]["median_step_s"]
    print(json.dumps(report))
    if any("error" in report[b] for b in backends):
        sys.exit(1)


if __name__ == "__main__":
    main()

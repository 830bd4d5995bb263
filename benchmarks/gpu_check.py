"""GPU check: 5 LoRA RLVR steps on a random-weight 0.5B Qwen2-style model, in bf16.

    python benchmarks/gpu_check.py            # on a machine with a CUDA GPU (about 2-4 minutes)
    python benchmarks/gpu_check.py --tiny     # a tiny config, to check the script on a CPU

Uses only torch, transformers and peft (plus the workbench's own rollout, strategy and
loss code from this checkout: no tokenizer, task files or Hub access needed). Each step:
G = 8 samples for each of 16 random-token prompts, up to 256 new tokens with a KV cache
(a random model rarely stops early, so lengths are close to the limit), a synthetic
verifiable reward (whether the completion contains more even than odd token ids), GRPO
advantages, the clipped token-mean surrogate, AdamW on the LoRA weights. Prints step
time, rollout and update tokens per second and peak GPU memory, as text and as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="a tiny model on whatever device (a smoke test of the script)")
    a = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from workbench.losses import policy_loss
    from workbench.models.fast_lora import MergedLoRA
    from workbench.rollout.sampling import sample, token_logprobs
    from workbench.strategies import GroupBatch, build_strategy

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if a.tiny:
        cfg = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                          tie_word_embeddings=True)
    else:  # the configuration of a 0.5B-parameter Qwen2-style model
        cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                          num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                          rope_theta=1000000.0, tie_word_embeddings=True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype)
    eos, pad = 2, 0
    model.config.eos_token_id, model.config.pad_token_id = eos, pad
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
                        "tokens": tokens, "loss": float(parts.loss)})
        print(f"step {step + 1}: {t_end - t_start:.2f} s (rollout {t_roll - t_start:.2f} s, update {t_end - t_roll:.2f} s), "
              f"{tokens:.0f} tokens, loss {float(parts.loss):.4f}", flush=True)
    measured = records[1:] if len(records) > 1 else records
    out = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "params": n_params, "dtype": str(dtype), "build_s": build_s,
        "B": B, "G": G, "max_new_tokens": T, "prompt_len": a.prompt_len, "lora_rank": a.rank,
        "median_step_s": statistics.median(r["step_s"] for r in measured),
        "median_rollout_s": statistics.median(r["rollout_s"] for r in measured),
        "rollout_tok_s": statistics.median(r["tokens"] / r["rollout_s"] for r in measured),
        "update_tok_s": statistics.median(r["tokens"] / r["update_s"] for r in measured),
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "steps": records,
    }
    print(json.dumps(out, indent=2))


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


if __name__ == "__main__":
    main()

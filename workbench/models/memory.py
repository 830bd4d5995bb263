"""Refuse sizes that cannot fit in memory before allocating anything large.

A training step holds, for N = B*G sequences of P prompt and T generated tokens, the
completion logits [N, T, V] (in the model's dtype and as float32 scores kept for the
backward pass) and, while sampling, a KV cache of 2 * layers * N * (P+T) * kv_width
values. Evaluation samples ``chunk`` rows at a time (the same two terms) and keeps
problems*n completions as text; the LoRA adapter holds rank * (in + out) float32 values per
adapted layer, three times more for its gradient and AdamW state. These are lower bounds of what really gets allocated
(activations, gradients and allocator slack come on top), so a refusal is a certain
failure, not a guess; the message says which sizes to lower.

Set the environment variable ``WORKBENCH_NO_MEMORY_CHECK=1`` to skip the check (e.g. when
swap space makes room that the free-memory figure does not show).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import ConfigError

GiB = 1024**3
#: Python's cost of one stored completion beyond its text (row tuple, str object, verdict).
ROW_OVERHEAD = 400


def available_bytes(device: str) -> int | None:
    """Free memory on ``device`` (GPU: free + cached by torch; CPU: MemAvailable, capped by a
    cgroup limit); None when unknown."""
    import torch

    if device.startswith("cuda"):
        idx = torch.device(device).index
        idx = torch.cuda.current_device() if idx is None else idx
        free, _ = torch.cuda.mem_get_info(idx)
        return int(free + torch.cuda.memory_reserved(idx) - torch.cuda.memory_allocated(idx))
    if device != "cpu":
        return None
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # a container's limit (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(found)


def model_shape(model) -> dict[str, int]:
    """Vocabulary, layers, KV width and bytes per value of a causal LM (PEFT-wrapped or not)."""
    cfg = getattr(model, "config", None)
    emb = model.get_input_embeddings()
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    hidden = int(getattr(cfg, "hidden_size", emb.embedding_dim) or emb.embedding_dim)
    head_dim = int(getattr(cfg, "head_dim", 0) or hidden // heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", 0) or heads)
    return {"vocab": int(emb.num_embeddings), "layers": int(getattr(cfg, "num_hidden_layers", 1) or 1),
            "kv_width": kv_heads * head_dim, "elem": int(emb.weight.element_size())}


def device_of(model) -> str:
    """The device of the model's first parameter, as a string ("cpu", "cuda:0")."""
    return str(next(model.parameters()).device)


def lora_parameter_count(model, rank: int, targets) -> int:
    """Adapter parameters a LoRA of ``rank`` adds: rank * (in + out) for each adapted linear
    layer (``targets`` "all-linear": every linear layer but the output head, as PEFT does;
    or module names matched as suffixes)."""
    import torch

    out_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    total = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or mod is out_head:
            continue
        if targets == "all-linear" or any(name == t or name.endswith("." + t) for t in targets):
            total += rank * (mod.in_features + mod.out_features)
    return total


def sampling_bytes(shape: dict[str, int], rows: int, prompt_len: int, max_new_tokens: int) -> dict[str, int]:
    """Lower bounds of one batched sampling call over ``rows`` sequences."""
    return {
        "KV cache": 2 * shape["layers"] * rows * (prompt_len + max_new_tokens) * shape["kv_width"] * shape["elem"],
        # logits, float32 scores, log-probs and a float64 CDF per row, at each decoding step
        "next-token scores": rows * shape["vocab"] * (shape["elem"] + 4 + 4 + 8),
    }


def training_bytes(shape: dict[str, int], rows: int, prompt_len: int, max_new_tokens: int) -> dict[str, int]:
    """Lower bounds of a training step: sampling, then the completion logits of all rows
    (model dtype + float32 scores kept for the backward pass)."""
    out = sampling_bytes(shape, rows, prompt_len, max_new_tokens)
    out["completion logits"] = rows * max_new_tokens * shape["vocab"] * (shape["elem"] + 4)
    return out


def ensure_fits(parts: dict[str, int], device: str, what: str, remedy: str) -> None:
    """Raise ConfigError (naming ``what`` and the ``remedy``) when the sum of ``parts``
    exceeds the free memory of ``device``."""
    if os.environ.get("WORKBENCH_NO_MEMORY_CHECK", "").strip() not in ("", "0"):
        return
    need = sum(parts.values())
    free = available_bytes(device)
    if free is None or need <= free:
        return
    detail = ", ".join(f"{k} {v / GiB:.1f} GiB" for k, v in parts.items() if v)
    raise ConfigError(
        f"{what} needs at least {need / GiB:.1f} GiB on {device} ({detail}), but only {free / GiB:.1f} GiB is free. "
        f"{remedy} (Set WORKBENCH_NO_MEMORY_CHECK=1 to try anyway.)"
    )


def longest_prompt(tokenizer, task, problems: Sequence, use_chat: bool, sample: int = 8) -> int:
    """Token count of the longest prompt among the ``sample`` longest by characters."""
    from workbench.models.loading import encode_prompts

    if not problems:
        return 0
    text = task.instruction if use_chat else task.prompt
    longest = sorted(problems, key=lambda p: len(text(p)), reverse=True)[:sample]
    return max(len(ids) for ids in encode_prompts(tokenizer, task, longest, use_chat))


def check_session(sess) -> None:
    """Refuse a run whose training step or evaluation cannot fit (before the run is created)."""
    cfg = sess.config
    shape = model_shape(sess.model)
    T = sess.max_new_tokens
    P = longest_prompt(sess.tokenizer, sess.task, sess.train_problems, sess.use_chat)
    B, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    parts = training_bytes(shape, B * G, P, T)
    lora = sum(p.numel() * p.element_size() for p in sess.lora_params)
    parts["LoRA gradients and AdamW state"] = 3 * lora
    ensure_fits(parts, sess.device,
                f"a training step (rollout.prompts_per_step x rollout.group_size = {B} x {G} sequences of up to "
                f"{P} + {T} tokens, vocabulary {shape['vocab']})",
                "Lower rollout.prompts_per_step, rollout.group_size or rollout.max_new_tokens.")
    for split, problems in sess.eval_sets.items():
        check_evaluation(shape, sess.tokenizer, sess.task, problems, cfg.eval.n, T, cfg.rollout.chunk_size,
                         sess.use_chat, sess.device, split=split,
                         fields=("eval.n", "rollout.chunk_size", "eval.max_problems"))


def check_evaluation(shape: dict[str, int], tokenizer, task, problems: Sequence, n: int, max_new_tokens: int,
                     chunk_size: int, use_chat: bool, device: str, *,
                     fields: tuple[str, str, str] = ("--n", "chunk size", "--max-problems"), split: str = "eval") -> None:
    """Refuse an evaluation of ``n`` samples per problem that cannot fit: the sampling chunk
    on ``device`` and the completions kept in the process's memory. ``fields`` names the
    user's settings for n, the chunk size and the problem limit in the messages."""
    if not problems:
        return
    n_field, chunk_field, limit_field = fields
    P = longest_prompt(tokenizer, task, problems, use_chat)
    rows = max(n, chunk_size - chunk_size % n)  # whole problems per chunk (see evaluate_model)
    rows = min(rows, n * len(problems))
    ensure_fits(sampling_bytes(shape, rows, P, max_new_tokens), device,
                f"evaluating {split} in chunks of {rows} sequences ({n_field} = {n} per problem, "
                f"{chunk_field} = {chunk_size}) of up to {P} + {max_new_tokens} tokens",
                f"Lower {n_field} or the generation length.")
    total = n * len(problems)
    ensure_fits({"completions kept": total * (max_new_tokens + ROW_OVERHEAD)}, "cpu",
                f"evaluating {split}: {len(problems)} problems x {n_field} = {n} = {total:,} completions",
                f"Lower {n_field} or evaluate fewer problems ({limit_field}).")

"""Shared fixtures: a tiny random-weight model folder built from a config (no Hub), and
the embedded model's name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = "tiny-primes"


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a character tokenizer, saved like a Hub model."""
    from workbench.models.tiny import TinySpec, build_tiny_model
    from workbench.models.tokenizer import build_char_tokenizer

    out = tmp_path_factory.mktemp("random-model")
    import string

    tok = build_char_tokenizer([string.printable])
    model = build_tiny_model(len(tok), tok.pad_token_id, tok.eos_token_id, TinySpec(hidden=32, layers=2, heads=2, mlp=64), seed=1)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def embedded_lora_policy(n_prompts: int, group: int, seed: int):
    """The embedded model with a rank-4 LoRA on every linear layer (non-zero factors), its
    tokenizer, and ``group`` rows per training prompt with one seed each: (model, tokenizer,
    rows, seeds)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.paths import MODELS_DIR
    from workbench.seeding import row_seed
    from workbench.tasks import get_task

    path = MODELS_DIR / EMBEDDED
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    task = get_task("two_primes")
    prompts = [tok(task.prompt(p), add_special_tokens=False)["input_ids"] for p in task.load_split("train")[:n_prompts]]
    rows = [p for p in prompts for _ in range(group)]
    return model, tok, rows, [row_seed(seed, i) for i in range(len(rows))]

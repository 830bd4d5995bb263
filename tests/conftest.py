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


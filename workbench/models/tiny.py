"""The embedded tiny base model: a small Llama-architecture causal LM built from a config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TinySpec:
    """Architecture of an embedded model (defaults: about 0.86M parameters, 3.4 MB)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    mlp: int = 384
    max_positions: int = 128


def build_tiny_model(vocab_size: int, pad_id: int, eos_id: int, spec: TinySpec | None = None, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` of the given size (deterministic under ``seed``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = spec or TinySpec()
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.mlp,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)

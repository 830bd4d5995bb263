"""Models: loading any causal LM, the LoRA adapter, and the embedded tiny models."""

from workbench.models.loading import (
    add_lora,
    embedded_models,
    encode_prompts,
    load_model_and_tokenizer,
    resolve_model,
)

__all__ = ["add_lora", "embedded_models", "encode_prompts", "load_model_and_tokenizer", "resolve_model"]

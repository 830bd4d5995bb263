"""A LoRA policy on the embedded model, shared by tests that compare forward paths."""

from __future__ import annotations

EMBEDDED = "tiny-primes"


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

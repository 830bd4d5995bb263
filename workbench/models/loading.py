"""Load a causal LM with its tokenizer, wrap it in a LoRA adapter, encode prompts.

The reference policy is the same model with the adapter disabled
(``with model.disable_adapter():``), so a run holds one copy of the base weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError, UnknownNameError, WorkbenchError
from workbench.paths import MODELS_DIR

if TYPE_CHECKING:  # pragma: no cover
    from workbench.config import LoraConfig, ModelConfig


def embedded_models() -> list[str]:
    """Names of the models shipped in ``data/models/``."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model(name_or_path: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is local).

    Order: an existing local folder; an embedded model name; otherwise a Hub id.
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"model.name_or_path = {name_or_path!r} is a folder without config.json; "
                              "point it at a saved Hugging Face model folder")
        return str(p), True
    if (MODELS_DIR / name_or_path / "config.json").is_file():
        return str(MODELS_DIR / name_or_path), True
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_like_path or not name_or_path:
        raise UnknownNameError("model", name_or_path, embedded_models(),
                               "Give an embedded model name, a local model folder, or a Hub id like 'Qwen/Qwen2.5-0.5B'")
    return name_or_path, False


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device = {device!r} but no CUDA device is available; use 'cpu' or 'auto'")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"model.device = {device!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1}); use one of them or 'auto'")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("model.device = 'mps' but the Apple MPS backend is not available here; use 'cpu' or 'auto'")
    elif device not in ("cpu", "mps"):
        raise ConfigError(f"model.device = {device!r} is not allowed: expected auto, cpu, cuda, cuda:N or mps")
    return device


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in dtypes:
        raise ConfigError(f"model.dtype = {dtype!r} is not allowed: expected auto, {', '.join(dtypes)}")
    return dtypes[dtype]


def load_model_and_tokenizer(cfg: "ModelConfig"):
    """(model in eval mode on its device, tokenizer with a pad token, info dict)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor loading bar is noise next to the training bar
    source, local = resolve_model(cfg.name_or_path)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        where = "the local folder" if local else "the Hugging Face Hub (is it reachable, and is the id right?)"
        raise WorkbenchError(f"could not load model {cfg.name_or_path!r} from {where}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise WorkbenchError(f"model {cfg.name_or_path!r}: its tokenizer has no EOS token; generation could not stop")
    tokenizer.padding_side = "left"
    model.to(device)
    model.eval()
    use_chat = {"on": True, "off": False}.get(cfg.chat_template, bool(getattr(tokenizer, "chat_template", None)))
    if use_chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model.chat_template = 'on' but {cfg.name_or_path!r} has no chat template")
    n_params = sum(p.numel() for p in model.parameters())
    info = {"source": source, "local": local, "device": device, "dtype": str(dtype).replace("torch.", ""),
            "params": n_params, "chat_template": use_chat}
    torch.set_grad_enabled(True)
    return model, tokenizer, info


def add_lora(model, cfg: "LoraConfig", seed: int = 0):
    """Wrap ``model`` in a fresh PEFT LoRA adapter (B = 0, so it starts equal to the base)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = "all-linear" if cfg.targets.strip() == "all-linear" else [t.strip() for t in cfg.targets.split(",") if t.strip()]
    from workbench.models.memory import device_of, ensure_fits, lora_parameter_count

    count = lora_parameter_count(model, cfg.rank, targets)
    ensure_fits({"LoRA weights": 4 * count}, device_of(model),
                f"lora.rank = {cfg.rank} ({count:,} adapter parameters in float32)", "Lower lora.rank.")
    peft_cfg = PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=targets, task_type="CAUSAL_LM", bias="none")
    import warnings

    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in 5.x
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise ConfigError(f"lora.targets = {cfg.targets!r} does not match the model's modules: {exc}") from exc


def encode_prompts(tokenizer, task, problems, use_chat: bool) -> list[list[int]]:
    """Token ids of each problem's prompt: the task's compact prompt, or its instruction
    inside the model's chat template (with the generation prompt appended)."""
    if use_chat:
        out = []
        for prob in problems:
            msgs = [{"role": "user", "content": task.instruction(prob)}]
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            out.append(list(ids))
        return out
    return [tokenizer(task.prompt(p), add_special_tokens=False)["input_ids"] for p in problems]

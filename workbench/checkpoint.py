"""Checkpoint files: a folder per (run, step) holding the LoRA weights, the optimiser, the
strategies' own state and the session state. Written into a temporary folder and renamed,
so a checkpoint is either whole or absent; a failed write leaves earlier ones intact.

    adapter.safetensors   trainable (LoRA) parameters by name
    optimizer.pt          AdamW state
    strategy_state.pt     {strategy name: {piece: state_dict}} (e.g. DLC's memory network)
    state.json            step, per-problem history, strategy in force, torch RNG state
    adapter_config.json   with adapter_model.safetensors: the same LoRA weights as a standard
                          PEFT adapter folder, so ``PeftModel.from_pretrained(base, folder)`` loads a
                          checkpoint (older checkpoints without them still resume from adapter.safetensors)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.errors import CheckpointError


@dataclass
class CheckpointData:
    weights: dict[str, torch.Tensor]
    optimizer: dict
    strategy_states: dict
    state: dict


def save_peft_adapter(model, folder: Path) -> None:
    """The model's LoRA adapter as a PEFT folder (adapter_config.json, adapter_model.safetensors)."""
    if hasattr(model, "peft_config") and hasattr(model, "save_pretrained"):
        model.save_pretrained(str(folder), safe_serialization=True)


def write_checkpoint(final: Path, model, optimizer, strategy_states: dict, state: dict) -> Path:
    """Write atomically to ``final``; raise CheckpointError (nothing half-written) on failure."""
    from safetensors.torch import save_file

    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(tmp / "adapter.safetensors"))
        save_peft_adapter(model, tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(strategy_states, tmp / "strategy_state.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "torch_rng": torch.get_rng_state().tolist()}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write the checkpoint to {final}: {exc}. The store and earlier "
                              f"checkpoints are intact; free disk space or fix permissions, then checkpoint again") from exc
    return final


def is_complete(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "adapter.safetensors").is_file()


def read_checkpoint(path: Path, device: str = "cpu") -> CheckpointData:
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path / "adapter.safetensors"))
        state = json.loads((path / "state.json").read_text())
        opt = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
        strat = (torch.load(path / "strategy_state.pt", map_location=device, weights_only=True)
                 if (path / "strategy_state.pt").is_file() else {})
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from exc
    return CheckpointData(weights, opt, strat, state)


def copy_adapter(model, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load saved LoRA weights into ``model`` (names must match)."""
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise CheckpointError(f"checkpoint {path} does not match the model (e.g. {missing[0]}); "
                              "was the run's model or LoRA config changed?")
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w.to(params[n].device))

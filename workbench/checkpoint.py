"""Checkpoint files: a folder per (run, step) holding the LoRA weights, the optimiser, the
strategies' own state and the session state. Written into a temporary folder and renamed,
so a checkpoint is either whole or absent; a failed write leaves earlier ones intact.
A folder left half-written by a killed process (``step-N.tmp-PID``) is removed by
``remove_partial`` when the run is resumed. ``read_checkpoint`` checks every file and
names the one that is unreadable, so a resume can fall back to an earlier checkpoint.

    adapter.safetensors   trainable (LoRA) parameters by name
    optimizer.pt          AdamW state
    strategy_state.pt     {strategy name: {piece: state_dict}} (e.g. DLC's memory network)
    state.json            step, per-problem history, strategy in force, torch RNG state
    adapter_config.json   with adapter_model.safetensors: the same LoRA weights as a standard
                          PEFT adapter folder, so ``PeftModel.from_pretrained(base, folder)`` loads a
                          checkpoint (older checkpoints without them still resume from adapter.safetensors)
"""

from __future__ import annotations

import errno
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
    except Exception as exc:  # noqa: BLE001 - OSError, and torch's / safetensors' own errors on a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "space" in str(exc).lower() \
            or "write failed" in str(exc).lower()
        remedy = ("free disk space (or point --workspace at a larger disk)" if full
                  else "free disk space or fix the folder's permissions")
        raise CheckpointError(f"could not write the checkpoint to {final}: {type(exc).__name__}: {exc}. The store "
                              f"and earlier checkpoints are intact; {remedy}, then checkpoint again") from exc
    return final


def remove_partial(folder: Path) -> list[Path]:
    """Remove ``step-N.tmp-PID`` folders a killed writer left in ``folder``; returns them."""
    gone = []
    if folder.is_dir():
        for tmp in sorted(folder.glob("step-*.tmp-*")):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
                gone.append(tmp)
    return gone


def is_complete(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "adapter.safetensors").is_file()


#: Fields state.json must have.
STATE_FIELDS = ("step", "history", "torch_rng")


def read_checkpoint(path: Path, device: str = "cpu") -> CheckpointData:
    """Every file of the checkpoint, checked; CheckpointError naming the file that is not right."""
    from safetensors.torch import load_file

    def read(name: str, load):
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {f} is missing")
        try:
            return load(f)
        except Exception as exc:  # noqa: BLE001 - each library has its own error types
            raise CheckpointError(f"checkpoint file {f} is unreadable ({type(exc).__name__}: {exc})") from exc

    weights = read("adapter.safetensors", lambda f: load_file(str(f)))
    state = read("state.json", lambda f: json.loads(f.read_text()))
    if not isinstance(state, dict) or any(k not in state for k in STATE_FIELDS):
        raise CheckpointError(f"checkpoint file {path / 'state.json'} lacks "
                              f"{', '.join(STATE_FIELDS)} (found {sorted(state) if isinstance(state, dict) else state!r})")
    try:
        int(state["step"])
        torch.tensor(state["torch_rng"], dtype=torch.uint8)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint file {path / 'state.json'} has a bad step or RNG state: {exc}") from exc
    opt = read("optimizer.pt", lambda f: torch.load(f, map_location=device, weights_only=True))
    if not isinstance(opt, dict) or "state" not in opt or "param_groups" not in opt:
        raise CheckpointError(f"checkpoint file {path / 'optimizer.pt'} is not an optimiser state")
    strat = (read("strategy_state.pt", lambda f: torch.load(f, map_location=device, weights_only=True))
             if (path / "strategy_state.pt").exists() else {})
    if not isinstance(strat, dict):
        raise CheckpointError(f"checkpoint file {path / 'strategy_state.pt'} is not a strategy state")
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

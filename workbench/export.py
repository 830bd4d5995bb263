"""Export a run's policy for anyone with transformers and peft: ``workbench export RUN --out DIR``.

The folder holds either the LoRA adapter as a standard PEFT adapter
(``adapter_config.json``, ``adapter_model.safetensors``; load it with
``PeftModel.from_pretrained(base, DIR)``) or, with ``merge``, the base model with the
adapter merged into its weights (``AutoModelForCausalLM.from_pretrained(DIR)``), plus the
tokenizer and a model card (``README.md``) naming the base model, the task, the strategy
history and the evaluation figures of the exported step.

Reads any checkpoint the workbench wrote: the engine's (with or without the PEFT files
that checkpoints carry since they were added) and the TRL backend's (a PEFT folder).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from workbench.config import RunConfig
from workbench.errors import CheckpointError, ConfigError

__all__ = ["export_run", "load_checkpoint_model"]


def load_checkpoint_model(cfg: RunConfig, path: Path):
    """(PEFT model with the checkpoint's adapter, tokenizer, model info) for ``path``."""
    from workbench.checkpoint import copy_adapter
    from workbench.models.loading import add_lora, load_model_and_tokenizer

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    model, tok, info = load_model_and_tokenizer(cfg.model)
    if (path / "adapter.safetensors").is_file():      # the workbench engine's checkpoint (any version)
        from safetensors.torch import load_file

        model = add_lora(model, cfg.lora, seed=cfg.seed)
        try:
            weights = load_file(str(path / "adapter.safetensors"))
        except Exception as exc:  # noqa: BLE001 - safetensors' own errors
            raise CheckpointError(f"checkpoint file {path / 'adapter.safetensors'} is unreadable: {exc}") from exc
        copy_adapter(model, weights, path)
    elif (path / "adapter_config.json").is_file():    # a PEFT adapter folder (the TRL backend's checkpoints)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path))
    else:
        raise CheckpointError(f"checkpoint {path} holds neither adapter.safetensors nor adapter_config.json")
    model.eval()
    return model, tok, info


def export_run(run_id: str, out: str | os.PathLike, *, workspace: str | os.PathLike = "runs",
               step: int | None = None, merge: bool = False) -> dict[str, Any]:
    """Write the run's adapter (or merged model) at checkpoint ``step`` (default: the last)
    with its tokenizer and a model card to ``out``; returns {"path", "step", "merged", "files"}."""
    from workbench.store import RunStore

    store = RunStore(workspace)
    run = store.get_run(run_id)
    cfg = RunConfig.from_dict({k: v for k, v in run["config"].items() if k != "resolved"})
    cks = store.checkpoints(run_id)
    chosen = [c for c in cks if step is None or c["step"] == step]
    if not chosen:
        have = ", ".join(str(c["step"]) for c in cks) or "none"
        raise CheckpointError(f"run {run_id} has no checkpoint{'' if step is None else f' at step {step}'} "
                              f"(checkpoints at steps: {have}); write one with the checkpoint command or "
                              "checkpoint_every")
    ck = max(chosen, key=lambda c: c["step"])
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder; choose a new folder")
    model, tok, info = load_checkpoint_model(cfg, Path(ck["path"]))
    out.mkdir(parents=True, exist_ok=True)
    if merge:
        model.merge_and_unload().save_pretrained(str(out), safe_serialization=True)
    else:
        model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    (out / "README.md").write_text(model_card(store, run, cfg, ck["step"], info, merge))
    return {"path": str(out), "step": ck["step"], "merged": merge, "files": sorted(p.name for p in out.iterdir())}


# ---------------------------------------------------------------------- the model card
def model_card(store, run: dict, cfg: RunConfig, step: int, info: dict, merged: bool) -> str:
    run_id = run["run_id"]
    resolved = run["config"].get("resolved", {})
    base = cfg.model.name_or_path
    hub_base = base if not info.get("local") else None
    backend = resolved.get("backend", "workbench")
    strategies = [(e["step"], e["payload"]) for e in store.events(run_id, kind="strategy")]
    evs = [e for e in store.evaluations(run_id, split="eval") if e["step"] <= step]
    policy = [e for e in evs if e["label"] == "policy"]
    base_ev = next((e for e in evs if e["label"] == "base"), None)
    final = policy[-1] if policy else None
    front = ["---", f"base_model: {hub_base}" if hub_base else None,
             f"library_name: {'transformers' if merged else 'peft'}",
             "tags:", "- rlvr", "- lora", "- rlvr-workbench", f"- {cfg.task.name}", "---"]
    lines = [x for x in front if x is not None]
    what = "the base model with the LoRA adapter merged into its weights" if merged else "a LoRA adapter (PEFT)"
    lines += ["", f"# {run_id}", "",
              f"{what.capitalize()}, trained with reinforcement learning from verifiable rewards by the "
              "RLVR Collapse Workbench.", "",
              f"- **Base model:** `{base}`" + ("" if hub_base else f" (a local model: {info.get('source')})"),
              f"- **Task:** `{cfg.task.name}`" + (f" with `{json.dumps(cfg.task.params)}`" if cfg.task.params else ""),
              f"- **Checkpoint:** step {step} of {run.get('last_step')} trained ({cfg.steps} planned), "
              f"backend `{backend}`",
              f"- **LoRA:** rank {cfg.lora.rank}, alpha {cfg.lora.alpha}, targets `{cfg.lora.targets}`",
              f"- **Rollouts:** {cfg.rollout.prompts_per_step} prompts x {cfg.rollout.group_size} samples per step, "
              f"temperature {cfg.rollout.temperature}; learning rate {cfg.optim.lr}",
              f"- **Seed:** {cfg.seed} (one run, one seed: the figures below carry no spread over seeds)", "",
              "## Strategy history", "", "| from step | strategy | pieces |", "|---:|---|---|"]
    for s, p in strategies:
        if s <= step:
            lines.append(f"| {s} | `{p.get('name')}` | {' + '.join(p.get('pieces', []))} |")
    if final is not None:
        ks = sorted(int(k.split("@")[1]) for k in final["summary"] if k.startswith("eval/pass@"))
        rows = [(f"pass@{k}", f"eval/pass@{k}") for k in ks] + [
            ("mean token entropy", "eval/mean_entropy"),
            ("distinct correct modes per problem", "eval/mean_distinct_correct_modes"),
            ("unsolved fraction", "eval/frac_unsolved"), ("collapse index", "collapse/index"),
            ("problems gained vs base", "boundary/gained"), ("problems lost vs base", "boundary/lost")]
        lines += ["", f"## Evaluation at step {final['step']} (split `eval`, {cfg.eval.n} samples per problem)", "",
                  "| metric | this checkpoint | base model |", "|---|---:|---:|"]
        for label, key in rows:
            if key in final["summary"]:
                b = base_ev["summary"].get(key) if base_ev else None
                lines.append(f"| {label} | {_fmt(final['summary'][key])} | {_fmt(b)} |")
    load = (["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             'model = AutoModelForCausalLM.from_pretrained("PATH")', 'tokenizer = AutoTokenizer.from_pretrained("PATH")',
             "```"] if merged else
            ["```python", "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             f'base = AutoModelForCausalLM.from_pretrained("{hub_base or "BASE_MODEL_FOLDER"}")',
             'model = PeftModel.from_pretrained(base, "PATH")', 'tokenizer = AutoTokenizer.from_pretrained("PATH")',
             "```"])
    lines += ["", "## Use", "", "PATH is this folder (or its Hub id once uploaded).", "", *load, "",
              "## Upload to the Hugging Face Hub", "",
              "`huggingface-cli upload USER/NAME PATH` (after `huggingface-cli login`), or from Python "
              "`model.push_to_hub(\"USER/NAME\")` and `tokenizer.push_to_hub(\"USER/NAME\")`.", ""]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)

"""Adapters any Hugging Face user can load: PEFT checkpoint folders and `workbench export`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from workbench.errors import CheckpointError, ConfigError
from workbench.export import export_run
from workbench.paths import MODELS_DIR
from workbench.rollout import rollout_from_texts, token_logprobs
from workbench.session import Session
from workbench.store import RunStore

SMALL = {"rollout.prompts_per_step": 4, "rollout.group_size": 4, "eval.n": 4, "eval.max_problems": 4,
         "eval.seen_problems": 0, "eval.every": 0, "checkpoint_every": 1, "eval.bank_cap": 2, "optim.lr": 5e-3,
         "strategy": "nsr"}   # NSR: every wrong sample moves the adapter, whatever the groups look like


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = tmp_path_factory.mktemp("export-ws")
    sess = Session(workspace=str(ws), steps=2, run_id="to-export", **SMALL)
    list(sess.run())
    # the policy's own scoring of the stored evaluation completions, at the end of the run
    store = RunStore(ws)
    ev = store.evaluations("to-export", label="policy", split="eval")[-1]
    samples = store.eval_samples("to-export", ev["eval_id"])
    by_id = {p.id: p for p in sess.eval_sets["eval"]}
    prompts = sess._prompt_ids([by_id[s["problem_id"]] for s in samples])
    texts = [s["completion"] for s in samples]
    ro = rollout_from_texts(sess.tokenizer, prompts, texts)
    with torch.no_grad():
        logp, _ = token_logprobs(sess.model, ro)
        with sess.model.disable_adapter():
            base_logp, _ = token_logprobs(sess.model, ro)
    mask = ro.completion_mask.float()
    sess.close()
    return {"ws": ws, "prompts": prompts, "texts": texts, "seq": (logp * mask).sum(-1),
            "base_seq": (base_logp * mask).sum(-1)}


def _plain_seq_logprobs(model, tok, prompts, texts) -> torch.Tensor:
    """Sequence log-probs with nothing but transformers: one forward per (prompt, completion)."""
    out = []
    with torch.no_grad():
        for p, t in zip(prompts, texts):
            comp = tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = torch.tensor([list(p) + comp])
            logits = model(input_ids=ids).logits[0, len(p) - 1:-1].float()
            out.append(float(torch.log_softmax(logits, -1).gather(-1, torch.tensor(comp)[:, None]).sum()))
    return torch.tensor(out)


def test_checkpoints_are_peft_adapter_folders(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store = RunStore(trained["ws"])
    ck = Path(store.checkpoints("to-export")[-1]["path"])
    assert (ck / "adapter_config.json").is_file() and (ck / "adapter_model.safetensors").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(MODELS_DIR / "tiny-primes"), str(ck))
    tok = __import__("transformers").AutoTokenizer.from_pretrained(MODELS_DIR / "tiny-primes")
    got = _plain_seq_logprobs(model.eval(), tok, trained["prompts"][:6], trained["texts"][:6])
    assert torch.allclose(got, trained["seq"][:6], atol=1e-4)


def test_old_checkpoints_without_peft_files_still_resume_and_export(trained, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(trained["ws"], ws)
    store = RunStore(ws)
    for c in store.checkpoints("to-export"):
        for name in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
            (Path(c["path"]) / name).unlink(missing_ok=True)
    out = export_run("to-export", tmp_path / "old", workspace=ws)
    assert (Path(out["path"]) / "adapter_config.json").is_file()
    sess = Session.resume("to-export", workspace=str(ws), steps=3)
    assert sess.step_count == 2
    sess.close()


def test_export_loads_with_plain_peft_and_reproduces_the_logprobs(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run("to-export", tmp_path / "adapter", workspace=trained["ws"])
    folder = Path(out["path"])
    assert out["step"] == 2 and {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(out["files"])
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    tok = AutoTokenizer.from_pretrained(folder)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(MODELS_DIR / "tiny-primes"), str(folder))
    got = _plain_seq_logprobs(model.eval(), tok, trained["prompts"], trained["texts"])
    assert torch.allclose(got, trained["seq"], atol=1e-4), (got - trained["seq"]).abs().max()
    assert (got - trained["base_seq"]).abs().max() > 1e-3       # the adapter changed the policy
    card = (folder / "README.md").read_text()
    assert "tiny-primes" in card and "| 0 | `nsr` |" in card and "pass@1" in card
    assert "library_name: peft" in card and "one seed" in card

    merged = export_run("to-export", tmp_path / "merged", workspace=trained["ws"], merge=True)
    m = AutoModelForCausalLM.from_pretrained(merged["path"]).eval()
    got_m = _plain_seq_logprobs(m, tok, trained["prompts"], trained["texts"])
    assert torch.allclose(got_m, trained["seq"], atol=1e-3)
    assert "library_name: transformers" in (Path(merged["path"]) / "README.md").read_text()


def test_export_errors_are_specific(trained, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at step 7.*steps: 1, 2"):
        export_run("to-export", tmp_path / "x", workspace=trained["ws"], step=7)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_run("to-export", busy, workspace=trained["ws"])


def test_export_cli(trained, tmp_path, capsys):
    from workbench.cli import main

    assert main(["export", "to-export", "--workspace", str(trained["ws"]), "--step", "1", "--out",
                 str(tmp_path / "cli")]) == 0
    assert "step 1, LoRA adapter" in capsys.readouterr().out
    assert (tmp_path / "cli" / "adapter_model.safetensors").is_file()
    assert main(["export", "to-export", "--workspace", str(trained["ws"]), "--step", "9", "--out",
                 str(tmp_path / "none")]) == 2
    assert "no checkpoint at step 9" in capsys.readouterr().err

"""Half-precision weights (bfloat16, float16): training steps, evaluation, the reference
forward and checkpoints run in the base model's dtype, with the LoRA weights kept in
float32 for the optimiser. Tiny random model, 2 steps: slow ops in half precision on a
CPU would otherwise dominate the suite."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.config import LoraConfig, ModelConfig
from workbench.models import add_lora, load_model_and_tokenizer
from workbench.models.fast_lora import MergedLoRA
from workbench.rollout import rollout_from_texts, token_logprobs
from workbench.session import Session, load_run_policy

HALF = [torch.bfloat16, torch.float16]


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@pytest.mark.parametrize("dtype", HALF, ids=_name)
def test_merged_lora_keeps_the_base_dtype_and_matches_peft(random_model_dir, dtype):
    model, tok, info = load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir), dtype=_name(dtype),
                                                            device="cpu"))
    assert info["dtype"] == _name(dtype)
    pm = add_lora(model, LoraConfig(rank=4))
    lora = {n: p for n, p in pm.named_parameters() if p.requires_grad}
    assert lora and all(p.dtype == torch.float32 for p in lora.values())   # optimiser state in float32
    with torch.no_grad():
        for n, p in lora.items():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    fast = MergedLoRA(pm)
    assert fast.usable
    merged = fast.merged_weights()
    assert merged and all(w.dtype == dtype for w in merged.values())
    x = torch.tensor([tok("N=040:3+37")["input_ids"], tok("N=012:5+7<")["input_ids"]])
    with torch.no_grad():
        ref = pm(input_ids=x).logits.float()                   # PEFT's unmerged forward
        out = fast(input_ids=x).logits
        with fast.frozen():
            frozen = fast(input_ids=x).logits
    assert out.dtype == dtype and torch.equal(out, frozen)
    # both forms round to the half type at different places; a few units of its precision
    tol = 8 * torch.finfo(dtype).eps * float(ref.abs().max())
    assert float((out.float() - ref).abs().max()) <= tol
    # gradients reach the float32 LoRA weights through the merged half-precision weight
    pm.zero_grad()
    fast(input_ids=x).logits.float().logsumexp(-1).mean().backward()
    grads = [p.grad for n, p in lora.items()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("dtype", HALF, ids=_name)
def test_half_precision_run_trains_evaluates_checkpoints_and_resumes(random_model_dir, tmp_path, dtype):
    ws = str(tmp_path / "runs")
    settings = {"model.name_or_path": str(random_model_dir), "model.dtype": _name(dtype), "model.device": "cpu",
                "rollout.prompts_per_step": 2, "rollout.group_size": 2, "rollout.max_new_tokens": 4,
                "eval.n": 2, "eval.max_problems": 2, "eval.seen_problems": 0, "eval.every": 1, "eval.bank_cap": 2,
                "loss.ref_kl_every": 1, "checkpoint_every": 1,
                "loss.entropy_coef": 0.01}  # a gradient even when every reward is 0 (random weights)
    sess = Session(workspace=ws, steps=2, **settings)
    assert sess.model_info["dtype"] == _name(dtype)
    before = {n: p.detach().clone() for n, p in sess.model.named_parameters() if p.requires_grad}
    recs = list(sess.run())
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        assert math.isfinite(r["train/loss"]) and math.isfinite(r["train/entropy"]), r
        assert math.isfinite(r["train/kl_ref"]), r                    # the reference forward ran in this dtype
    after = {n: p.detach() for n, p in sess.model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the update reached the adapter
    assert all(p.dtype == torch.float32 for p in after.values())
    evs = sess.store.evaluations(sess.run_id, label="policy", split="eval")
    assert [e["step"] for e in evs] == [1, 2]
    assert all(math.isfinite(e["summary"]["eval/mean_entropy"]) for e in evs)
    assert sess.store.get_run(sess.run_id)["status"] == "finished"

    # the checkpoint holds the float32 adapter and reloads into a half-precision model
    model, tok, cfg, info = load_run_policy(sess.run_id, workspace=ws)
    assert info["dtype"] == _name(dtype) and info["step"] == 2
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    for n, p in loaded.items():
        assert torch.equal(p.detach(), after[n]), n
    ro = rollout_from_texts(tok, [tok("N=040:")["input_ids"]], ["3+37"])
    with torch.no_grad():
        logp, _ = token_logprobs(MergedLoRA(model), ro)
    assert torch.isfinite(logp).all()

    resumed = Session.resume(sess.run_id, workspace=ws, steps=3)
    assert resumed.step_count == 2
    rec = resumed.step()
    assert rec["step"] == 3 and math.isfinite(rec["train/loss"])


def test_eval_cli_in_bfloat16(capsys):
    import json

    from workbench.cli import main

    assert main(["eval", "--dtype", "bfloat16", "--device", "cpu", "--n", "4", "--max-problems", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_problems"] == 3 and math.isfinite(out["mean_entropy"]) and out["mean_entropy"] > 0

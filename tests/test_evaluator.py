"""The Evaluator on its own (no Session): the base model's evaluation and bank, read back
from the store, and a policy evaluation compared with it."""

from __future__ import annotations

import math

import pytest

from workbench.config import RunConfig
from workbench.evaluation import Evaluator
from workbench.models.loading import add_lora, encode_prompts, load_model_and_tokenizer
from workbench.store import RunStore
from workbench.tasks import get_task


@pytest.fixture(scope="module")
def parts():
    cfg = RunConfig().override({"eval.n": 4, "eval.ks": [1, 4]}).validate()
    task = get_task(cfg.task.name, **cfg.task.params)
    model, tok, info = load_model_and_tokenizer(cfg.model)
    model = add_lora(model, cfg.lora, seed=cfg.seed)              # B = 0: the policy equals the base model
    problems = task.load_split(cfg.task.eval_split)
    return cfg, task, model, tok, info, {"eval": problems[:3], "seen": problems[3:5]}


def _evaluator(parts, store, run_id):
    cfg, task, model, tok, info, sets = parts
    use_chat = bool(info["chat_template"])
    return Evaluator(task, tok, sets, cfg, max_new_tokens=int(task.max_new_tokens), use_chat=use_chat,
                     device=info["device"], prompt_ids=lambda probs: encode_prompts(tok, task, probs, use_chat),
                     store=store, run_id=run_id)


def test_base_evaluation_is_banked_stored_and_read_back(parts, tmp_path):
    model = parts[2]
    store = RunStore(tmp_path)
    run_id = store.create_run({}, run_id="r")
    ev = _evaluator(parts, store, run_id)
    assert ev.base_todo() == ["eval", "seen"]
    with model.disable_adapter():
        ev.evaluate_base(model, ev.base_todo())
    assert ev.base_todo() == []
    assert set(ev.base["eval"]) == {p.id for p in parts[5]["eval"]}
    assert ev.bank["eval"] and all(b["ref_logprob"] < 0 for b in ev.bank["eval"])
    stored_ids = {b["problem_id"] for b in store.bank(run_id)}
    assert stored_ids == {f"{split}:{b['problem_id']}" for split, bank in ev.bank.items() for b in bank}
    assert [e["split"] for e in store.evaluations(run_id, label="base")] == ["eval", "seen"]
    assert [e["payload"]["label"] for e in store.events(run_id, kind="evaluation")] == ["base"]

    again = _evaluator(parts, store, run_id)                     # a resumed run: nothing evaluated twice
    assert again.base_todo() == []
    assert again.bank == ev.bank and again.base["eval"].keys() == ev.base["eval"].keys()


def test_policy_evaluation_compares_with_the_base_model(parts, tmp_path):
    model = parts[2]
    store = RunStore(tmp_path)
    run_id = store.create_run({}, run_id="r")
    ev = _evaluator(parts, store, run_id)
    with model.disable_adapter():
        ev.evaluate_base(model, ev.base_todo())
    merged = ev.evaluate_policy(model, step=1)                   # adapter on, B = 0: the same samples as the base
    assert merged["eval/pass@4"] == store.evaluations(run_id, label="base", split="eval")[0]["summary"]["eval/pass@4"]
    assert merged["boundary/lost"] == merged["boundary/gained"] == 0.0
    assert merged["collapse/mean_index"] == 0.0 or math.isnan(merged["collapse/mean_index"])
    assert abs(merged["sharpen/mean_logratio"]) < 1e-4 and merged["sharpen/num_modes"] == len(ev.bank["eval"])
    assert {k.split("/")[0] for k in merged} >= {"eval", "collapse", "boundary", "sharpen", "seen"}
    [policy] = store.evaluations(run_id, label="policy", split="eval")
    rows = store.eval_problems(run_id, policy["eval_id"])
    assert all(r["base_c"] == r["c"] for r in rows)
    assert sum(len(r.get("bank_logratios", [])) for r in rows) == len(ev.bank["eval"])

    assert ev.complete_at(1)                                     # both splits are stored at step 1
    store.write_evaluation(run_id, 2, "policy", "eval", {"eval/n": 4.0}, [])   # killed before the seen split
    assert not ev.complete_at(2)
    assert [e["step"] for e in store.evaluations(run_id, label="policy")] == [1, 1]   # the partial one is gone

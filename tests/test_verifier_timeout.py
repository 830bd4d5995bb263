"""A custom verifier that hangs: each call has a time limit, the sample counts as unparsed,
an event is reported, and a verifier stuck on every input stops with a clear error."""

from __future__ import annotations

import json
import time

import pytest

from workbench.errors import ConfigError, VerifierError
from workbench.tasks import get_task
from workbench.tasks.base import UNPARSED as UNPARSED_VERDICT

HANGING = '''
import re, time

def check(record, completion):
    if completion == "sleep":
        time.sleep(600)                                   # Python-level wait
    if completion == "regex":
        re.match(r"(a+)+$", "a" * 64 + "b")              # catastrophic backtracking, inside C code
    if completion == "print":
        print("noise on stdout")                          # must not disturb the verdicts
    return completion.strip() == record["answer"]

def always(record, completion):
    while True:
        pass

def exits(record, completion):
    import os
    os._exit(3)
'''


@pytest.fixture()
def hanging(tmp_path, monkeypatch):
    (tmp_path / "hangverif.py").write_text(HANGING)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"{i}+0=", "answer": str(i)}) + "\n" for i in range(6)))
    return data


def test_a_hanging_call_is_unparsed_and_reported(hanging):
    t = get_task("custom", path=str(hanging), verifier="hangverif:check", timeout=1.0)
    events = []
    t.on_event = lambda kind, payload: events.append((kind, payload))
    probs = t.load_split("train")[:3]
    p0, p1, p2 = probs
    comps = [p0.data["answer"], "sleep", "regex", "sleep", "print", p2.data["answer"], "nope"]
    items = [p0, p1, p1, p1, p2, p2, p2]
    t0 = time.monotonic()
    out = t.verify_batch(items, comps)
    took = time.monotonic() - t0
    assert out[0].correct and out[0].reward == 1.0
    assert out[1] == UNPARSED_VERDICT and out[2] == UNPARSED_VERDICT and out[3] == UNPARSED_VERDICT
    assert out[4].parsed and not out[4].correct
    assert out[5].correct and not out[6].correct
    # two distinct hangs, each waited for once (the repeated "sleep" is not tried again)
    assert [e[0] for e in events] == ["verifier_timeout", "verifier_timeout"]
    assert events[0][1]["problem_id"] == p1.id and events[0][1]["completion"] == "sleep"
    assert events[0][1]["samples"] == 2 and events[0][1]["timeout"] == 1.0
    assert events[1][1]["completion"] == "regex"
    assert took < 10, took
    # a pair that hung before is not tried again in a later batch
    events.clear()
    t0 = time.monotonic()
    assert t.verify_batch([p1, p0], ["sleep", p0.data["answer"]])[0] == UNPARSED_VERDICT
    assert time.monotonic() - t0 < 1.0 and events == []
    t.close()


def test_a_verifier_stuck_on_everything_stops_with_a_clear_error(hanging):
    t = get_task("custom", path=str(hanging), verifier="hangverif:always", timeout=0.2)
    t.on_event = lambda kind, payload: None
    probs = t.load_split("train")
    with pytest.raises(VerifierError, match=r"hangverif:always.*0.2 s limit on 5 different completions.*timeout"):
        t.verify_batch([probs[0]] * 8, [f"c{i}" for i in range(8)])


def test_a_verifier_that_kills_its_process_is_a_clear_error(hanging):
    t = get_task("custom", path=str(hanging), verifier="hangverif:exits", timeout=5)
    with pytest.raises(VerifierError, match=r"hangverif:exits.*exit code 3"):
        t.verify(t.load_split("train")[0], "x")


def test_timeout_zero_runs_in_process_and_bad_timeouts_are_rejected(hanging):
    t = get_task("custom", path=str(hanging), verifier="hangverif:check", timeout=0)
    p = t.load_split("train")[0]
    assert t.verify(p, p.data["answer"]).correct and t._worker is None
    for bad in (-1, float("inf"), float("nan"), "10", True):
        with pytest.raises(ConfigError, match="timeout"):
            get_task("custom", path=str(hanging), verifier="hangverif:check", timeout=bad)


def test_the_session_records_a_timeout_event(hanging, tmp_path):
    from workbench.session import Session
    from workbench.store import RunStore

    # a verifier that hangs on every completion of problem q1 (and only there: hanging on all
    # inputs would trip the streak limit)
    (tmp_path / "hangone.py").write_text(
        "import time\ndef check(record, completion):\n"
        "    if record['id'] == 'q1':\n        time.sleep(600)\n    return False\n")
    sess = Session(workspace=str(tmp_path / "runs"), steps=1, **{
        "task.name": "custom", "task.params": {"path": str(hanging), "verifier": "hangone:check", "timeout": 1.0,
                                               "eval_size": 0},
        "task.eval_split": "train", "rollout.prompts_per_step": 6, "rollout.group_size": 2,
        "rollout.max_new_tokens": 4, "eval.n": 2, "eval.max_problems": 1, "eval.seen_problems": 0,
        "eval.every": 0})
    rec = sess.step()
    events = [e for e in RunStore(tmp_path / "runs").events(sess.run_id) if e["kind"] == "verifier_timeout"]
    assert events and all(e["payload"]["problem_id"] == "q1" for e in events)
    assert rec["train/parse_error_frac"] > 0

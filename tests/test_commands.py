"""The command channel: malformed commands are refused at the sender and rejected (never
fatal) in the session; commands left pending while no trainer ran are expired on resume
unless asked for."""

from __future__ import annotations

import json
import time

import pytest

from workbench.cli import main
from workbench.errors import ConfigError
from workbench.session import Session
from workbench.store import RunStore, check_command

TINY = {
    "rollout.prompts_per_step": 4, "rollout.group_size": 4, "eval.n": 4, "eval.max_problems": 4,
    "eval.seen_problems": 0, "eval.every": 0, "checkpoint_every": 2,
}
INF, NAN = float("inf"), float("nan")

# (kind, payload, fragment of the error message)
BAD_SENDS = [
    ("set_strategy", {"strategy": "grpo", "params": [1, 2]}, "params must be a dict"),
    ("set_strategy", {"strategy": 5}, "strategy must be a non-empty name"),
    ("set_strategy", {"strategy": None}, "strategy must be a non-empty name"),
    ("set_strategy", {"strategy": ""}, "strategy must be a non-empty name"),
    ("set_strategy", {}, "needs a 'strategy' field"),
    ("set_strategy", {"strategy": "grpo", "params": {"grpo.eps": INF}}, "must be finite"),
    ("set_strategy", {"strategy": "grpo", "params": {"grpo.eps": NAN}}, "must be finite"),
    ("set_strategy", {"strategy": "grpo", "params": {"a": [1, -INF]}}, "must be finite"),
    ("set_strategy", {"strategy": "grpo", "name": "x"}, "unknown field(s) name"),
    ("set_strategy", {"strategy": "grpo", "at_step": -1}, "at_step must be a step number"),
    ("set_strategy", {"strategy": "grpo", "at_step": INF}, "at_step must be a step number"),
    ("step", {"n": None}, "n must be a whole number"),
    ("step", {"n": [1]}, "n must be a whole number"),
    ("step", {"n": INF}, "n must be a whole number"),
    ("step", {"n": NAN}, "n must be a whole number"),
    ("step", {"n": -1}, "out of range"),
    ("step", {"n": 0}, "out of range"),
    ("step", {"n": 10**9}, "out of range"),
    ("step", {"n": 1.5}, "n must be a whole number"),
    ("step", {"n": "3"}, "n must be a whole number"),
    ("step", {"n": True}, "n must be a whole number"),
    ("step", [1], "payload must be a dict"),
    ("step", "n=3", "payload must be a dict"),
    ("pause", {"now": True}, "takes no payload"),
    ("stop", {"n": 1}, "takes no payload"),
    ("bogus", {}, "unknown command 'bogus'"),
    (5, {}, "unknown command 5"),
    (None, None, "unknown command None"),
    ("", None, "unknown command ''"),
]


@pytest.fixture()
def store(tmp_path):
    s = RunStore(tmp_path)
    s.create_run({}, run_id="r")
    return s


@pytest.mark.parametrize("kind,payload,fragment", BAD_SENDS, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD_SENDS)])
def test_send_command_refuses_malformed_commands(store, kind, payload, fragment):
    with pytest.raises(ConfigError) as err:
        store.send_command("r", kind, payload)
    assert fragment in str(err.value)
    assert store.commands("r") == []                     # nothing reached the table


def test_send_command_normalises_valid_commands(store):
    store.send_command("r", "step", {"n": 3.0})
    store.send_command("r", "step")
    store.send_command("r", "set_strategy", {"strategy": " bbg ", "params": {"bbg.k": 8}})
    assert [c["payload"] for c in store.commands("r")] == [
        {"n": 3}, {"n": 1}, {"strategy": "bbg", "params": {"bbg.k": 8}}]
    assert check_command("pause", None) == {}


def raw_command(store: RunStore, run_id: str, kind, payload_text, created_at: float | None = None) -> int:
    """A command row written without send_command (raw SQL, an older version)."""
    with store._db.write() as c:
        cur = c.execute("INSERT INTO commands (run_id, kind, payload, status, created_at) VALUES (?, ?, ?, 'pending', ?)",
                        (run_id, kind, payload_text, time.time() if created_at is None else created_at))
    return int(cur.lastrowid)


#: (kind, payload as stored) rows a session must reject without stopping: 36 payloads.
FUZZ = [
    ("set_strategy", '{"strategy": "grpo", "params": [1, 2]}'),
    ("set_strategy", '{"strategy": 5}'),
    ("set_strategy", '{"strategy": null}'),
    ("set_strategy", '{}'),
    ("set_strategy", '{"params": {}}'),
    ("set_strategy", '{"strategy": "no_such_strategy"}'),
    ("set_strategy", '{"strategy": "grpo+no_such_piece"}'),
    ("set_strategy", '{"strategy": "bbg", "params": {"bbg.k": -1}}'),
    ("set_strategy", '{"strategy": "bbg", "params": {"bbg.no_such_param": 1}}'),
    ("set_strategy", '{"strategy": "grpo", "params": {"spec": "x"}}'),
    ("set_strategy", '{"strategy": "grpo", "params": {"grpo.eps": Infinity}}'),
    ("set_strategy", '{"strategy": "grpo", "params": {"grpo.eps": NaN}}'),
    ("set_strategy", '{"strategy": "grpo", "params": "grpo.eps=1"}'),
    ("set_strategy", '{"strategy": ["grpo"]}'),
    ("set_strategy", '{"strategy": "grpo", "at_step": "soon"}'),
    ("step", '{"n": null}'),
    ("step", '{"n": [1]}'),
    ("step", '{"n": Infinity}'),
    ("step", '{"n": -Infinity}'),
    ("step", '{"n": NaN}'),
    ("step", '{"n": -1}'),
    ("step", '{"n": 0}'),
    ("step", '{"n": 1e400}'),
    ("step", '{"n": 9223372036854775808}'),
    ("step", '{"n": "2"}'),
    ("step", '{"n": {"n": 1}}'),
    ("step", '[1, 2]'),
    ("step", '"step"'),
    ("step", '7'),
    ("pause", '{"pause": true}'),
    ("evaluate", 'not json at all'),
    ("checkpoint", '{"path": "/tmp/x"}'),
    ("bogus", '{}'),
    ("", '{}'),
    (5, '{}'),
    ("step", '{"n": ' + "[" * 50 + "]" * 50 + "}"),
    ("set_strategy", '{"strategy": "grpo", "params": ' + '{"a": ' * 20 + "1" + "}" * 20 + "}"),
]


def test_fuzzed_commands_never_stop_a_live_session(tmp_path):
    assert len(FUZZ) >= 30
    sess = Session(workspace=str(tmp_path), steps=3, **TINY)
    gen = sess.run()
    next(gen)                                                   # step 1: the session is live
    store = RunStore(tmp_path)
    ids = []
    for kind, text in FUZZ:
        ids.append(raw_command(store, sess.run_id, kind, text))
        if len(ids) == 10:
            store.send_command(sess.run_id, "evaluate")           # valid commands among them still work
    store.send_command(sess.run_id, "checkpoint")
    rest = list(gen)                                            # must not raise
    assert [r["step"] for r in rest] == [2, 3]
    cmds = {c["id"]: c for c in store.commands(sess.run_id)}
    bad = [cmds[i] for i in ids]
    assert [c["status"] for c in bad] == ["rejected"] * len(FUZZ), [(c["kind"], c["message"]) for c in bad
                                                                    if c["status"] != "rejected"]
    assert all(c["message"] and c["step"] == 1 for c in bad)
    assert [c["status"] for c in cmds.values() if c["id"] not in ids] == ["applied", "applied"]
    rejected = store.events(sess.run_id, kind="command_rejected")
    assert sorted(e["payload"]["id"] for e in rejected) == ids
    assert all(e["payload"]["reason"] for e in rejected)
    assert store.last_step(sess.run_id) == 3 and store.get_run(sess.run_id)["status"] == "finished"
    by_text = {text: cmds[i]["message"] for (_, text), i in zip(FUZZ, ids)}
    assert "n must be a whole number" in by_text['{"n": Infinity}']
    assert "unknown strategy" in by_text['{"strategy": "no_such_strategy"}'] or \
        "no_such_strategy" in by_text['{"strategy": "no_such_strategy"}']


def test_scheduled_switch_waits_for_its_step(tmp_path):
    sess = Session(workspace=str(tmp_path), steps=3, **TINY)
    gen = sess.run()
    next(gen)
    store = RunStore(tmp_path)
    cid = store.send_command(sess.run_id, "set_strategy", {"strategy": "bbg", "at_step": 2})
    next(gen)                                                   # step 2: still grpo, the switch waits
    assert sess.strategy.name == "grpo" and store.commands(sess.run_id)[0]["status"] == "pending"
    next(gen)                                                   # applied after step 2: bbg for step 3
    assert sess.strategy.name == "bbg"
    assert (store.commands(sess.run_id)[0]["id"], store.commands(sess.run_id)[0]["step"]) == (cid, 2)


def test_a_command_that_would_crash_does_not_crash_the_next_resume(tmp_path):
    sess = Session(workspace=str(tmp_path), steps=2, **TINY)
    list(sess.run())                                            # finished at step 2 with a checkpoint
    store = RunStore(tmp_path)
    poison = [raw_command(store, sess.run_id, "step", '{"n": Infinity}'),
              raw_command(store, sess.run_id, "set_strategy", '{"strategy": "grpo", "params": [1]}')]
    again = Session.resume(sess.run_id, workspace=tmp_path, apply_pending=True, steps=3)
    assert [c["id"] for c in again.pending_commands] == poison
    assert [r["step"] for r in again.run()] == [3]
    assert [c["status"] for c in store.commands(sess.run_id)] == ["rejected", "rejected"]
    third = Session.resume(sess.run_id, workspace=tmp_path, apply_pending=True, steps=4)
    assert [r["step"] for r in third.run()] == [4]


def test_commands_sent_while_no_trainer_ran_are_expired_on_resume(tmp_path, capsys):
    ws = str(tmp_path / "runs")
    sess = Session(workspace=ws, steps=2, **TINY)
    list(sess.run())
    store = RunStore(ws)
    stop = store.send_command(sess.run_id, "stop")
    evaluate = store.send_command(sess.run_id, "evaluate")
    assert main(["train", "--quiet", "--workspace", ws, "--resume", sess.run_id, "--steps", "3"]) == 0
    out = capsys.readouterr()
    assert f"expired 2 command(s) sent while no trainer ran this run: #{stop} stop, #{evaluate} evaluate" in out.err
    assert "--apply-pending" in out.err
    cmds = store.commands(sess.run_id)
    assert [c["status"] for c in cmds] == ["expired", "expired"]
    assert all("sent while no trainer ran" in c["message"] and c["step"] == 2 for c in cmds)
    assert store.last_step(sess.run_id) == 3                    # the stale stop did not stop the run
    assert store.get_run(sess.run_id)["status"] == "finished"
    ev = store.events(sess.run_id, kind="commands_expired")
    assert [e["payload"]["ids"] for e in ev] == [[stop, evaluate]]

    stop2 = store.send_command(sess.run_id, "stop")
    assert main(["train", "--quiet", "--workspace", ws, "--resume", sess.run_id, "--steps", "5",
                 "--apply-pending"]) == 0
    out = capsys.readouterr()
    assert f"applying 1 command(s) sent while no trainer ran (--apply-pending): #{stop2} stop" in out.out
    assert store.commands(sess.run_id)[-1]["status"] == "applied"
    assert store.last_step(sess.run_id) == 3 and store.get_run(sess.run_id)["status"] == "stopped"
    assert main(["train", "--apply-pending"]) == 2
    assert "--apply-pending only applies with --resume" in capsys.readouterr().err


def test_expire_keeps_commands_sent_after_the_resume_began(store):
    old = raw_command(store, "r", "pause", "{}", created_at=time.time() - 60)
    cutoff = time.time()
    new = raw_command(store, "r", "pause", "{}", created_at=cutoff + 1)
    gone = store.expire_commands("r", cutoff, 4, "expired")
    assert [c["id"] for c in gone] == [old]
    assert [(c["id"], c["status"]) for c in store.commands("r")] == [(old, "expired"), (new, "pending")]
    assert json.loads(json.dumps(store.commands("r")[0]["message"])) == "expired"


def test_unreadable_payload_is_returned_as_text(store):
    cid = raw_command(store, "r", "pause", "{broken")
    assert store.pending_commands("r")[0]["payload"] == "{broken"
    store.mark_command(cid, "rejected", message="bad")

"""Drive the dashboard through its API with gradio_client: start a run on the embedded
model, pause and step it, switch its strategy between steps, and read the events back."""

from __future__ import annotations

import json

import pytest
from ui_helpers import TINY_RUN, wait_for


def test_start_step_switch_and_read_events(dashboard):
    from gradio_client import Client

    url, demo = dashboard
    client = Client(url, verbose=False)

    def state(rid):
        return json.loads(client.predict(rid, api_name="/run_state"))

    # an invalid form value is a message, not a traceback
    with pytest.raises(Exception, match="at least 2"):
        client.predict(model="tiny-primes", strategy="grpo", steps=5, group_size=1, api_name="/start_run")

    rid = client.predict(model="tiny-primes", task="two_primes", strategy="grpo", params="", steps=400,
                         api_name="/start_run", **TINY_RUN)
    assert rid in demo.controller.manager.running() or state(rid)["status"] != "starting"
    wait_for(lambda: state(rid)["last_step"] >= 1, 180, "the run's first step")

    client.predict(rid, "pause", 1, api_name="/send_command")
    wait_for(lambda: state(rid)["status"] == "paused", 60, "the pause")
    s0 = state(rid)["last_step"]

    client.predict(rid, "step", 2, api_name="/send_command")
    wait_for(lambda: (st := state(rid))["last_step"] == s0 + 2 and st["status"] == "paused", 60, "two steps")

    msg = client.predict(rid, "bbg", "bbg.k=4", api_name="/switch_strategy")
    assert "bbg" in msg
    cmds = wait_for(lambda: [c for c in json.loads(client.predict(rid, api_name="/list_commands"))
                             if c["kind"] == "set_strategy" and c["status"] != "pending"], 60, "the switch")
    assert cmds[-1]["status"] == "applied", cmds[-1]["message"]
    assert cmds[-1]["step"] == s0 + 2

    client.predict(rid, "step", 1, api_name="/send_command")
    wait_for(lambda: state(rid)["last_step"] == s0 + 3, 60, "one more step")

    events = json.loads(client.predict(rid, "strategy", api_name="/list_events"))
    assert [e["payload"]["name"] for e in events] == ["grpo", "bbg"]
    assert events[0]["step"] == 0
    assert events[-1]["step"] == s0 + 2          # in force from step s0 + 3 on
    assert events[-1]["payload"]["params"]["bbg"]["k"] == 4
    kinds = [e["kind"] for e in json.loads(client.predict(rid, "", api_name="/list_events"))]
    assert "pause" in kinds and "evaluation" in kinds

    client.predict(rid, "stop", 1, api_name="/send_command")
    wait_for(lambda: state(rid)["status"] == "stopped", 120, "the stop")
    proc = demo.controller.manager.get(rid).popen
    proc.wait(60)
    assert proc.returncode == 0

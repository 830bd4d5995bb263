"""Drive the dashboard through its API with gradio_client: start a run on the embedded
model, pause and step it, switch its strategy between steps, and read the events back."""

from __future__ import annotations

import json

import pytest
from ui_helpers import TINY_RUN, free_port, wait_for


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


def test_api_defaults_and_switch_parser_are_the_engines(fake_store):
    """Through gradio_client: the start_run endpoint's defaults are RunConfig's (the CLI's), and
    a switch with a parameter the engine accepts (clip.eps_high) is accepted and sent."""
    from gradio_client import Client

    from ui.app import build_app, launch
    from workbench.config import RunConfig

    fake_store.set_status("fake-run", "running")
    demo = build_app(fake_store.root, poll_seconds=60.0)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        params = {p["parameter_name"]: p.get("parameter_default")
                  for p in client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/start_run"][
                      "parameters"]}
        c = RunConfig()
        assert (params["steps"], params["group_size"], params["prompts_per_step"], params["eval_n"]) == (
            c.steps, c.rollout.group_size, c.rollout.prompts_per_step, c.eval.n)
        msg = client.predict("fake-run", "bbg", "clip.eps_high=0.28, optim.updates_per_batch=3",
                             api_name="/switch_strategy")
        assert "bbg" in msg
        cmd = fake_store.commands("fake-run")[-1]
        assert cmd["kind"] == "set_strategy" and cmd["payload"]["params"] == {"clip.eps_high": 0.28,
                                                                              "optim.updates_per_batch": 3}
        with pytest.raises(Exception, match="is not part of"):
            client.predict("fake-run", "grpo", "bbg.k=3", api_name="/switch_strategy")
    finally:
        demo.close()

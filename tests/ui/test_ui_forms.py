"""Form validation: every invalid value is a FormError naming the field, never a traceback."""

from __future__ import annotations

import sys

import pytest

from ui import forms
from ui.control import Controller

GOOD = {"model": "tiny-primes", "task": "two_primes", "strategy": "bbg", "params": forms.param_rows("bbg"),
        "steps": 10, "group_size": 4, "prompts_per_step": 4, "eval_every": 5, "eval_n": 4,
        "extra": "eval.max_problems=8"}


def test_run_request_builds_the_train_command(tmp_path):
    rows = forms.param_rows("bbg")
    rows[[r[0] for r in rows].index("bbg.k")][1] = "8"      # edited in the table
    req = forms.run_request({**GOOD, "params": rows, "params_text": "loss.eps_high=0.28"}, tmp_path)
    argv = req.argv
    assert argv[:4] == [sys.executable, "-m", "workbench.cli", "train"]
    opts = dict(a.split("=", 1) for a in argv[4:] if "=" in a and not a.startswith("--set="))
    assert opts["--run-id"] == req.run_id and opts["--workspace"] == str(tmp_path.resolve())
    assert opts["--strategy"] == "bbg" and opts["-G"] == "4"
    sets = [a[len("--set="):] for a in argv if a.startswith("--set=")]
    assert sets == ["eval.max_problems=8", "bbg.k=8", "loss.eps_high=0.28"]   # defaults are not repeated
    # the CLI reads the command line back as the form meant it
    from workbench.cli import build_parser
    args = build_parser().parse_args(argv[3:])
    assert getattr(args, "cfg:workspace") == str(tmp_path.resolve()) and args.run_id == req.run_id
    assert req.params == {"bbg.k": 8, "loss.eps_high": 0.28}


@pytest.mark.parametrize("bad, message", [
    ({"steps": 0}, "steps = 0"),
    ({"steps": "ten"}, "not a number"),
    ({"group_size": 1}, "at least 2"),
    ({"prompts_per_step": 2.5}, "whole number"),
    ({"eval_n": 0}, "at least 1"),
    ({"strategy": "grpo+nope"}, "unknown piece(s) nope"),
    ({"strategy": "grpo+rloo"}, "exactly one estimator"),
    ({"strategy": ""}, "choose a preset"),
    ({"params_text": "bbg.k=many"}, "bbg.k"),
    ({"params_text": "bbg.kk=3"}, "parameters of bbg"),
    ({"params_text": "rloo.x=3"}, "is not part of"),
    ({"params_text": "no equals sign"}, "KEY=VALUE"),
    ({"model": "/no/such/model"}, "not allowed from the dashboard"),
    ({"model": ""}, "model"),
    ({"task": "chess"}, "cannot be started from the dashboard"),
    ({"extra": "loss.eps_low=-1"}, "loss.eps_low"),
    ({"extra": "warp.speed=9"}, "not a config field"),
])
def test_invalid_values_are_messages(tmp_path, bad, message):
    with pytest.raises(forms.FormError) as err:
        forms.run_request({**GOOD, **bad}, tmp_path)
    assert message in str(err.value)


def test_models_and_strategy_catalog(tmp_path):
    from ui.security import WebPolicy
    from workbench.errors import ConfigError

    assert forms.model_choices()[0] == "tiny-primes"
    default = WebPolicy.create(tmp_path)
    with pytest.raises(forms.FormError, match="--allow-model"):      # Hub ids only when the operator allows them
        forms.check_model("Qwen/Qwen2.5-0.5B-Instruct", default)
    (tmp_path / "m").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        WebPolicy.create(tmp_path, [str(tmp_path / "m")])
    with pytest.raises(forms.FormError, match="not allowed"):
        forms.check_model(str(tmp_path / "m"), default)
    (tmp_path / "m" / "config.json").write_text("{}")
    allowing = WebPolicy.create(tmp_path, [str(tmp_path / "m"), "Qwen/Qwen2.5-0.5B-Instruct"])
    assert forms.check_model(str(tmp_path / "m"), allowing) == str((tmp_path / "m").resolve())
    assert forms.check_model("Qwen/Qwen2.5-0.5B-Instruct", allowing) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert forms.model_choices(allowing) == ["tiny-primes", str((tmp_path / "m").resolve()),
                                             "Qwen/Qwen2.5-0.5B-Instruct"]
    assert [r[0] for r in forms.param_rows("grpo+negative_only")] == ["grpo.eps"]
    assert "Bayesian Boundary Gating" in forms.strategy_doc("bbg")
    assert forms.switch_payload("bbg", None, '{"bbg.k": 4}') == {"strategy": "bbg", "params": {"bbg.k": 4}}


def test_controller_refuses_commands_it_cannot_deliver(fake_store):
    ctl = Controller(fake_store.root)
    with pytest.raises(forms.FormError, match="no run selected"):
        ctl.send(None, "pause")
    with pytest.raises(forms.FormError, match="finished"):       # no session would ever apply it
        ctl.send("fake-run", "pause")
    # Step N / Resume on an ended run continue it in a new `workbench train --resume` process
    with pytest.raises(forms.FormError, match="no checkpoint"):
        ctl.send("fake-run", "step", 5)
    fake_store.record_checkpoint("fake-run", 15, "/nowhere")
    started = []
    ctl.manager.start = lambda rid, argv, append=False: started.append((rid, argv, append))
    ctl.send("fake-run", "step", 5)
    rid, argv, append = started[-1]
    assert rid == "fake-run" and append and argv[argv.index("--resume") + 1] == "fake-run"
    assert argv[argv.index("--steps") + 1] == "20"                # 15 done + 5
    fake_store.update_config("fake-run", {**fake_store.get_run("fake-run")["config"], "steps": 15})
    with pytest.raises(forms.FormError, match="Step N to train N more"):
        ctl.send("fake-run", "resume")                           # it finished all its steps
    with pytest.raises(forms.FormError, match="not in the store"):
        ctl.switch("nope", "bbg")
    with pytest.raises(forms.FormError, match="unknown command"):
        ctl.send("fake-run", "explode")
    fake_store.set_status("fake-run", "running")
    with pytest.raises(forms.FormError, match="step N"):
        ctl.send("fake-run", "step", 0)
    cmd_id, msg = ctl.switch("fake-run", "bbg", None, "bbg.tau=0.05")
    assert fake_store.commands("fake-run")[-1] == {**fake_store.commands("fake-run")[-1], "id": cmd_id,
                                                   "kind": "set_strategy", "status": "pending",
                                                   "payload": {"strategy": "bbg", "params": {"bbg.tau": 0.05}}}
    assert "next step boundary" in msg


def test_crashed_process_is_a_message(tmp_path):
    ctl = Controller(tmp_path)
    proc = ctl.manager.start("crash-run", [sys.executable, "-c", "import sys; print('error: out of cheese', "
                                                                 "file=sys.stderr); sys.exit(2)"])
    proc.popen.wait(30)
    line = ctl.status_line("crash-run", None)
    assert "exited with code 2" in line and "out of cheese" in line
    assert "Traceback" not in line
    assert ctl.runs_rows()[0][:2] == ["crash-run", "exited before starting (code 2)"]
    assert ctl.run_ids() == ["crash-run"]


@pytest.mark.parametrize("spec, text", [
    ("bbg", "clip.eps_high=0.28"),                 # the engine's loss alias
    ("kl_cov", "optim.updates_per_batch=4"),
    ("grpo", "loss.eps_high=inf"),
    ("grpo+bbg", "bbg.k=8, loss.aggregation=seq_sum_const"),
])
def test_form_and_engine_accept_the_same_parameters(spec, text):
    """One parser (workbench.strategies.catalog.parse_strategy) for the engine and the form."""
    from workbench.strategies.base import build_strategy

    params = forms.parse_params(spec, None, text)
    strat = build_strategy(spec, params)                       # the engine takes what the form sent
    assert strat.name == spec


@pytest.mark.parametrize("spec, text, fragment", [
    ("grpo", "bbg.k=3", "is not part of"),
    ("grpo+rloo", "", "two estimators"),
    ("negative_only", "", "no estimator"),
    ("grpo", "loss.eps_high=nan", "nan"),
    ("kl_cov", "optim.lr=0.1", "can override only"),
    ("bbg", "bbg.kk=2", "valid parameters of bbg"),
])
def test_form_and_engine_reject_the_same_parameters(spec, text, fragment):
    from workbench.errors import WorkbenchError
    from workbench.strategies.base import build_strategy

    with pytest.raises(forms.FormError, match=fragment):
        forms.switch_payload(spec, None, text)
    with pytest.raises(WorkbenchError, match=fragment):
        build_strategy(spec, forms.parse_pairs(text))

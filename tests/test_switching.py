"""Every preset trains; strategies switch between steps from Python, the command table
and the CLI, keeping per-problem history and a strategy's own state."""

from __future__ import annotations

import math

import pytest

from workbench.cli import main
from workbench.session import Session
from workbench.store import RunStore
from workbench.strategies import PRESETS

TINY = {"rollout.prompts_per_step": 6, "rollout.group_size": 4, "eval.n": 4, "eval.max_problems": 4,
        "eval.seen_problems": 0, "eval.every": 0, "checkpoint_every": 0}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_two_steps_without_nan(preset, tmp_path):
    sess = Session(workspace=str(tmp_path), strategy=preset, steps=2, **TINY)
    recs = list(sess.run())
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        for key in ("train/loss", "train/adv_mean", "train/reward_transformed_mean", "train/grad_norm", "train/entropy"):
            assert math.isfinite(r[key]), (preset, key, r[key])


def test_switching_keeps_history_events_and_memory_state(tmp_path):
    sess = Session(workspace=str(tmp_path), strategy="iac_dlc", steps=10, **TINY)
    gen = sess.run()
    next(gen), next(gen)                                          # steps 1-2 with iac_dlc
    memory = sess.strategy.state["memory"]
    trained = memory.updates
    assert trained > 0 and len(memory.buffer) > 0
    sess.set_strategy("grpo")                                     # from Python
    next(gen)                                                     # step 3 with grpo
    assert sess.strategy.name == "grpo" and not sess.strategy.state
    other = RunStore(tmp_path)                                    # from another process's view
    other.send_command(sess.run_id, "set_strategy", {"strategy": "bbg", "params": {"bbg.k": 8}})
    next(gen)                                                     # command applied before step 4
    assert sess.strategy.name == "bbg" and sess.strategy.calibrations[0][1].k == 8
    sess.set_strategy("iac_dlc")
    next(gen)                                                     # step 5: the memory is back
    assert sess.strategy.state["memory"] is memory and memory.updates == trained + 2 * 1
    gen.close()

    events = [(e["step"], e["payload"]["name"]) for e in other.events(sess.run_id, kind="strategy")]
    assert events == [(0, "iac_dlc"), (2, "grpo"), (3, "bbg"), (4, "iac_dlc")]
    bbg_event = [e for e in other.events(sess.run_id, kind="strategy") if e["payload"]["name"] == "bbg"][0]
    assert bbg_event["payload"]["params"]["bbg"]["k"] == 8
    assert [c["status"] for c in other.commands(sess.run_id)] == ["applied"]
    # per-problem history spans all strategies: every step's prompts are in it
    assert sum(len(v) for v in sess.history.entries.values()) == 5 * 6


def test_memory_state_survives_checkpoint_and_resume(tmp_path):
    sess = Session(workspace=str(tmp_path), strategy="iac_dlc", steps=2, **TINY)
    list(sess.run())                                             # ends with a checkpoint at step 2
    mem = sess.strategy.state["memory"]
    back = Session.resume(sess.run_id, workspace=tmp_path, steps=3)
    next(back.run())
    mem2 = back.strategy.state["memory"]
    assert mem2.updates == mem.updates + 2
    # the resumed memory continued from the saved weights, not from a fresh (zero) output layer
    assert mem2.model.out.weight.abs().sum().item() > 0


def test_invalid_switch_is_rejected_with_a_message(tmp_path):
    sess = Session(workspace=str(tmp_path), steps=3, **TINY)
    gen = sess.run()
    next(gen)
    store = RunStore(tmp_path)
    store.send_command(sess.run_id, "set_strategy", {"strategy": "bbg", "params": {"bbg.k": -1}})
    next(gen)
    cmd = store.commands(sess.run_id)[0]
    assert cmd["status"] == "rejected" and "bbg.k = -1" in cmd["message"]
    assert sess.strategy.name == "grpo"
    gen.close()


def test_cli_resume_with_another_strategy_and_set(tmp_path, capsys):
    ws = str(tmp_path)
    assert main(["train", "--quiet", "--workspace", ws, "--steps", "1", "-B", "4", "-G", "2", "--eval.n", "4",
                 "--eval.max_problems", "4", "--eval.seen_problems", "0"]) == 0
    run_id = RunStore(ws).list_runs()[0]["run_id"]
    assert main(["train", "--quiet", "--workspace", ws, "--resume", run_id, "--steps", "2", "--strategy", "bbg",
                 "--set", "bbg.k=64", "--set", "clip.eps_high=0.28"]) == 0
    events = RunStore(ws).events(run_id, kind="strategy")
    assert [(e["step"], e["payload"]["name"]) for e in events] == [(0, "grpo"), (1, "bbg")]
    assert events[-1]["payload"]["params"]["bbg"]["k"] == 64 and events[-1]["payload"]["loss"]["eps_high"] == 0.28
    assert RunStore(ws).get_run(run_id)["strategy"] == "bbg"
    capsys.readouterr()
    assert main(["train", "--workspace", ws, "--strategy", "bbg", "--set", "bbg.kk=3"]) == 2
    assert "valid parameters of bbg: bbg.k" in capsys.readouterr().err


def test_a_parameter_named_like_an_argument_is_a_clear_error(tmp_path):
    from workbench.errors import ConfigError, UnknownNameError

    sess = Session(workspace=str(tmp_path), steps=1, **TINY)
    with pytest.raises(ConfigError, match="piece 'spec' is not part of 'bbg'"):   # not a TypeError
        sess.set_strategy("bbg", spec="grpo")
    with pytest.raises(UnknownNameError) as err:
        sess.set_strategy("ppo_magic")
    names = str(err.value).split("valid strategy names: ", 1)[1].split(".", 1)[0].split(", ")
    assert len(names) == len(set(names)) and "grpo" in names                    # each name once
    sess.close()


# -- the roster on its own (no Session) ----------------------------------------------------
CONTEXT = {"vocab_size": 12, "pad_id": 0, "device": "cpu"}


def _trained(sampler) -> None:
    """Make a memory's state differ from a fresh one's."""
    import torch

    with torch.no_grad():
        sampler.model.out.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(5))
    sampler.buffer.extend([([3, 4], [5, 2]), ([7], [8])])
    sampler.updates = 7


def test_roster_switch_back_restores_the_state_object():
    from workbench.strategies.switching import StrategyRoster

    roster = StrategyRoster("iac_dlc", seed=3)
    memory = roster.sampler(CONTEXT)
    assert memory is roster.current.state["memory"] and roster.sampler(CONTEXT) is memory   # created once
    _trained(memory)
    assert roster.switch("grpo") is roster.current and roster.current.name == "grpo"
    assert roster.sampler(CONTEXT) is None and not roster.current.state
    assert set(roster.state_dicts()) == {"iac_dlc"}              # a kept strategy's state goes into checkpoints
    roster.switch("iac_dlc", {"memory.mu": 0.5})                 # A -> B -> A, with new parameters
    assert roster.current.state["memory"] is memory and roster.sampler(CONTEXT) is memory
    assert memory.params.mu == 0.5 and memory.updates == 7


def test_roster_switch_back_by_an_unnormalised_spec_finds_the_kept_state():
    """The dashboard and the CLI pass specs as typed (" iac_dlc "); the kept strategy is
    found by its parsed name, not by the raw text."""
    from workbench.strategies.switching import StrategyRoster

    roster = StrategyRoster("iac_dlc", seed=3)
    memory = roster.sampler(CONTEXT)
    _trained(memory)
    roster.switch("grpo")
    roster.switch("  iac_dlc ")
    assert roster.current.name == "iac_dlc"
    assert roster.current.state["memory"] is memory and roster.sampler(CONTEXT) is memory and memory.updates == 7


def test_roster_restores_checkpoint_state_when_the_strategy_first_samples():
    import torch

    from workbench.strategies.switching import StrategyRoster

    first = StrategyRoster("iac_dlc", seed=3)
    _trained(first.sampler(CONTEXT))
    first.switch("grpo")
    saved = first.state_dicts()

    back = StrategyRoster("iac_dlc", seed=3)                     # the run's config; the checkpoint says grpo
    back.restore(saved, "grpo", {})
    assert back.current.name == "grpo" and back.state_dicts().keys() == saved.keys()   # unclaimed: kept for the next
    back.switch("iac_dlc")
    memory = back.sampler(CONTEXT)                               # claims the saved state
    assert memory.updates == 7 and len(memory.buffer) == 2
    assert torch.equal(memory.model.out.weight, first._kept["iac_dlc"].state["memory"].model.out.weight)
    fresh = StrategyRoster("iac_dlc", seed=3).sampler(CONTEXT)
    assert not torch.equal(memory.model.out.weight, fresh.model.out.weight) and fresh.updates == 0

    only_state = StrategyRoster("grpo", seed=3)
    only_state.restore({}, None)                                 # an old checkpoint without "strategy"
    assert only_state.current.name == "grpo" and only_state.state_dicts() == {}

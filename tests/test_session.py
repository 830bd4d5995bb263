"""End to end on the embedded model: a few real steps, everything stored, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.errors import CheckpointError, ConfigError, TrainingError, UnknownNameError, VerifierError
from workbench.session import Session
from workbench.store import RunStore

SMALL = {
    "rollout.prompts_per_step": 8,
    "rollout.group_size": 4,
    "eval.n": 8,
    "eval.max_problems": 8,
    "eval.seen_problems": 4,
    "eval.every": 3,
    "checkpoint_every": 2,
    "steps": 3,
}

STEP_KEYS = [
    "train/reward_mean", "train/pass@1", "train/entropy", "train/logp_adv_cov", "train/kl_old",
    "train/clip_frac_low", "train/clip_frac_high", "train/clip_frac", "train/grad_norm", "train/adv_mean",
    "train/adv_std", "train/adv_frac_zero", "train/frac_all_correct", "train/frac_all_wrong", "train/frac_mixed",
    "train/completion_len", "train/truncated_frac", "perf/rollout_tok_s", "perf/update_tok_s", "time/rollout",
    "time/reward", "time/update", "time/metrics",
]


def make(tmp_path, **kw) -> Session:
    return Session(workspace=str(tmp_path / "runs"), **{**SMALL, **kw})


def test_three_steps_train_the_adapter_and_store_every_metric(tmp_path):
    sess = make(tmp_path)
    before = {n: p.detach().clone() for n, p in sess.model.named_parameters() if p.requires_grad}
    records = list(sess.run())
    assert [r["step"] for r in records] == [1, 2, 3]
    changed = [n for n, p in sess.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)

    store = RunStore(tmp_path / "runs")
    scalars = store.scalars(sess.run_id)
    for key in STEP_KEYS:
        assert [s for s, _ in scalars[key]] == [1, 2, 3], key
        assert all(math.isfinite(v) for _, v in scalars[key]), key
    assert [s for s, _ in scalars["train/kl_ref"]] == [1]              # every 5 steps by default: 1, 6, ...
    fr = [scalars[k][0][1] for k in ("train/frac_all_correct", "train/frac_all_wrong", "train/frac_mixed")]
    assert sum(fr) == pytest.approx(1.0)
    assert len(store.step_problems(sess.run_id)) == 3 * 8

    evs = store.evaluations(sess.run_id)
    assert {(e["label"], e["split"], e["step"]) for e in evs} == {
        ("base", "eval", 0), ("base", "seen", 0), ("policy", "eval", 3), ("policy", "seen", 3)}
    policy = [e for e in evs if e["label"] == "policy" and e["split"] == "eval"][0]["summary"]
    for key in ["eval/pass@1", "eval/pass@8", "eval/mean_entropy", "eval/frac_unsolved", "collapse/mean_index",
                "boundary/gained", "boundary/lost", "boundary/kept", "boundary/never", "boundary/gained_c2",
                "sharpen/rate", "sharpen/mass_now", "sharpen/mass_ref", "collapse/matched_m_mean",
                "boundary/passk_delta@8", "boundary/report_k"]:
        assert key in policy, key
    assert policy["boundary/report_k"] == 8
    rows = store.eval_problems(sess.run_id, [e for e in evs if e["label"] == "policy"][0]["eval_id"])
    for r in rows:   # the matched sample size beside every per-problem collapse index
        assert {"collapse_index", "collapse_m"} <= set(r)
        assert (r["collapse_m"] is None) == (min(r["c"], r["base_c"]) < 2)
    assert store.bank(sess.run_id), "the base model's correct modes are banked"
    kinds = [e["kind"] for e in store.events(sess.run_id)]
    assert kinds.count("checkpoint") == 2 and "strategy" in kinds      # steps 2 and 3 (the end)
    assert store.get_run(sess.run_id)["status"] == "finished"


def test_kl_to_reference_every_step_when_asked_or_penalised(tmp_path):
    a = make(tmp_path / "a", steps=2, **{"eval.every": 0, "loss.ref_kl_every": 1})
    b = make(tmp_path / "b", steps=2, **{"eval.every": 0, "loss.kl_coef": 0.05})
    for sess in (a, b):
        recs = list(sess.run())
        assert all("train/kl_ref" in r for r in recs)
        assert recs[0]["train/kl_ref"] == pytest.approx(0.0, abs=1e-6)     # step 1: the adapter is still zero
        assert recs[1]["train/kl_ref"] > 0


def test_same_seed_same_run(tmp_path):
    a = make(tmp_path / "a", steps=2, **{"eval.every": 0})
    b = make(tmp_path / "b", steps=2, **{"eval.every": 0})
    ra, rb = list(a.run()), list(b.run())
    for x, y in zip(ra, rb):
        for key in ("train/reward_mean", "train/entropy", "train/loss"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7)
    c = make(tmp_path / "c", steps=2, seed=7, **{"eval.every": 0})
    rc = list(c.run())
    assert [r["train/entropy"] for r in rc] != [r["train/entropy"] for r in ra]


def test_commands_from_another_process_are_applied(tmp_path):
    sess = make(tmp_path, steps=5, **{"eval.every": 0, "checkpoint_every": 0})
    other = RunStore(tmp_path / "runs")                 # as the dashboard would
    gen = sess.run()
    next(gen)
    other.send_command(sess.run_id, "evaluate")
    with pytest.raises(ConfigError, match="unknown command 'bogus'"):   # refused at the sender ...
        other.send_command(sess.run_id, "bogus")
    with other._db.write() as c:                        # ... so written as an older version would
        c.execute("INSERT INTO commands (run_id, kind, payload, status, created_at) "
                  "VALUES (?, 'bogus', '{}', 'pending', 0)", (sess.run_id,))
    other.send_command(sess.run_id, "stop")
    rest = list(gen)
    assert rest == []                                   # stopped before step 2
    cmds = {c["kind"]: c for c in other.commands(sess.run_id)}
    assert cmds["evaluate"]["status"] == "applied" and cmds["stop"]["status"] == "applied"
    assert cmds["bogus"]["status"] == "rejected" and "unknown command" in cmds["bogus"]["message"]
    assert [e["step"] for e in other.evaluations(sess.run_id, label="policy", split="eval")] == [1]
    assert other.get_run(sess.run_id)["status"] == "stopped"


def test_nan_loss_stops_cleanly_and_keeps_earlier_steps(tmp_path, monkeypatch):
    sess = make(tmp_path, **{"eval.every": 0})
    sess.step()
    import workbench.update as mod      # the update path the session shares with the simulator

    real = mod.policy_loss

    def nan_loss(*a, **kw):
        parts = real(*a, **kw)
        parts.loss = parts.loss * float("nan")
        return parts

    monkeypatch.setattr(mod, "policy_loss", nan_loss)
    with pytest.raises(TrainingError, match=r"loss is nan at step 2.*keeps steps 1\.\.1.*optim\.lr"):
        sess.step()
    store = RunStore(tmp_path / "runs")
    assert store.last_step(sess.run_id) == 1
    assert store.get_run(sess.run_id)["status"] == "failed"


def test_failed_checkpoint_write_loses_nothing(tmp_path, monkeypatch):
    sess = make(tmp_path, **{"eval.every": 0, "checkpoint_every": 0})
    sess.step()
    good = sess.checkpoint()
    sess.step()

    def broken_save(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="No space left.*store and earlier checkpoints are intact"):
        sess.checkpoint()
    store = RunStore(tmp_path / "runs")
    assert store.last_step(sess.run_id) == 2
    assert [c["step"] for c in store.checkpoints(sess.run_id)] == [1]
    assert (good / "adapter.safetensors").is_file()
    assert not list(good.parent.glob("*.tmp-*"))


def test_bad_names_fail_before_a_run_is_created(tmp_path):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(UnknownNameError, match="unknown task 'nope'.*two_primes"):
        make(tmp_path, **{"task.name": "nope"})
    with pytest.raises(UnknownNameError, match="unknown strategy"):
        make(tmp_path, strategy="nope")
    with pytest.raises(UnknownNameError, match="unknown model './no/such/model'"):
        make(tmp_path, **{"model.name_or_path": "./no/such/model"})
    with pytest.raises(ConfigError, match="rollout.group_size = 1"):
        make(tmp_path, **{"rollout.group_size": 1})
    assert not (tmp_path / "runs" / "store.sqlite").exists() or store.list_runs() == []


def test_verifier_that_raises_names_the_problem(tmp_path, monkeypatch):
    data = tmp_path / "probs.jsonl"
    data.write_text("".join(f'{{"id": "q{n}", "prompt": "N={n:03d}:", "n": {n}}}\n' for n in range(10, 60, 2)))
    mod = tmp_path / "my_verifier.py"
    mod.write_text("def check(record, completion):\n    raise RuntimeError('verifier bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sess = make(tmp_path, **{"task.name": "custom", "task.params": {"path": str(data), "verifier": "my_verifier:check",
                                                                       "eval_size": 8},
                              "eval.seen_problems": 0})
    with pytest.raises(VerifierError, match=r"my_verifier:check.*q\d+.*verifier bug"):
        sess.step()
    assert RunStore(tmp_path / "runs").last_step(sess.run_id) == -1


def _spy_losses(monkeypatch) -> list[dict]:
    """Record the ratio, the mask and the log-probs each update's loss is computed from."""
    import workbench.update as mod      # the update path the session shares with the simulator

    real, seen = mod.policy_loss, []

    def spy(logp, old_logp, adv, mask, **kw):
        parts = real(logp, old_logp, adv, mask, **kw)
        seen.append({"ratio": parts.ratio, "mask": mask.bool(), "old": old_logp})
        return parts

    monkeypatch.setattr(mod, "policy_loss", spy)
    return seen


@pytest.mark.parametrize("strategy", ["grpo", "clip_cov"])
def test_first_update_is_exactly_on_policy(tmp_path, monkeypatch, strategy):
    # pi_old is the training forward itself: the ratio is 1 bit for bit on update 1, so no
    # token is clipped and selections keyed on the ratio see no rounding noise.
    seen = _spy_losses(monkeypatch)
    sess = make(tmp_path, steps=1, strategy=strategy, **{"eval.every": 0, "checkpoint_every": 0,
                                                         "optim.updates_per_batch": 1})
    rec = sess.step()
    first = seen[0]
    assert torch.equal(first["ratio"][first["mask"]], torch.ones(int(first["mask"].sum())))
    assert rec["train/clip_frac"] == 0.0
    assert rec["train/offpolicy_abs_logratio"] == 0.0 and rec["train/kl_sample_policy"] == 0.0
    assert "train/ratio_mean" not in rec


def test_second_update_uses_the_first_updates_pi_old(tmp_path, monkeypatch):
    seen = _spy_losses(monkeypatch)
    sess = make(tmp_path, steps=1, **{"eval.every": 0, "checkpoint_every": 0, "optim.updates_per_batch": 2})
    sess.step()
    assert len(seen) == 2 and seen[1]["old"] is seen[0]["old"]
    m = seen[1]["mask"]
    assert not torch.equal(seen[1]["ratio"][m], torch.ones(int(m.sum())))     # the policy moved in between


def test_kl_cov_preset_updates_at_least_twice_per_batch(tmp_path, monkeypatch):
    # the |log rho| penalty has no gradient while rho == 1, so the preset needs a second update
    seen = _spy_losses(monkeypatch)
    sess = make(tmp_path, steps=1, strategy="kl_cov", **{"eval.every": 0, "checkpoint_every": 0,
                                                         "optim.updates_per_batch": 1})
    rec = sess.step()
    assert len(seen) == 2 and rec["train/token_calibrated"] >= 1
    m = seen[1]["mask"]
    assert not torch.equal(seen[1]["ratio"][m], torch.ones(int(m.sum())))     # the penalty acts on update 2


def test_dlc_sampling_reports_how_off_policy_it_is(tmp_path, monkeypatch):
    # DLC samples from pi_theta / pi_m^mu: pi_old is the sampler's distribution, and once the
    # memory has trained the samples are measurably off-policy
    seen = _spy_losses(monkeypatch)
    sess = make(tmp_path, steps=2, strategy="iac_dlc", **{"eval.every": 0, "checkpoint_every": 0,
                                                          "optim.updates_per_batch": 1,
                                                          "strategy_params": {"memory.mu": 1.0, "memory.steps": 20}})
    first, second = sess.step(), sess.step()
    assert first["train/kl_sample_policy"] < 1e-6                            # an untrained memory is uniform
    assert second["train/kl_sample_policy"] > 1e-3 and second["train/offpolicy_abs_logratio"] > 1e-3
    m = seen[1]["mask"]
    abs_logratio = float(seen[1]["ratio"][m].log().abs().mean())
    assert second["train/offpolicy_abs_logratio"] == pytest.approx(abs_logratio, rel=1e-4)

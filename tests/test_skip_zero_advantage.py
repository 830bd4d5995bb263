"""The first update's forward skips the rows whose every advantage is 0
(``optim.skip_zero_advantage``): on-policy, with no KL and no entropy term, those rows get
exactly zero gradient, so the update must equal one whose forward ran over every row."""

import pytest
import torch

from workbench.config import RunConfig
from workbench.errors import ConfigError
from workbench.rollout import Rollout, sample, token_logprobs


def _rollout(lengths: list[int], G: int) -> Rollout:
    N, T = len(lengths), max(lengths) + 2
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths])
    ids = torch.arange(N * T).view(N, T) % 7 + 2
    return Rollout(prompt_ids=torch.arange(N * 3).view(N, 3), prompt_mask=torch.ones(N, 3, dtype=torch.long),
                   completion_ids=ids * mask, completion_mask=mask, sample_logp=-ids.float() * mask,
                   entropy=ids.float() * mask, finished=torch.tensor([n % 2 == 0 for n in lengths]),
                   texts=[f"t{i}" for i in range(N)], group_size=G)


def test_select_keeps_whole_groups_and_trims_to_the_longest_row():
    ro = _rollout([1, 3, 2, 1, 4, 1, 2, 5], G=4)
    whole = ro.select(torch.tensor([4, 5, 6, 7]))
    assert whole.group_size == 4 and whole.completion_ids.shape == (4, 5)      # rows 4..7: the longest has 5
    assert whole.texts == ["t4", "t5", "t6", "t7"] and whole.finished.tolist() == [True, False, True, False]
    assert torch.equal(whole.sample_logp, ro.sample_logp[4:, :5]) and torch.equal(whole.prompt_ids, ro.prompt_ids[4:])
    partial = ro.select(torch.tensor([0, 1, 4, 5]))                             # two rows of each group
    assert partial.group_size == 1 and partial.completion_ids.shape == (4, 4)
    shifted = ro.select(torch.tensor([2, 3, 4, 5]))                             # four rows, but across groups
    assert shifted.group_size == 1


@pytest.fixture(scope="module")
def policy():
    from embedded_policy import embedded_lora_policy

    from workbench.models.fast_lora import MergedLoRA

    model, tok, rows, seeds = embedded_lora_policy(6, 4, 5)
    fast = MergedLoRA(model)
    with fast.frozen():
        ro = sample(fast, rows, seeds, max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                    group_size=4, decode=tok.decode)
    return model, fast, ro


@pytest.mark.parametrize("rows", [[4, 5, 6, 7, 16, 17, 18, 19], [0, 3, 9, 10, 22]])
def test_log_probs_of_selected_rows_equal_those_of_the_whole_rollout(policy, rows):
    _, fast, ro = policy
    idx = torch.tensor(rows)
    with torch.no_grad(), fast.shared():
        full, _ = token_logprobs(fast, ro)
        part, _ = token_logprobs(fast, ro.select(idx))
    m = ro.completion_mask[idx].bool()[:, : part.shape[1]]
    torch.testing.assert_close(part[m], full[idx][:, : part.shape[1]][m], rtol=1e-5, atol=1e-5)


def _session(tmp_path, name, **kw):
    from workbench.session import Session

    return Session(workspace=tmp_path / name, steps=3, **{
        "model.name_or_path": "tiny-primes", "rollout.prompts_per_step": 6, "rollout.group_size": 4,
        "eval.every": 0, "eval.n": 2, "eval.max_problems": 2, "eval.seen_problems": 0, "checkpoint_every": 0,
        "rollout.reuse_forward_mb": 0, "seed": 7, **kw})


def _lora(sess) -> list[torch.Tensor]:
    return [p.detach().clone() for p in sess.lora_params]


def test_skipping_gives_the_update_of_a_forward_over_every_row(tmp_path, monkeypatch):
    """Three steps (two updates per batch) with and without skipping: the same samples and
    rewards, losses, gradient norms and the adapter weights equal up to float rounding; the
    skipping run's first forward saw fewer rows, as many fewer as rows had a zero advantage."""
    import workbench.session as session_mod

    seen = []
    real = session_mod.token_logprobs

    def counting(model, rollout, *a, **kw):
        if torch.is_grad_enabled():
            seen.append(rollout.completion_ids.shape[0])
        return real(model, rollout, *a, **kw)

    monkeypatch.setattr(session_mod, "token_logprobs", counting)
    skipping = _session(tmp_path, "a")
    a = [skipping.step() for _ in range(3)]
    rows_skipping = list(seen)
    seen.clear()
    every = _session(tmp_path, "b", **{"optim.skip_zero_advantage": False})
    b = [every.step() for _ in range(3)]
    rows_every = list(seen)
    N = 6 * 4
    assert rows_every == [N] * 6                                       # two updates a step, every row
    assert rows_skipping[1::2] == [N] * 3                              # the second update: every row
    skipped = [r["perf/update_rows_skipped"] for r in a]
    assert any(s > 0 for s in skipped), "this seed should give some groups with equal rewards"
    for n, s, rec in zip(rows_skipping[0::2], skipped, a):
        assert n == round(N * (1 - s))
        if rec["train/adv_frac_zero"] < 1:
            assert s == pytest.approx(rec["train/adv_frac_zero"])     # the zero-advantage rows, and only they
    assert all(r["perf/update_rows_skipped"] == 0 for r in b)
    for x, y in zip(a, b):
        for key in ("train/reward_mean", "train/num_tokens", "train/pass@1"):
            assert x[key] == y[key], key
        for key in ("train/loss", "train/grad_norm", "train/kl_old", "train/logp_adv_cov", "train/clip_frac"):
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-7), key
    # Adam turns rounding noise in near-zero gradient entries into steps of up to ~1e-5 here
    # (lr 5e-4); a row wrongly skipped or kept would move weights by the order of lr
    for p, q in zip(_lora(skipping), _lora(every)):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("extra", [{"loss.kl_coef": 0.02}, {"loss.entropy_coef": 0.01}, {"strategy": "iac_dlc"}])
def test_no_skipping_where_zero_advantage_rows_carry_gradient(tmp_path, extra):
    """A KL or an entropy term gives every row a gradient, and off-policy sampling (DLC) has
    a ratio other than 1: the first forward then runs over every row."""
    sess = _session(tmp_path, "c", **extra)
    rec = sess.step()
    assert rec["perf/update_rows_skipped"] == 0.0


def test_a_batch_without_any_advantage_still_steps_the_optimiser(tmp_path, monkeypatch):
    """All rewards equal: every advantage is 0, one row still runs the forward, so every
    adapter weight gets an exact zero gradient and AdamW counts the step, as without skipping."""
    from workbench.tasks.base import Verdict

    def all_wrong(problems, completions):
        return [Verdict(0.0, False, True, "x", None) for _ in completions]

    runs = {}
    for name, skip in (("d", True), ("e", False)):
        sess = _session(tmp_path, name, **{"optim.skip_zero_advantage": skip})
        sess.ensure_base()
        monkeypatch.setattr(sess.task, "verify_batch", all_wrong)
        rec = sess.step()
        assert rec["train/adv_frac_zero"] == 1.0
        grads = [p.grad for p in sess.lora_params]
        assert all(g is not None and not g.any() for g in grads)
        steps = [float(sess.optimizer.state[p]["step"]) for p in sess.lora_params]
        runs[name] = (rec, steps, _lora(sess))
    assert runs["d"][0]["perf/update_rows_skipped"] == pytest.approx(1 - 1 / 24)
    assert runs["d"][1] == runs["e"][1] == [2.0] * len(runs["d"][1])   # two updates per batch
    for p, q in zip(runs["d"][2], runs["e"][2]):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", ["maybe", 2])
def test_the_switch_must_be_true_or_false(value):
    with pytest.raises(ConfigError, match=r"optim\.skip_zero_advantage"):
        RunConfig().override({"optim.skip_zero_advantage": value}).validate()


def test_merged_weights_follow_in_place_updates(policy):
    """The merged weights are reused while A, B and W are unchanged, and formed again after
    an optimiser-style in-place step."""
    _, fast, _ = policy
    with torch.no_grad():
        first = fast.merged_weights()
        again = fast.merged_weights()
        assert all(again[k] is first[k] for k in first)
        name, mod = fast.layers[0]
        b = mod.lora_B[fast.adapter].weight
        b.add_(0.5)
        try:
            after = fast.merged_weights()
            key = f"{name}.base_layer.weight"
            expect = mod.base_layer.weight + mod.get_delta_weight(fast.adapter)
            torch.testing.assert_close(after[key], expect)
            assert not torch.allclose(after[key], first[key])
        finally:
            b.sub_(0.5)

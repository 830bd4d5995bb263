"""The batched simulator (S runs along a leading dimension) gives each run the records and
parameters it gets alone, through the same sampled step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.errors import ConfigError
from workbench.metrics import advantage_stats, approx_kl, clip_fractions, group_split, logprob_advantage_cov
from workbench.sim import SimBatch, SimConfig, Simulator

CASES = {
    "grpo, adam": {},
    "clip_cov, sgd, 2 updates, KL and entropy terms": {
        "strategy": "clip_cov", "optimizer": "sgd", "lr": 2.0, "updates_per_batch": 2,
        "loss": {"kl_coef": 0.05, "entropy_coef": 0.01}},
    "random rewards (one strategy call per run), coupled, held-out problems": {
        "strategy": "spurious_random", "coupling": 0.5, "train_problems": 12},
    "iac renormalised, seq_sum_const": {"strategy": "iac", "strategy_params": {"inverse_success.renormalize": True},
                                        "loss": {"aggregation": "seq_sum_const"}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_run_of_a_batch_matches_the_run_alone(case):
    cfg = SimConfig.from_dict({"problems": 16, "prompts_per_step": 4, **CASES[case]})
    seeds = [3, 11, 12]
    batch = SimBatch(cfg, seeds=seeds).train(12)
    for sim in batch.sims:
        alone = Simulator(cfg.replace(seed=sim.config.seed)).train(12)
        assert [r.keys() for r in sim.records] == [r.keys() for r in alone.records]
        for got, want in zip(sim.records, alone.records):
            for key in want:
                assert math.isclose(got[key], want[key], rel_tol=1e-9, abs_tol=1e-12), (case, key, got[key], want[key])
        np.testing.assert_allclose(sim.mode_probs(), alone.mode_probs(), rtol=1e-9, atol=1e-13)
        assert [s[1].tolist() for s in sim._samples] == [s[1].tolist() for s in alone._samples]   # same draws
    assert batch.series("sim/success").shape == (3, 12)
    assert len({tuple(row) for row in batch.series("train/reward_mean")}) == 3   # the runs differ


def test_the_step_statistics_are_the_metric_functions():
    """The simulator computes its per-run diagnostics on [S, N] at once; for one run they are
    the engine's metric functions of the same samples."""
    sim = Simulator(problems=16, prompts_per_step=4, optimizer="sgd", lr=2.0, updates_per_batch=3)
    seen = {}
    import workbench.update as upd

    real = upd.policy_loss

    def spy(logp, old_logp, adv, mask, **kw):
        parts = real(logp, old_logp, adv, mask, **kw)
        seen.setdefault("calls", []).append((logp.detach(), old_logp, adv, mask, parts.ratio, kw["ref_logp"]))
        return parts

    upd.policy_loss = spy
    try:
        rec = sim.step()
    finally:
        upd.policy_loss = real
    logp, old, adv, mask, _, ref = seen["calls"][-1]
    B, G = 4, sim.config.group_size
    assert math.isclose(rec["train/kl_old"], approx_kl(logp, old, mask), rel_tol=1e-12)
    assert math.isclose(rec["train/kl_ref"], approx_kl(ref, old, mask), rel_tol=1e-9, abs_tol=1e-15)
    assert math.isclose(rec["train/logp_adv_cov"], logprob_advantage_cov(old, adv, mask), rel_tol=1e-9, abs_tol=1e-15)
    clip = [clip_fractions(c[4], c[2], c[3], 0.2, 0.2) for c in seen["calls"]]
    assert rec["train/clip_frac"] == sum(c["train/clip_frac"] for c in clip) / 3
    _, rows, modes, *_ = sim._samples[-1]
    correct = sim.world.correct[rows[:, None], modes]                                       # [B, G]
    for k, v in group_split(correct).items():
        assert rec[k] == v
    for k, v in advantage_stats(adv.reshape(B, G)).items():
        assert math.isclose(rec[k], v, rel_tol=1e-9, abs_tol=1e-12)


def test_batch_runs_are_driven_by_the_batch_and_bad_input_is_named():
    batch = SimBatch(SimConfig(problems=8, prompts_per_step=2), seeds=[0, 1])
    with pytest.raises(ConfigError, match="SimBatch"):
        batch.sims[0].step()
    with pytest.raises(ConfigError, match="seeds"):
        SimBatch(seeds=[1, 1])
    with pytest.raises(ConfigError, match="natural"):
        SimBatch(update="natural", optimizer="sgd", seeds=[0])
    batch.set_strategy("grpo_n")
    recs = batch.step()
    assert len(recs) == 2 and all(r["step"] == 1 for r in recs) and batch.sims[1].strategy.name == "grpo_n"
    assert torch.equal(batch.sims[1].policy.a, batch.a.detach()[1])


@pytest.mark.parametrize("how", ["token_mean", "seq_mean_token_mean", "seq_sum_const"])
def test_block_reductions_equal_a_loop_over_the_blocks(how):
    from workbench.losses import aggregate

    g = torch.Generator().manual_seed(0)
    S, n, T = 3, 4, 5
    x = torch.randn(S * n, T, generator=g, dtype=torch.float64)
    old = torch.randn(S * n, T, generator=g, dtype=torch.float64)
    adv = torch.randn(S * n, 1, generator=g, dtype=torch.float64)
    mask = torch.rand(S * n, T, generator=g) < 0.7
    mask[n:2 * n] = False                                             # an empty block: 0, not NaN
    ratio = torch.exp(x - old)
    blocks = lambda t: t.chunk(S)                                     # noqa: E731
    loop = torch.stack([aggregate(p, m, how, T) for p, m in zip(blocks(x), blocks(mask))])
    torch.testing.assert_close(aggregate(x, mask, how, T, blocks=S), loop)
    kl = approx_kl(x, old, mask, blocks=S)
    assert kl.tolist() == pytest.approx([approx_kl(a, b, m) for a, b, m in zip(blocks(x), blocks(old), blocks(mask))])
    fr = clip_fractions(ratio, adv, mask, 0.2, 0.28, blocks=S)
    for i, (r, a, m) in enumerate(zip(blocks(ratio), blocks(adv), blocks(mask))):
        for k, v in clip_fractions(r, a, m, 0.2, 0.28).items():
            assert fr[k][i].item() == v
    assert kl[1] == 0 and fr["train/clip_frac"][1] == 0

"""The on-policy update back-propagating through the rollout's own forwards
(``sample(..., grad=True)``, ``rollout.reuse_forward_mb``) computes what a separate
training forward over the same tokens computes: the same samples, the same log-probs
and entropies, the same LoRA gradients; and it is used only where it is allowed."""

import pytest
import torch

from workbench.rollout import sample, sampling_graph_bytes, token_logprobs


@pytest.fixture(scope="module")
def setup():
    from embedded_policy import embedded_lora_policy

    from workbench.models.fast_lora import MergedLoRA

    model, tok, rows, seeds = embedded_lora_policy(8, 4, 11)
    kw = dict(max_new_tokens=16, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, group_size=4,
              decode=tok.decode, temperature=0.9)
    return model, MergedLoRA(model), rows, seeds, kw


def _grads(model) -> list[torch.Tensor]:
    out = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    return out


def _loss(logp, ent, ro):
    """An advantage-weighted log-prob sum plus an entropy term, over the completion mask."""
    m = ro.completion_mask.float()
    adv = torch.linspace(-1.0, 1.0, m.shape[0])[:, None]                       # [N, 1] one per row
    return ((adv * logp + 0.1 * ent) * m).sum() / m.sum()


def test_gradients_through_the_rollout_equal_a_training_forward(setup):
    model, fast, rows, seeds, kw = setup
    model.zero_grad(set_to_none=True)
    with fast.shared():
        ro = sample(fast, rows, seeds, grad=True, grad_entropy=True, **kw)
    assert ro.policy_logp.requires_grad and ro.policy_entropy.requires_grad
    assert not ro.sample_logp.requires_grad and not ro.entropy.requires_grad   # the stored record is detached
    _loss(ro.policy_logp, ro.policy_entropy, ro).backward()
    through_rollout = _grads(model)

    with fast.frozen():
        plain = sample(fast, rows, seeds, **kw)
    # the same samples, and the same detached record
    assert torch.equal(plain.completion_ids, ro.completion_ids) and plain.texts == ro.texts
    assert torch.equal(plain.completion_mask, ro.completion_mask)
    assert torch.equal(plain.sample_logp, ro.sample_logp) and torch.equal(plain.entropy, ro.entropy)
    lengths = ro.completion_mask.sum(1)
    assert lengths.min() < 0.75 * lengths.max()                     # rows left the decoding batch early

    with fast.shared():
        logp, ent = token_logprobs(fast, plain, kw["temperature"], with_entropy=True)
    m = plain.completion_mask.bool()
    torch.testing.assert_close(ro.policy_logp[m], logp[m], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ro.policy_entropy[m], ent[m], rtol=1e-4, atol=1e-4)
    assert torch.equal(ro.policy_logp.detach()[m], ro.sample_logp[m])
    assert (ro.policy_logp.detach()[~m] == 0).all()
    _loss(logp, ent, plain).backward()
    training_forward = _grads(model)

    assert len(through_rollout) == len(training_forward) > 0
    for a, b in zip(through_rollout, training_forward):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_processors_cannot_ask_for_the_graph(setup):
    model, fast, rows, seeds, kw = setup
    with pytest.raises(AssertionError, match="processors"):
        sample(fast, rows, seeds, grad=True, processors=[lambda ids, scores: scores], **kw)


def test_kept_history_bound_grows_with_the_square_of_the_length(setup):
    model, fast, rows, seeds, kw = setup
    cfg = model.get_base_model().config
    one = sampling_graph_bytes(model, 1, 0, 1)
    assert one == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4   # K and V, fp32, 1 position
    assert sampling_graph_bytes(model, 8, 0, 1) == 8 * one
    assert sampling_graph_bytes(model, 1, 0, 100) == one * 100 * 101 // 2
    assert sampling_graph_bytes(model, 1, 10, 100) == one * (100 * 10 + 100 * 101 // 2)


def _session(tmp_path, name, **kw):
    from workbench.session import Session

    return Session(workspace=tmp_path / name, steps=2, **{
        "model.name_or_path": "tiny-primes", "rollout.prompts_per_step": 4, "rollout.group_size": 4,
        "eval.every": 0, "eval.n": 2, "eval.max_problems": 2, "eval.seen_problems": 0, "checkpoint_every": 0,
        "seed": 3, **kw})


# the first case turns off the skipping of zero-advantage rows, which with no KL and no
# entropy term takes precedence over the update through the rollout
@pytest.mark.parametrize("extra", [{"optim.skip_zero_advantage": False},
                                   {"loss.entropy_coef": 0.01, "optim.updates_per_batch": 1}])
def test_session_steps_match_with_and_without_reuse(tmp_path, monkeypatch, extra):
    """Two steps with the rollout's graph reused and two with a separate training forward:
    the same samples (so the same rewards), the same losses and gradient norms up to float
    rounding; the reused path really ran (no training forward at update 0)."""
    import workbench.session as session_mod

    calls = []
    real = session_mod.token_logprobs

    def counting(*a, **kw):
        calls.append(torch.is_grad_enabled())
        return real(*a, **kw)

    monkeypatch.setattr(session_mod, "token_logprobs", counting)
    reused = _session(tmp_path, "a", **extra)
    a = [reused.step(), reused.step()]
    grad_forwards_reused = sum(calls)
    calls.clear()
    separate = _session(tmp_path, "b", **{"rollout.reuse_forward_mb": 0, **extra})
    b = [separate.step(), separate.step()]
    grad_forwards_separate = sum(calls)
    updates = separate._updates_per_batch()
    assert grad_forwards_separate == 2 * updates and grad_forwards_reused == 2 * (updates - 1)
    for x, y in zip(a, b):
        for key in ("train/reward_mean", "train/num_tokens", "train/pass@1"):
            assert x[key] == y[key], key
        for key in ("train/loss", "train/grad_norm", "train/kl_old", "train/logp_adv_cov", "train/entropy"):
            assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-6), key


def test_reuse_is_off_when_the_history_exceeds_the_limit(tmp_path, monkeypatch):
    import workbench.session as session_mod

    seen = []
    real = session_mod.sample

    def spy(*a, **kw):
        seen.append(kw.get("grad"))
        return real(*a, **kw)

    monkeypatch.setattr(session_mod, "sample", spy)
    sess = _session(tmp_path, "c", **{"optim.skip_zero_advantage": False})
    need = sampling_graph_bytes(sess.model, 16, 8, sess.max_new_tokens)      # B*G rows, 8 prompt tokens
    sess.config.rollout.reuse_forward_mb = need // 2**20 + 1
    assert sess._reuse_forward([[1] * 8] * 4)
    on = sess.step()
    sess.config.rollout.reuse_forward_mb = 0
    off = sess.step()
    assert seen == [True, False]
    assert on["perf/update_through_rollout"] == 1.0 and off["perf/update_through_rollout"] == 0.0
    sess.config.rollout.reuse_forward_mb = need // 2**20 + 1
    sess.max_new_tokens *= 4                 # 16x the history: over the limit, so a training forward again
    assert not sess._reuse_forward([[1] * 8] * 4)

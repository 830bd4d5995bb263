"""The lean Llama forward computes the Hugging Face model's function: the same samples,
log-probs within float rounding, the same LoRA gradients; it is taken only for models it
reproduces, and any other call falls back to the model's own forward."""

import pytest
import torch

from workbench.models.fast_llama import supports
from workbench.models.fast_lora import MergedLoRA
from workbench.rollout import sample, token_logprobs
from workbench.seeding import row_seed


def _llama(**cfg):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = dict(vocab_size=40, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                tie_word_embeddings=True)
    return LlamaForCausalLM(LlamaConfig(**{**base, **cfg}))


def _lora(model, targets="all-linear"):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))


def _prompts():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(2, 40, (n,), generator=g).tolist() for n in (3, 7, 5, 1)]      # left padding


@pytest.fixture(scope="module")
def policy():
    pm = _lora(_llama())                 # grouped-query attention: 4 query heads, 2 key/value heads
    fast = MergedLoRA(pm)
    assert fast.lean is not None
    return pm, fast


def _both(fast, fn):
    """fn() with the lean forward, then with the Hugging Face forward."""
    lean = fast.lean
    out_lean = fn()
    fast.lean = None
    try:
        out_hf = fn()
    finally:
        fast.lean = lean
    return out_lean, out_hf


def _rollout(fast, grad=False, **kw):
    rows = [p for p in _prompts() for _ in range(3)]
    seeds = [row_seed(4, i) for i in range(len(rows))]
    ctx = fast.shared() if grad else fast.frozen()
    with ctx:
        return sample(fast, rows, seeds, max_new_tokens=12, eos_id=1, pad_id=0, group_size=3, grad=grad, **kw)


def test_samples_and_logprobs_equal_the_model_forward(policy):
    pm, fast = policy
    a, b = _both(fast, lambda: _rollout(fast))
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.completion_mask, b.completion_mask)
    m = a.completion_mask.bool()
    torch.testing.assert_close(a.sample_logp[m], b.sample_logp[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.entropy[m], b.entropy[m], rtol=1e-5, atol=1e-5)

    def teacher_forced():
        with fast.frozen():
            return token_logprobs(fast, b, 1.0, with_entropy=True)

    (lp_a, ent_a), (lp_b, ent_b) = _both(fast, teacher_forced)
    torch.testing.assert_close(lp_a[m], lp_b[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_a[m], ent_b[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lp_a[m], a.sample_logp[m], rtol=1e-4, atol=1e-4)      # teacher forcing = sampling


@pytest.mark.parametrize("through_rollout", [False, True])
def test_lora_gradients_equal_the_model_forward(policy, through_rollout):
    pm, fast = policy
    params = [p for p in pm.parameters() if p.requires_grad]
    ro = _rollout(fast)

    def grads():
        pm.zero_grad(set_to_none=True)
        if through_rollout:
            r = _rollout(fast, grad=True)
            logp, mask = r.policy_logp, r.completion_mask
        else:
            with fast.shared():
                logp, _ = token_logprobs(fast, ro, 1.0)
            mask = ro.completion_mask
        adv = torch.linspace(-1, 1, logp.shape[0])[:, None]
        ((adv * logp * mask).sum() / mask.sum()).backward()
        out = [p.grad.clone() for p in params]
        pm.zero_grad(set_to_none=True)
        return out

    lean, hf = _both(fast, grads)
    assert len(lean) == len(hf) == 2 * 7 * 2                      # A and B of 7 projections in 2 layers
    for x, y in zip(lean, hf):
        assert y.abs().max() > 0
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_calls_it_does_not_take_run_the_model_forward(policy):
    pm, fast = policy
    ids = torch.tensor([[5, 6, 7, 8]])
    with fast.frozen():
        out = fast(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        assert out.hidden_states is not None                     # the Hugging Face output, not the lean one
        lean = fast(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(4)[None])
    torch.testing.assert_close(lean.logits, out.logits, rtol=1e-5, atol=1e-5)
    assert fast.lean.projections is None                         # unbound outside the context


@pytest.mark.parametrize("what, build", [
    ("rotary scaling", lambda: _lora(_llama(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}))),
    ("projection bias", lambda: _lora(_llama(attention_bias=True))),
    ("another activation", lambda: _lora(_llama(hidden_act="gelu"))),
    ("LoRA outside the decoder blocks", lambda: _lora(_llama(tie_word_embeddings=False), ["q_proj", "lm_head"])),
])
def test_models_it_cannot_reproduce_keep_their_own_forward(what, build):
    pm = build()
    assert not supports(pm, [n for n, _ in MergedLoRA(pm).layers]), what
    assert MergedLoRA(pm).lean is None


def test_other_architectures_keep_their_own_forward():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=40, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    assert MergedLoRA(_lora(model)).lean is None


def test_a_subset_of_projections_adapted(policy):
    pm = _lora(_llama(), ["q_proj", "v_proj", "down_proj"])
    fast = MergedLoRA(pm)
    assert fast.lean is not None
    a, b = _both(fast, lambda: _rollout(fast))
    assert torch.equal(a.completion_ids, b.completion_ids)

"""Sampling: log-probs and entropy match a teacher-forced pass, seeds fix samples
independently of batching, EOS stops a row, truncation is reported."""

import pytest
import torch

from workbench.metrics import token_entropy
from workbench.rollout import sample, token_logprobs
from workbench.seeding import row_seed


@pytest.fixture(scope="module")
def model_tok(random_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(random_model_dir)
    model = AutoModelForCausalLM.from_pretrained(random_model_dir).eval()
    return model, tok


def _prompts(tok):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in ["N=040:", "3,5>8:", "N=1:", "12+3=15,N=398:"]]


def test_sampling_logprobs_and_entropy_match_teacher_forcing(model_tok):
    model, tok = model_tok
    prompts = _prompts(tok) * 3                                   # different lengths -> left padding
    seeds = [row_seed(0, i) for i in range(len(prompts))]
    ro = sample(model, prompts, seeds, max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    with torch.no_grad():
        lp, ent = token_logprobs(model, ro, with_entropy=True)
    m = ro.completion_mask.bool()
    assert (lp - ro.sample_logp)[m].abs().max().item() < 1e-4
    assert (ent - ro.entropy)[m].abs().max().item() < 1e-4
    # full-distribution entropy, not -log pi of the sampled token
    assert not torch.allclose(ro.entropy[m], -ro.sample_logp[m])


def test_entropy_against_plain_loop(model_tok):
    model, tok = model_tok
    prompts = _prompts(tok)
    ro = sample(model, prompts, [1, 2, 3, 4], max_new_tokens=5, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    # recompute each row's first-position entropy with an unbatched, unpadded forward
    for i, p in enumerate(prompts):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p])).logits[0, -1]
        probs = torch.softmax(logits, -1)
        h = -sum(float(q) * float(torch.log(q)) for q in probs if q > 0)
        assert ro.entropy[i, 0].item() == pytest.approx(h, abs=1e-4)
        assert token_entropy(logits).item() == pytest.approx(h, abs=1e-4)


def test_samples_depend_on_seed_not_batching(model_tok):
    model, tok = model_tok
    prompts = _prompts(tok)
    seeds = [11, 12, 13, 14]
    full = sample(model, prompts, seeds, max_new_tokens=10, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                  decode=tok.decode)
    alone = sample(model, prompts[2:3], seeds[2:3], max_new_tokens=10, eos_id=tok.eos_token_id,
                   pad_id=tok.pad_token_id, decode=tok.decode)
    assert alone.texts[0] == full.texts[2]
    other = sample(model, prompts, [21, 22, 23, 24], max_new_tokens=10, eos_id=tok.eos_token_id,
                   pad_id=tok.pad_token_id, decode=tok.decode)
    assert other.texts != full.texts


def test_eos_stops_and_truncation_is_reported(model_tok):
    model, tok = model_tok
    prompts = _prompts(tok) * 8
    ro = sample(model, prompts, list(range(len(prompts))), max_new_tokens=6, eos_id=tok.eos_token_id,
                pad_id=tok.pad_token_id)
    for row, m, fin in zip(ro.completion_ids.tolist(), ro.completion_mask.tolist(), ro.finished.tolist()):
        n = sum(m)
        assert m == [1] * n + [0] * (len(m) - n)              # valid tokens form a prefix
        if fin:
            assert row[n - 1] == tok.eos_token_id and tok.eos_token_id not in row[: n - 1]
        else:
            assert n == 6 and tok.eos_token_id not in row[:n]  # truncated at the limit
    assert ro.finished.any() and (~ro.finished).any()          # this random model does both


def test_shared_prefix_forward_equals_the_full_forward(model_tok):
    """Groups of G identical prompts: computing the prompt once per group gives the same
    log-probs, entropies and gradients as the plain forward over every row."""
    import dataclasses

    from transformers import AutoModelForCausalLM

    model, tok = model_tok
    prompts = _prompts(tok)
    G = 3
    rows = [p for p in prompts for _ in range(G)]
    ro = sample(model, rows, list(range(len(rows))), max_new_tokens=7, eos_id=tok.eos_token_id,
                pad_id=tok.pad_token_id, group_size=G)
    assert ro.group_size == G
    plain = dataclasses.replace(ro, group_size=1)
    trainable = AutoModelForCausalLM.from_pretrained(model.name_or_path)

    def run(r):
        trainable.zero_grad()
        lp, ent = token_logprobs(trainable, r, with_entropy=True)
        (lp * r.completion_mask).sum().backward()
        return lp.detach(), ent.detach(), {n: p.grad.clone() for n, p in trainable.named_parameters()}

    lp_s, ent_s, g_s = run(ro)
    lp_p, ent_p, g_p = run(plain)
    m = ro.completion_mask.bool()
    assert (lp_s - lp_p)[m].abs().max().item() < 1e-5
    assert (ent_s - ent_p)[m].abs().max().item() < 1e-5
    for n in g_p:
        assert torch.allclose(g_s[n], g_p[n], atol=1e-5, rtol=1e-4), n
    # and both agree with the sampling log-probs
    assert (lp_s - ro.sample_logp)[m].abs().max().item() < 1e-4


def test_processed_sampling_records_the_exact_kl_to_the_policy(model_tok):
    # with a logits processor the rollout keeps KL(sampling dist || policy) per position,
    # here checked against a teacher-forced forward and the processor's fixed bias
    model, tok = model_tok
    V = model.config.vocab_size
    bias = torch.linspace(-2.0, 2.0, V)

    def proc(history, scores):
        return scores + bias

    prompts = _prompts(tok) * 2
    ro = sample(model, prompts, list(range(len(prompts))), max_new_tokens=6, eos_id=tok.eos_token_id,
                pad_id=tok.pad_token_id, temperature=0.8, processors=[proc])
    plain = sample(model, prompts, list(range(len(prompts))), max_new_tokens=6, eos_id=tok.eos_token_id,
                   pad_id=tok.pad_token_id, temperature=0.8)
    assert plain.sample_kl is None                                           # on-policy: nothing to measure
    ids = torch.cat([ro.prompt_ids, ro.completion_ids], 1)
    mask = torch.cat([ro.prompt_mask, ro.completion_mask], 1)
    T = ro.completion_ids.shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -(T + 1):-1] / 0.8
    lp = torch.log_softmax(logits, -1)
    lq = torch.log_softmax(logits + bias, -1)
    want = (lq.exp() * (lq - lp)).sum(-1)                                    # [N, T]
    m = ro.completion_mask.bool()
    assert (ro.sample_kl[m] - want[m]).abs().max().item() < 1e-4
    assert ro.sample_kl[m].min().item() > 0 and (ro.sample_kl[~m] == 0).all()


def test_dropping_stopped_rows_from_the_batch_changes_no_sample():
    """The embedded model stops at different lengths, so rows leave the decoding batch
    (compact) while others go on; every row's tokens, log-probs and entropies are those of
    the full-batch loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.paths import MODELS_DIR
    from workbench.tasks import get_task

    path = MODELS_DIR / "tiny-primes"
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    task = get_task("two_primes")
    prompts = [tok(task.prompt(p), add_special_tokens=False)["input_ids"] for p in task.load_split("train")[:8]]
    rows = [p for p in prompts for _ in range(4)]
    seeds = [row_seed(5, i) for i in range(len(rows))]
    kw = dict(max_new_tokens=16, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, group_size=4, decode=tok.decode)
    fast, full = sample(model, rows, seeds, **kw), sample(model, rows, seeds, compact=False, **kw)
    lengths = fast.completion_mask.sum(1)
    assert lengths.min() < 0.75 * lengths.max() and bool(fast.finished.any())        # rows did leave early
    assert torch.equal(fast.completion_ids, full.completion_ids) and fast.texts == full.texts
    assert torch.equal(fast.completion_mask, full.completion_mask) and torch.equal(fast.finished, full.finished)
    torch.testing.assert_close(fast.sample_logp, full.sample_logp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.entropy, full.entropy, rtol=1e-5, atol=1e-6)


def test_length_buckets_split_where_padding_is_saved():
    from workbench.rollout.sampling import _length_buckets

    assert _length_buckets([5, 5, 5, 5], 5) is None                              # one width: one forward
    assert _length_buckets([1, 5, 5, 5], 5) == [([0], 1), ([1, 2, 3], 5)]        # EOS first: no forward
    rows = _length_buckets([2, 2, 2, 2, 2, 2, 9, 9], 9)
    assert rows == [([0, 1, 2, 3, 4, 5], 2), ([6, 7], 9)]
    assert _length_buckets([8, 9, 8, 9], 9) is None                              # saving < a tenth: not split


def test_bucketed_teacher_forcing_equals_one_full_width_forward(monkeypatch):
    """Log-probs and their gradients do not depend on how the completion rows are grouped."""
    import workbench.rollout.sampling as sampling
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.paths import MODELS_DIR
    from workbench.tasks import get_task

    path = MODELS_DIR / "tiny-primes"
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    task = get_task("two_primes")
    prompts = [tok(task.prompt(p), add_special_tokens=False)["input_ids"] for p in task.load_split("train")[:8]]
    rows = [p for p in prompts for _ in range(4)]
    with torch.no_grad():
        ro = sample(model, rows, [row_seed(9, i) for i in range(len(rows))], max_new_tokens=16,
                    eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, group_size=4)
    m = ro.completion_mask.bool()
    assert len(sampling._length_buckets(m.sum(1).tolist(), m.shape[1]) or []) >= 2   # the bucketed path runs
    lora = [p for p in model.parameters() if p.requires_grad]

    def run():
        lp, ent = token_logprobs(model, ro, with_entropy=True)
        grads = torch.autograd.grad((lp * m).sum(), lora)
        return lp.detach(), ent.detach(), grads

    lp, ent, grads = run()
    monkeypatch.setattr(sampling, "_length_buckets", lambda lengths, T: None)
    lp_full, ent_full, grads_full = run()
    torch.testing.assert_close(lp[m], lp_full[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent[m], ent_full[m], rtol=1e-5, atol=1e-5)
    for g, g_full in zip(grads, grads_full):
        assert ((g - g_full).norm() / g_full.norm()).item() < 1e-5, ((g - g_full).norm() / g_full.norm()).item()

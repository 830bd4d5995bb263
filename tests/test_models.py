"""Model loading: local folders like Hub models, chat templates, LoRA, the reference policy."""

from __future__ import annotations

import pytest
import torch

from workbench.config import LoraConfig, ModelConfig
from workbench.errors import ConfigError
from workbench.models import add_lora, encode_prompts, load_model_and_tokenizer
from workbench.session import Session
from workbench.tasks import get_task

TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def test_chat_template_is_applied_when_the_tokenizer_has_one(random_model_dir, tmp_path):
    model, tok, info = load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir)))
    assert info["chat_template"] is False and info["local"] is True
    task = get_task("two_primes")
    prob = task.load_split("eval")[0]
    raw = encode_prompts(tok, task, [prob], use_chat=False)[0]
    assert tok.decode(raw) == task.prompt(prob)

    tok.chat_template = TEMPLATE
    tok.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    _, tok2, info2 = load_model_and_tokenizer(ModelConfig(name_or_path=str(tmp_path)))
    assert info2["chat_template"] is True
    chat = tok2.decode(encode_prompts(tok2, task, [prob], use_chat=True)[0])
    assert chat.startswith("<|user|>") and task.instruction(prob) in chat and chat.endswith("<|assistant|>")
    with pytest.raises(ConfigError, match="has no chat template"):
        load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir), chat_template="on"))


def test_reference_policy_is_the_adapter_disabled(random_model_dir):
    model, tok, _ = load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir)))
    x = torch.tensor([tok("N=040:3+37")["input_ids"]])
    with torch.no_grad():
        base = model(input_ids=x).logits.clone()
    peft_model = add_lora(model, LoraConfig(rank=4, targets="q_proj,v_proj"))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in names)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)
        adapted = peft_model(input_ids=x).logits
        with peft_model.disable_adapter():
            ref = peft_model(input_ids=x).logits
    assert torch.allclose(ref, base, atol=1e-6)
    assert not torch.allclose(adapted, base, atol=1e-3)
    with pytest.raises(ConfigError, match="lora.targets"):
        add_lora(load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir)))[0],
                 LoraConfig(targets="no_such_module"))


def test_dataset_backed_task_trains_on_a_random_weight_model(random_model_dir, tmp_path):
    """GSM8K-style records from the shipped local file, a model loaded from a folder as
    from the Hub: one real step, stored."""
    sess = Session(workspace=str(tmp_path / "runs"), steps=1, **{
        "model.name_or_path": str(random_model_dir), "task.name": "gsm8k", "rollout.prompts_per_step": 2,
        "rollout.group_size": 2, "rollout.max_new_tokens": 6, "eval.n": 2, "eval.max_problems": 2,
        "eval.seen_problems": 0})
    recs = list(sess.run())
    assert recs[0]["train/num_tokens"] > 0
    assert sess.store.get_run(sess.run_id)["config"]["resolved"]["model"]["local"] is True


def _adapted_random_model(random_model_dir):
    """The random model with a rank-4 adapter whose B is not zero (so the adapter changes
    the output), and two encoded prompts [2, L]."""
    model, tok, _ = load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir)))
    pm = add_lora(model, LoraConfig(rank=4))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return pm, torch.tensor([tok("N=040:3+37")["input_ids"], tok("N=012:5+7<")["input_ids"]])


def test_merged_lora_forward_matches_peft_and_leaves_the_base_alone(random_model_dir):
    from workbench.models.fast_lora import MergedLoRA

    pm, x = _adapted_random_model(random_model_dir)
    base_before = {n: p.detach().clone() for n, p in pm.named_parameters() if not p.requires_grad}
    fast = MergedLoRA(pm)
    assert fast.usable and len(fast.layers) > 0

    def grads(fn):
        pm.zero_grad()
        out = fn(input_ids=x).logits
        out.float().logsumexp(-1).mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in pm.named_parameters() if p.requires_grad}

    ref_out, ref_g = grads(pm)
    fast_out, fast_g = grads(fast)
    assert torch.allclose(ref_out, fast_out, atol=1e-4)
    for n in ref_g:
        assert torch.allclose(ref_g[n], fast_g[n], atol=1e-5, rtol=1e-3), n
    with fast.frozen(), torch.no_grad():
        assert torch.allclose(fast(input_ids=x).logits, ref_out, atol=1e-4)
    for n, p in pm.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, base_before[n]), n
    with torch.no_grad():
        adapted = pm(input_ids=x).logits                          # the adapter is enabled again afterwards
    assert torch.allclose(adapted, ref_out, atol=1e-5)
    pm2 = add_lora(load_model_and_tokenizer(ModelConfig(name_or_path=str(random_model_dir)))[0],
                   LoraConfig(rank=4, dropout=0.1))
    assert not MergedLoRA(pm2).usable                             # dropout on the adapter input: plain PEFT path


def test_merged_lora_training_forward_gives_peft_gradients_through_the_rank_r_path(random_model_dir):
    """Inside ``shared()`` with gradients on, the merged layers back-propagate to A and B
    through the rank-r factors (no [out, in] weight gradient); the gradients are PEFT's."""
    from workbench.models import fast_lora
    from workbench.models.fast_lora import MergedLoRA

    pm, x = _adapted_random_model(random_model_dir)
    fast = MergedLoRA(pm)
    assert fast._rank_grads
    calls = []
    real = fast_lora._LoRAMerged.backward

    def counted(ctx, dy):
        calls.append(dy.shape)
        return real(ctx, dy)

    def grads(run):
        pm.zero_grad()
        out = run()
        out.float().logsumexp(-1).mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in pm.named_parameters() if p.requires_grad}

    def merged():
        with fast.shared():
            return fast(input_ids=x).logits

    ref_out, ref_g = grads(lambda: pm(input_ids=x).logits)
    fast_lora._LoRAMerged.backward = staticmethod(counted)
    try:
        out, g = grads(merged)
    finally:
        fast_lora._LoRAMerged.backward = staticmethod(real)
    assert len(calls) == len(fast.layers)                         # every adapted layer took the rank-r path
    assert torch.allclose(ref_out, out, atol=1e-4)
    for n in ref_g:
        assert torch.allclose(ref_g[n], g[n], atol=1e-5, rtol=1e-3), n
    assert all("forward" not in vars(mod.base_layer) for _, mod in fast.layers)   # the layers are plain again

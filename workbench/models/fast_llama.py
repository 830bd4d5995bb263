"""A lean forward for Llama-architecture policies, used inside ``MergedLoRA.shared()`` and
``frozen()`` (rollouts and the training forward).

The Hugging Face forward of a small model spends much of a decoding step outside the
matrix products: per-layer module calls, the rotary table recomputed on every forward,
the attention mask rebuilt from scratch, seven separate projections per layer, each its
own autograd node. This forward computes the same function with fewer operations:

- the query/key/value projections are one matrix product against their merged weights
  stacked ([q; k; v]), and so are the gate and up projections ([gate; up]); their LoRA
  gradients are still computed per adapted layer, through the rank-r factors
  (``_StackedLoRA``);
- the rotary cos/sin come from a table indexed by position (the same float operations,
  element by element, as the Hugging Face rotary module);
- the attention mask is the padding mask and the causal triangle, built once per forward.

The result equals the Hugging Face model's forward up to float rounding (the stacked
products round differently from separate ones), checked in ``tests/test_fast_llama.py``.
Only what the module can reproduce exactly is taken: ``LlamaForCausalLM`` with the default
rotary embedding, no projection biases, SiLU, no attention dropout, and LoRA on (a subset
of) the seven linear layers of the decoder blocks. Anything else runs the Hugging Face
forward unchanged. Callers pass what ``sample`` and ``token_logprobs`` pass: input ids, the
attention mask over every key (cached and new), position ids and a ``DynamicCache``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.models.fast_lora import rank_grads

#: The groups of projections that share their input and so become one product.
GROUPS = {"self_attn": [("q_proj", "k_proj", "v_proj"), ("o_proj",)], "mlp": [("gate_proj", "up_proj"), ("down_proj",)]}


@dataclass
class LeanOutput:
    logits: torch.Tensor


def supports(peft_model, adapted: list[str]) -> bool:
    """Whether the lean forward reproduces this model exactly (see the module docstring);
    ``adapted`` names the LoRA layers (``model.layers.3.self_attn.q_proj``-like suffixes)."""
    try:
        from transformers import LlamaForCausalLM
    except ImportError:  # pragma: no cover
        return False
    base = peft_model.get_base_model()
    if type(base) is not LlamaForCausalLM:
        return False
    cfg = base.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if (rope.get("rope_type", rope.get("type", "default")) != "default" or getattr(cfg, "attention_bias", False)
            or getattr(cfg, "mlp_bias", False) or cfg.hidden_act != "silu" or float(cfg.attention_dropout or 0) != 0
            or getattr(cfg, "pretraining_tp", 1) != 1 or base.model.rotary_emb.attention_scaling != 1.0):
        return False
    allowed = {f"layers.{i}.{part}.{proj}" for i in range(cfg.num_hidden_layers)
               for part, groups in GROUPS.items() for g in groups for proj in g}
    return all(any(name.endswith(a) for a in allowed) for name in adapted)


class LeanLlama:
    """Callable like the model for the arguments ``sample``/``token_logprobs`` use; the
    projection weights are bound by ``MergedLoRA`` for the length of a context."""

    def __init__(self, peft_model):
        self.base = peft_model.get_base_model()
        self.cfg = self.base.config
        self.inner = self.base.model
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.projections: list[dict[str, object]] | None = None   # per layer: group name -> callable

    # ------------------------------------------------------------------ weights
    def bind(self, weight_of, lora_of=None) -> list | None:
        """Stack each group's weights and keep the callables the forward uses; returns what
        was bound before (for ``unbind``). ``weight_of(module)``: a projection's weight
        (merged where adapted); ``lora_of(module)``: (A, B, s*A, s*B) of an adapted layer
        whose gradients are wanted, else None."""
        before, self.projections = self.projections, []
        for layer in self.inner.layers:
            per = {}
            for part, groups in GROUPS.items():
                for group in groups:
                    mods = [getattr(getattr(layer, part), proj) for proj in group]
                    w = [weight_of(m) for m in mods]
                    pieces = [lora_of(m) if lora_of is not None else None for m in mods]
                    per[group[0]] = _Projection(w[0] if len(w) == 1 else torch.cat(w), [t.shape[0] for t in w],
                                                pieces if any(p is not None for p in pieces) else None)
            self.projections.append(per)
        return before

    def unbind(self, before: list | None = None) -> None:
        self.projections = before

    # ------------------------------------------------------------------ forward
    #: the arguments ``sample`` and ``token_logprobs`` pass; any other call runs the model's own forward
    ARGS = frozenset({"input_ids", "attention_mask", "position_ids", "use_cache", "logits_to_keep", "cache",
                      "past_key_values"})

    def takes(self, kwargs: dict) -> bool:
        return (kwargs.keys() <= self.ARGS and kwargs.get("position_ids") is not None
                and kwargs.get("attention_mask") is not None and kwargs.get("input_ids") is not None)

    def __call__(self, input_ids, attention_mask, position_ids, use_cache=True, logits_to_keep=0, **kw):
        cache = kw.get("cache", kw.get("past_key_values"))
        n, q = input_ids.shape
        cfg = self.cfg
        H, KVH = cfg.num_attention_heads, cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
        h = self.inner.embed_tokens(input_ids)                                     # [n, q, d]
        cos, sin = self._rotary(position_ids, h.dtype, h.device)                    # [n, 1, q, hd]
        mask = _attention_mask(attention_mask, q)                                  # [n, 1, q, L]
        for i, layer in enumerate(self.inner.layers):
            proj = self.projections[i]
            attn = layer.self_attn
            x = _rms(h, layer.input_layernorm)
            qs, ks, vs = proj["q_proj"](x)
            qs = _rotate(qs.view(n, q, H, hd).transpose(1, 2), cos, sin)           # [n, H, q, hd]
            ks = _rotate(ks.view(n, q, KVH, hd).transpose(1, 2), cos, sin)         # [n, KVH, q, hd]
            vs = vs.view(n, q, KVH, hd).transpose(1, 2)
            if cache is not None:
                ks, vs = cache.update(ks, vs, i)                                    # [n, KVH, L, hd]
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=attn.scaling,
                                               enable_gqa=H != KVH)                # [n, H, q, hd]
            (o,) = proj["o_proj"](o.transpose(1, 2).reshape(n, q, H * hd))
            h = h + o
            x = _rms(h, layer.post_attention_layernorm)
            gate, up = proj["gate_proj"](x)
            (down,) = proj["down_proj"](F.silu(gate) * up)
            h = h + down
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        return LeanOutput(self.base.lm_head(_rms(h, self.inner.norm)))

    def _rotary(self, position_ids, dtype, device):
        """cos, sin [n, 1, q, hd] from a table over positions, computed as the Hugging Face
        rotary module computes them for each position (so the values are identical)."""
        top = int(position_ids.max()) + 1 if position_ids.numel() else 1
        key = (dtype, device)
        table = self._tables.get(key)
        if table is None or table[0].shape[0] < top:
            size = max(top, 2 * (table[0].shape[0] if table is not None else 64))
            rot = self.inner.rotary_emb
            freqs = torch.arange(size, device=device)[:, None].float() * rot.inv_freq.to(device=device, dtype=torch.float)
            emb = torch.cat((freqs, freqs), dim=-1)
            table = ((emb.cos() * rot.attention_scaling).to(dtype), (emb.sin() * rot.attention_scaling).to(dtype))
            self._tables[key] = table
        return table[0][position_ids].unsqueeze(1), table[1][position_ids].unsqueeze(1)


class _Projection:
    """One product for a group of projections that share their input; returns the group's
    outputs (views of the product)."""

    def __init__(self, weight, sizes, lora):
        self.weight, self.sizes, self.lora = weight, sizes, lora

    def __call__(self, x):
        if self.lora is not None and torch.is_grad_enabled():
            y = _StackedLoRA.apply(x, self.weight, self.sizes, self.lora,
                                   *[t for p in self.lora if p is not None for t in p[:2]])
        else:
            y = F.linear(x, self.weight)
        return y.split(self.sizes, dim=-1) if len(self.sizes) > 1 else (y,)


class _StackedLoRA(torch.autograd.Function):
    """y = x W'^T with W' the group's merged weights stacked; backward: the input gradient
    through W', and each adapted layer's LoRA gradients through its rank-r factors from its
    slice of dy: dA = (dy_i (sB))^T x, dB = dy_i^T (x (sA)^T), as ``fast_lora._LoRAMerged``.
    Inputs after ``lora``: (A, B) of each adapted layer in order, so autograd routes their
    gradients."""

    @staticmethod
    def forward(ctx, x, weight, sizes, lora, *factors):
        ctx.save_for_backward(x, weight)
        ctx.sizes, ctx.lora = sizes, lora
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx = dy @ weight if ctx.needs_input_grad[0] else None                  # [..., in]
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])    # [n, in], [n, out]
        grads, start = [], 0
        for size, piece in zip(ctx.sizes, ctx.lora):
            if piece is not None:
                _, _, sa, sb = piece
                grads += rank_grads(x2, dy2[:, start : start + size], sa, sb)  # dA [r, in], dB [out_i, r]
            start += size
        return (dx, None, None, None, *grads)


def _rms(x, norm):
    """The Hugging Face Llama RMSNorm, operation for operation."""
    dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * x.to(dtype)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return (x * cos) + (torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin)


def _attention_mask(attention_mask, q: int) -> torch.Tensor:
    """[n, 1, q, L] bool: key j is seen by query i (the last q of L positions) when it is
    not padding and not in the future. A padding query also sees itself, so that no row of
    the softmax is empty (its output is never used: padding keys are masked for the rest)."""
    n, L = attention_mask.shape
    keys = attention_mask.bool()[:, None, None, :]                               # [n, 1, 1, L]
    idx = torch.arange(L, device=attention_mask.device)
    qpos = idx[L - q :, None]                                                    # [q, 1]
    return (keys & (idx[None, :] <= qpos)) | (idx[None, :] == qpos)             # [n, 1, q, L]

"""A faster forward for LoRA policies: merge each adapter into its layer's weight on the fly.

PEFT computes every adapted linear as  W x + s * B (A x): three matmuls and a Python-level
wrapper per layer. For the workbench's own steps (rollouts and the training forward) it
is cheaper to form W' = W + s * B A once per forward and run the plain layer: one matmul,
and gradients still reach A and B through W'. The base weights are never modified (the
merged tensors are temporaries that stand in for the base weights, with the adapter
disabled, only while a forward runs), so the reference policy — the same model with the
adapter disabled — stays exact. Inside ``frozen()`` / ``shared()`` they stand in once for
all the forwards (e.g. every decoding step of a rollout); a lone call swaps them in
through ``torch.func.functional_call``.

The two forms differ only by float rounding (~1e-6 relative in float32; a few units of the
half type's precision with bfloat16 or float16 weights, see ``merged_weights``). Used when the
LoRA dropout is 0 (dropout acts on the adapter's input alone, which a merged weight
cannot express); otherwise the plain PEFT forward runs.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch.func import functional_call


class MergedLoRA:
    """Callable like the model: ``fast(input_ids=..., attention_mask=..., ...)``."""

    def __init__(self, peft_model, adapter: str = "default"):
        from peft.tuners.lora import Linear as LoraLinear

        self.model, self.adapter = peft_model, adapter
        self.layers = [(name, mod) for name, mod in peft_model.named_modules()
                       if isinstance(mod, LoraLinear) and adapter in mod.lora_A]
        self.usable = bool(self.layers) and all(
            isinstance(mod.lora_dropout[adapter], torch.nn.Identity) and not mod.use_dora.get(adapter, False)
            for _, mod in self.layers)
        self._disabled = 0
        self._cached: dict[str, torch.Tensor] | None = None
        self._merged: tuple[list, dict[str, torch.Tensor]] | None = None   # (versions, weights) of the last no-grad merge
        # swapping the merged weights in by hand skips functional_call's walk over every module
        # on each forward; only safe when no adapted weight is tied to another parameter
        counts: dict[int, int] = {}
        for _, p in peft_model.named_parameters(remove_duplicate=False):
            counts[id(p)] = counts.get(id(p), 0) + 1
        self._swappable = all(counts.get(id(mod.base_layer.weight), 0) <= 1 for _, mod in self.layers)
        # turning the adapted layers off by their flag skips PEFT's disable_adapter(), which
        # checks the whole model's adapter status (a walk over every module) on each entry
        from peft.tuners.tuners_utils import BaseTunerLayer

        ours = {id(mod) for _, mod in self.layers}
        self._flag_only = all(id(m) in ours for m in peft_model.modules() if isinstance(m, BaseTunerLayer))
        # the rank-r gradient path (see _LoRAMerged) for plain float32 LoRA layers
        self._rank_grads = self._flag_only and self._swappable and all(
            mod.base_layer.weight.dtype == mod.lora_A[adapter].weight.dtype == mod.lora_B[adapter].weight.dtype
            and not getattr(mod, "fan_in_fan_out", False) and not mod.lora_bias.get(adapter, False)
            and (mod.base_layer.bias is None or not mod.base_layer.bias.requires_grad)
            for _, mod in self.layers)
        # the lean forward for Llama-architecture models it reproduces (models/fast_llama.py)
        from workbench.models import fast_llama

        self.lean = (fast_llama.LeanLlama(peft_model) if self._rank_grads
                     and fast_llama.supports(peft_model, [name for name, _ in self.layers]) else None)
        self._adapted = {id(mod): name for name, mod in self.layers}

    def merged_weights(self) -> dict[str, torch.Tensor]:
        """W + s*B@A per adapted layer, in W's dtype (differentiable in A and B; call with the
        adapter enabled).

        With half-precision base weights (bfloat16, float16) PEFT keeps A and B in float32 for
        the optimiser, so the product is float32: it is cast to W's dtype before the sum (the
        cast passes gradients back in float32), otherwise the merged weight would be float32
        while the activations are half precision. The sum rounds to W's precision, as the
        activations do in PEFT's own forward.
        """
        if not torch.is_grad_enabled():   # the same factors give the same sums: reuse the last ones
            key = self._versions()
            if self._merged is not None and _same(self._merged[0], key):
                return dict(self._merged[1])
        out = {}
        for name, mod in self.layers:
            w = mod.base_layer.weight
            out[f"{name}.base_layer.weight"] = w + mod.get_delta_weight(self.adapter).to(w.dtype)
        if not torch.is_grad_enabled():
            self._merged = (key, dict(out))
        return out

    def _versions(self) -> list:
        """Every tensor a merged weight is made of, with its in-place version, and the
        scaling: an optimiser step, a load or a swap of a weight changes one of them."""
        out: list = []
        for _, mod in self.layers:
            for t in (mod.base_layer.weight, mod.lora_A[self.adapter].weight, mod.lora_B[self.adapter].weight):
                out += (t, t._version)
            out.append(float(mod.scaling[self.adapter]))
        return out

    @contextlib.contextmanager
    def session(self):
        """Disable the PEFT adapter once around many forwards (entering it walks every module)."""
        if not self.usable:
            yield self
            return
        if self._disabled:
            self._disabled += 1
            try:
                yield self
            finally:
                self._disabled -= 1
            return
        if self._flag_only:
            before = [mod._disable_adapters for _, mod in self.layers]
            for _, mod in self.layers:
                mod._disable_adapters = True
            self._disabled = 1
            try:
                yield self
            finally:
                self._disabled = 0
                for (_, mod), was in zip(self.layers, before):
                    mod._disable_adapters = was
            return
        with self.model.disable_adapter():
            self._disabled = 1
            try:
                yield self
            finally:
                self._disabled = 0

    @contextlib.contextmanager
    def frozen(self):
        """Merge once (no gradient) for many forwards, e.g. every decoding step of a rollout."""
        with torch.no_grad():
            with self.shared():
                yield self

    @contextlib.contextmanager
    def shared(self):
        """Merge once for the forwards inside (with gradients to A and B when enabled),
        e.g. the prompt and completion passes of one training forward."""
        if not self.usable:
            yield self
            return
        if self._rank_grads and torch.is_grad_enabled():
            with torch.no_grad():
                weights = self.merged_weights()
            factors = {}                          # id(layer) -> (A, B, sA, sB), for the lean forward
            with self.session():
                self._cached = weights
                for name, mod in self.layers:     # an instance attribute shadows Linear.forward
                    a, b = mod.lora_A[self.adapter].weight, mod.lora_B[self.adapter].weight
                    with torch.no_grad():         # s*A and s*B: the backward's products come out scaled
                        s = float(mod.scaling[self.adapter])
                        scaled = (a * s, b * s)
                    mod.base_layer.forward = functools.partial(
                        _LoRAMerged.apply_to, weights[f"{name}.base_layer.weight"], mod.base_layer.bias, a, b, scaled)
                    factors[id(mod)] = (a, b, *scaled)
                lean = self._bind_lean(weights, factors)
                try:
                    yield self
                finally:
                    self._cached = None
                    if self.lean is not None:
                        self.lean.unbind(lean)
                    for _, mod in self.layers:
                        del mod.base_layer.forward
            return
        weights = self.merged_weights()
        with self.session():
            self._cached, swapped = weights, self._swap_in(weights) if self._swappable else None
            lean = self._bind_lean(weights, None)
            try:
                yield self
            finally:
                self._cached = None
                if self.lean is not None:
                    self.lean.unbind(lean)
                if swapped is not None:
                    self._swap_in(swapped)

    def _bind_lean(self, weights: dict[str, torch.Tensor], factors: dict[int, tuple] | None):
        """Give the lean forward this context's weights (merged where adapted) and, for
        gradients, the adapted layers' LoRA factors (id(layer) -> (A, B, sA, sB)); returns
        what it had before."""
        if self.lean is None:
            return None

        def weight_of(m):
            name = self._adapted.get(id(m))
            return weights[f"{name}.base_layer.weight"] if name is not None else m.weight

        return self.lean.bind(weight_of, (lambda m: factors.get(id(m))) if factors is not None else None)

    def _swap_in(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Put ``weights`` (by parameter name) in the base layers; returns what they replace."""
        old = {}
        for name, mod in self.layers:
            key = f"{name}.base_layer.weight"
            old[key] = mod.base_layer._parameters["weight"]
            mod.base_layer._parameters["weight"] = weights[key]
        return old

    def __call__(self, **kwargs):
        if not self.usable:
            return self.model(**kwargs)
        if self.lean is not None and self.lean.projections is not None and self.lean.takes(kwargs):
            return self.lean(**kwargs)
        # merge before disabling: PEFT's disable_adapter() also turns off requires_grad on A and B
        if self._cached is not None and self._swappable:     # inside shared(): already in place
            return self.model(**kwargs)
        weights = self._cached if self._cached is not None else self.merged_weights()
        with self.session():
            return functional_call(self.model, weights, args=(), kwargs=kwargs, strict=False)

    # the parts of the model interface that the rollout code uses
    def parameters(self):
        return self.model.parameters()

    def get_base_model(self):
        return self.model.get_base_model()

    @property
    def training(self) -> bool:
        return self.model.training

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def eval(self):
        return self.train(False)


def _same(a: list, b: list) -> bool:
    """Whether two ``_versions`` lists name the same tensors (by identity) at the same versions."""
    return len(a) == len(b) and all(x is y if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b))


class _LoRAMerged(torch.autograd.Function):
    """y = x W'^T + bias with W' = W + s*B@A merged (one matmul forward), and in backward the
    LoRA gradients through the rank-r factors: dB = dy^T (x (sA)^T), dA = (dy (sB))^T x, with
    sA = s*A and sB = s*B formed once per ``shared()`` (scaling the rank-r factors, not dy).
    Autograd through the merged weight would form dW' = dy^T x, a full [out, in] matmul per
    layer, and only then reduce it to A and B: r*(in + out) against in*out multiply-adds per
    token, which for r = 16 and a 128 x 384 layer is a third. The input gradient uses W'.
    Shapes: x [..., in], W' [out, in], A [r, in], B [out, r]."""

    @staticmethod
    def apply_to(weight, bias, lora_a, lora_b, scaled, x):
        return _LoRAMerged.apply(x, weight, bias, lora_a, lora_b, *scaled)

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaled_a, scaled_b):
        ctx.save_for_backward(x, weight, scaled_a, scaled_b)
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight, sa, sb = ctx.saved_tensors
        dx = dy @ weight if ctx.needs_input_grad[0] else None                  # [..., in]
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])    # [n, in], [n, out]
        da, db = rank_grads(x2, dy2, sa, sb, ctx.needs_input_grad[3], ctx.needs_input_grad[4])
        return dx, None, None, da, db, None, None


def rank_grads(x2: torch.Tensor, dy2: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor,
               want_a: bool = True, want_b: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The LoRA gradients of one adapted layer through its rank-r factors: dA = (dy (sB))^T x
    [r, in] and dB = dy^T (x (sA)^T) [out, r], from x [n, in] and dy [n, out]."""
    da = (dy2 @ sb).T @ x2 if want_a else None
    db = dy2.T @ (x2 @ sa.T) if want_b else None
    return da, db

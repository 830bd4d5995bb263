"""Batched sampling with a KV cache: G samples per prompt, their sampling log-probs and
the full-distribution entropy at every generated position.

Shapes (the project's glossary): B prompts, G samples per prompt, N = B*G sequences,
P padded prompt width, T generated positions, V vocabulary.

Sampling is by inverse CDF from uniforms drawn per *row* from that row's own seed, so a
sample depends only on (its seed, the model), not on batching: evaluation points reuse
the same seeds (common random numbers) and a resumed run redraws exactly what it lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from workbench.metrics import distribution_entropy, distribution_kl

#: A logits processor: (input_ids [N, L] so far, scores [N, V]) -> adjusted scores [N, V].
#: Same call signature as Hugging Face's LogitsProcessor; DLC's memory network plugs in here.
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Rollout:
    """One batch of sampled completions (rows ordered prompt-major: row = b*G + g)."""

    prompt_ids: torch.Tensor       # [N, P] left-padded with pad_id
    prompt_mask: torch.Tensor      # [N, P] 1 on real prompt tokens
    completion_ids: torch.Tensor   # [N, T] right-padded with pad_id after EOS
    completion_mask: torch.Tensor  # [N, T] 1 on generated tokens, EOS included
    sample_logp: torch.Tensor      # [N, T] log-prob of each token under the distribution it was sampled from (pi_old)
    entropy: torch.Tensor          # [N, T] full-distribution entropy of the sampling policy at each position
    finished: torch.Tensor         # [N] bool: stopped at EOS (else truncated at max_new_tokens)
    texts: list[str]               # decoded completions, EOS and padding stripped
    group_size: int = 1            # rows come in groups of this many identical prompts
    sample_kl: torch.Tensor | None = None  # [N, T] KL(sampling dist || policy) per position; None = on-policy
    # with ``sample(..., grad=True)``: the policy's log-probs of the sampled tokens and (if asked)
    # their entropy, [N, T], still attached to the sampling forwards' autograd graph (0 off the mask)
    policy_logp: torch.Tensor | None = None
    policy_entropy: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def select(self, idx: torch.Tensor) -> "Rollout":
        """The rows ``idx`` (ascending) as a rollout of their own, the completions trimmed to
        the longest of them. Rows that form whole groups keep the group size (so their
        prompts are still computed once per group); otherwise the group size is 1."""
        G = self.group_size
        groups = idx.view(-1, G) if G > 1 and len(idx) % G == 0 else None
        whole = groups is not None and bool((groups == groups[:, :1] + torch.arange(G, device=idx.device)).all()) and \
            bool((groups[:, 0] % G == 0).all())
        width = int(self.completion_mask[idx].sum(1).max()) if len(idx) else 0
        kw = {}
        for k, v in self.__dict__.items():
            if isinstance(v, torch.Tensor):
                v = v[idx]
                if k not in ("prompt_ids", "prompt_mask", "finished"):
                    v = v[:, :width]
            elif k == "texts":
                v = [v[i] for i in idx.tolist()]
            kw[k] = v
        kw["group_size"] = G if whole else 1
        return Rollout(**kw)

    def to(self, device) -> "Rollout":
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Rollout(**kw)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, P] ids and mask with every sequence right-aligned."""
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in seqs], dtype=torch.long).view(len(seqs), width)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long).view(len(seqs), width)
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: [N, L] from a [N, L] attention mask."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _accepts(model, name: str) -> bool:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def _cache_kwarg(model) -> str:
    """Newer transformers name the KV cache argument ``cache``; older ones ``past_key_values``."""
    return "cache" if _accepts(model, "cache") else "past_key_values"


def sample(
    model,
    prompts: Sequence[Sequence[int]],
    seeds: Sequence[int],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    processors: Sequence[LogitsProcessor] = (),
    decode: Callable[[list[int]], str] | None = None,
    group_size: int = 1,
    compact: bool = True,
    grad: bool = False,
    grad_entropy: bool = False,
) -> Rollout:
    """Sample one completion per entry of ``prompts`` (repeat a prompt G times for a group).

    ``seeds[i]`` fixes row i's uniforms. Stops when every row has produced EOS or after
    ``max_new_tokens``. With ``group_size`` G > 1 the rows come in groups of G identical
    prompts: each prompt is prefilled once and its KV cache repeated G times. With processors, ``sample_logp`` is the log-prob under the
    adjusted distribution the token was really drawn from (off-policy sampling), and
    ``sample_kl`` the exact KL(adjusted || policy) over the vocabulary at each position.
    ``compact``: drop stopped rows from the decoding batch (not with processors); the
    result is the same, the work less when completions differ in length.

    ``grad``: record the sampling forwards for autograd (call inside ``MergedLoRA.shared()``,
    not ``frozen()``) and return the policy's log-probs of the sampled tokens still attached
    to them (``policy_logp``; ``policy_entropy`` too with ``grad_entropy``), so that an
    on-policy update can back-propagate through the rollout itself instead of running the
    model again over the same tokens. The samples, ``sample_logp`` and ``entropy`` are those
    of ``grad=False`` (detached); not with processors. The graph keeps every decoding step's
    key/value history, which grows with the square of the length: see ``sampling_graph_bytes``.
    """
    assert len(prompts) == len(seeds), "one seed per row"
    assert not (grad and processors), "grad=True samples from the policy itself (no processors)"
    with torch.set_grad_enabled(grad):
        return _sample(model, prompts, seeds, max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                       temperature=temperature, processors=processors, decode=decode, group_size=group_size,
                       compact=compact, grad=grad, grad_entropy=grad_entropy)


def _sample(model, prompts, seeds, *, max_new_tokens, eos_id, pad_id, temperature, processors, decode, group_size,
            compact, grad, grad_entropy) -> Rollout:
    device = next(model.parameters()).device
    N, T = len(prompts), max_new_tokens
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)                  # [N, P]
    gen = torch.Generator()                                              # reseeded per row
    uniforms = torch.stack([torch.rand(T, generator=gen.manual_seed(s), dtype=torch.float64)
                            for s in seeds])                             # [N, T]
    prompt_ids, prompt_mask, uniforms = prompt_ids.to(device), prompt_mask.to(device), uniforms.to(device)

    from transformers import DynamicCache

    kv = DynamicCache()
    cache = {_cache_kwarg(model): kv}
    attn = prompt_mask
    G = group_size if group_size > 1 and N % group_size == 0 else 1
    if G > 1:  # prefill each distinct prompt once, then share its cache across the group
        assert all(prompts[i] == prompts[i - i % G] for i in range(N)), "rows must come in groups of equal prompts"
        u_ids, u_mask = prompt_ids[::G], prompt_mask[::G]                # [B, P]
        out = model(input_ids=u_ids, attention_mask=u_mask, position_ids=positions(u_mask), use_cache=True, **cache)
        kv.batch_repeat_interleave(G)
        logits = out.logits[:, -1, :].repeat_interleave(G, dim=0)        # [N, V]
    else:
        out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=positions(attn), use_cache=True, **cache)
        logits = out.logits[:, -1, :]                                    # [N, V]
    next_pos = positions(attn)[:, -1:] + 1                               # [N, 1]

    tokens = torch.full((N, T), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((N, T), dtype=torch.float32, device=device)
    ents = torch.zeros((N, T), dtype=torch.float32, device=device)
    kls = torch.zeros((N, T), dtype=torch.float32, device=device) if processors else None
    active = torch.ones(N, dtype=torch.bool, device=device)              # [N] not yet stopped
    gen_mask = torch.zeros((N, T), dtype=torch.long, device=device)
    history = prompt_ids
    # Without processors (which see every row's history), rows that have stopped leave the
    # decoding batch once a quarter of it has stopped: their cache rows are dropped and the
    # remaining n rows decode alone. ``rows`` maps the batch's rows to the N rows.
    compact = compact and not processors
    rows = torch.arange(N, device=device)                                # [n]
    picked: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]] = []   # grad: (rows, t, logp, ent)
    for t in range(T):
        scores = logits.float() / temperature                            # [n, V]
        logp_policy = torch.log_softmax(scores, dim=-1)                  # [n, V]
        with torch.set_grad_enabled(grad and grad_entropy):
            ent = distribution_entropy(logp_policy)                      # [n]
        if grad:
            keep_graph = logp_policy, ent
            logp_policy, ent = logp_policy.detach(), ent.detach()
        if processors:
            for proc in processors:
                scores = proc(history, scores)
            logp_sample = torch.log_softmax(scores, dim=-1)              # [N, V]
            kl = distribution_kl(logp_sample, logp_policy)                                  # [N]
            kls[:, t] = kl.clamp(min=0.0) * active                         # >= 0; rounding can dip below
        else:
            logp_sample = logp_policy
        cdf = logp_sample.exp().double().cumsum(-1)                      # [n, V]
        u = uniforms[rows, t : t + 1] * cdf[:, -1:]                      # [n, 1]
        tok = torch.searchsorted(cdf, u).clamp(max=cdf.shape[-1] - 1).squeeze(-1)  # [n]
        live = active[rows]                                              # [n]
        tok = torch.where(live, tok, torch.full_like(tok, pad_id))
        tokens[rows, t] = tok
        ents[rows, t] = ent
        logps[rows, t] = logp_sample.gather(-1, tok[:, None]).squeeze(-1) * live
        gen_mask[rows, t] = live.long()
        if grad:
            lp, en = keep_graph
            picked.append((rows, t, lp.gather(-1, tok[:, None]).squeeze(-1) * live,
                           en * live if grad_entropy else None))
        active[rows] = live & (tok != eos_id)
        n_live = int(active.sum())
        if n_live == 0 or t == T - 1:
            break
        if compact and n_live <= 0.75 * len(rows):
            keep = active[rows].nonzero().squeeze(-1)                    # [n'] positions in the batch
            kv.batch_select_indices(keep)
            rows, tok, attn, next_pos = rows[keep], tok[keep], attn[keep], next_pos[keep]
        attn = torch.cat([attn, torch.ones((len(rows), 1), dtype=attn.dtype, device=device)], dim=1)
        if processors:
            history = torch.cat([history, tok[:, None]], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True, **cache)
        next_pos = next_pos + 1
        logits = out.logits[:, -1, :]

    width = int(gen_mask.sum(1).max().item()) if N else 0                # trim unused columns
    tokens, logps, ents, gen_mask = tokens[:, :width], logps[:, :width], ents[:, :width], gen_mask[:, :width]
    if kls is not None:
        kls = kls[:, :width]
    ents = ents * gen_mask
    finished = ((tokens == eos_id) & gen_mask.bool()).any(-1)
    texts = []
    if decode is not None:
        for row, m in zip(tokens.tolist(), gen_mask.tolist()):
            ids = [tk for tk, keep in zip(row, m) if keep and tk != eos_id]
            texts.append(decode(ids))
    ro = Rollout(prompt_ids, prompt_mask, tokens, gen_mask, logps, ents, finished, texts, G, sample_kl=kls)
    if grad:   # one scatter per tensor, so autograd keeps one node instead of an in-place copy per step
        at = (torch.cat([r for r, _, _, _ in picked]), torch.cat([torch.full_like(r, t) for r, t, _, _ in picked]))
        ro.policy_logp = logps.new_zeros(N, width).index_put(at, torch.cat([lp for _, _, lp, _ in picked]))
        if grad_entropy:
            ro.policy_entropy = ents.new_zeros(N, width).index_put(at, torch.cat([en for _, _, _, en in picked]))
    return ro


def sampling_graph_bytes(model, n_rows: int, prompt_len: int, max_new_tokens: int) -> int:
    """Upper bound on the key/value history that ``sample(..., grad=True)`` keeps for the
    backward pass: every decoding step attends over a new, one longer copy of each layer's
    keys and values, so the bytes grow as T*P + T^2/2 positions per row (the activations
    that any training forward keeps come on top and are not counted)."""
    from workbench.models.memory import model_shape

    shape = model_shape(model)
    T, P = max_new_tokens, prompt_len
    positions_kept = T * P + T * (T + 1) // 2
    return 2 * shape["layers"] * n_rows * shape["kv_width"] * shape["elem"] * positions_kept


def token_logprobs(model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False):
    """Teacher-forced log-probs of the completion tokens: ([N, T] log pi, [N, T] entropy or None).

    Runs with gradients when the caller has them enabled (the training forward); the
    same function under ``torch.no_grad()`` and ``model.disable_adapter()`` gives the
    reference policy.
    """
    N, T = rollout.completion_ids.shape
    G = rollout.group_size
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)          # [N, P+T]
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], dim=1)       # [N, P+T]
    keep = _accepts(model, "logits_to_keep")
    if G > 1 and N % G == 0:
        logits = _shared_prefix_logits(model, rollout, mask, G, keep)            # [N, T, V]
    elif keep:  # only the positions that predict completion tokens need the LM head (large V: much saved)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=T + 1).logits
        logits = logits[:, :-1]
    else:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits[:, -(T + 1):-1]
    scores = logits.float() / temperature                                        # [N, T, V]
    lse = torch.logsumexp(scores, dim=-1)                                        # [N, T]
    # gather - logsumexp: no second [N, T, V] tensor (log_softmax's), which matters for large V
    logp = scores.gather(-1, rollout.completion_ids[..., None]).squeeze(-1) - lse  # [N, T]
    ent = None
    if with_entropy:
        ent = distribution_entropy(scores, lse=lse)                              # [N, T]
    return logp, ent


def _shared_prefix_logits(model, rollout: Rollout, mask: torch.Tensor, G: int, keep: bool) -> torch.Tensor:
    """Logits predicting the completion tokens, computing each group's shared prompt once.

    The prompt's hidden states do not depend on the completions (causal attention), so a
    forward over the B distinct prompts fills a KV cache that is repeated G times, and a
    second forward runs only the completion positions. Gradients flow through the cached
    keys and values into the prompt computation, so this is the same function as a full
    forward over [N, P+T] (up to float rounding) at B*P + N*T positions instead of N*(P+T).
    """
    from transformers import DynamicCache

    P, T = rollout.prompt_ids.shape[1], rollout.completion_ids.shape[1]
    kv = DynamicCache()
    cache = {_cache_kwarg(model): kv}
    u_ids, u_mask = rollout.prompt_ids[::G], rollout.prompt_mask[::G]            # [B, P]
    extra = {"logits_to_keep": 1} if keep else {}
    first = model(input_ids=u_ids, attention_mask=u_mask, position_ids=positions(u_mask), use_cache=True,
                  **cache, **extra).logits[:, -1:, :]                             # [B, 1, V] predicts token 0
    first = first.repeat_interleave(G, dim=0)                                    # [N, 1, V]
    if T == 1:
        return first
    lengths = rollout.completion_mask.sum(1)                                     # [N] tokens per row
    buckets = _length_buckets(lengths.tolist(), T)
    if buckets is None:  # one forward over every row at the full width
        kv.batch_repeat_interleave(G)
        m = mask[:, : P + T - 1]                                                 # [N, P+T-1]
        rest = model(input_ids=rollout.completion_ids[:, :-1], attention_mask=m, position_ids=positions(m)[:, P:],
                     use_cache=True, **cache).logits                             # [N, T-1, V]
        return torch.cat([first, rest], dim=1)                                   # [N, T, V]
    # rows of similar length together, each bucket only as wide as its longest row: the
    # positions after a row's end (masked out of every loss and metric) get logits of 0
    parts, order = [], []
    for rows, width in buckets:
        idx = torch.as_tensor(rows, device=first.device)                         # [n]
        order.append(idx)
        if width <= 1:   # nothing to predict after the first token
            parts.append(first.new_zeros(len(rows), T - 1, first.shape[-1]))
            continue
        kv_b = DynamicCache()
        for layer_idx, layer in enumerate(kv.layers):                            # the rows' prompt caches
            kv_b.update(layer.keys[idx // G], layer.values[idx // G], layer_idx)
        m = mask[idx, : P + width - 1]                                           # [n, P+w-1]
        out = model(input_ids=rollout.completion_ids[idx, : width - 1], attention_mask=m,
                    position_ids=positions(m)[:, P:], use_cache=True, **{_cache_kwarg(model): kv_b}).logits
        parts.append(torch.nn.functional.pad(out, (0, 0, 0, T - width)))        # [n, T-1, V]
    order = torch.cat(order)                                                     # [N] bucket order -> rows
    rest = torch.cat(parts)[torch.argsort(order)]                                # [N, T-1, V]
    return torch.cat([first, rest], dim=1)                                       # [N, T, V]


def _length_buckets(lengths: list[int], T: int) -> list[tuple[list[int], int]] | None:
    """Rows grouped for the completion forward: [(rows, width)], or None for one forward
    over all rows at width T. Rows of length <= 1 need no forward; the others are split at
    the length that saves the most padded positions, when it saves more than a tenth of
    them (a second forward has its own fixed cost)."""
    N = len(lengths)
    short = [i for i, n in enumerate(lengths) if n <= 1]
    longer = sorted((i for i, n in enumerate(lengths) if n > 1), key=lambda i: lengths[i])
    if not longer:
        return [(short, 1)]
    top = lengths[longer[-1]]
    best_cost, best_split = len(longer) * (top - 1), None
    for k in range(1, len(longer)):
        lo, hi = lengths[longer[k - 1]], lengths[longer[k]]
        if lo == hi:
            continue
        cost = k * (lo - 1) + (len(longer) - k) * (top - 1) + 0.1 * N * (T - 1)
        if cost < best_cost:
            best_cost, best_split = cost, k
    if best_split is None:
        if not short and top == T:
            return None
        return ([(short, 1)] if short else []) + [(longer, top)]
    return ([(short, 1)] if short else []) + [(longer[:best_split], lengths[longer[best_split - 1]]),
                                              (longer[best_split:], top)]


def rollout_from_texts(tokenizer, prompts: Sequence[Sequence[int]], completions: Sequence[str]) -> Rollout:
    """A Rollout for given completions (EOS appended), for teacher-forced scoring."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    comp = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in completions]
    prompt_ids, prompt_mask = left_pad(prompts, pad)
    width = max(len(c) for c in comp)
    ids = torch.full((len(comp), width), pad, dtype=torch.long)
    mask = torch.zeros((len(comp), width), dtype=torch.long)
    for i, c in enumerate(comp):
        ids[i, : len(c)] = torch.as_tensor(c)
        mask[i, : len(c)] = 1
    zeros = torch.zeros(ids.shape)
    return Rollout(prompt_ids, prompt_mask, ids, mask, zeros, zeros, torch.ones(len(comp), dtype=torch.bool),
                   list(completions))

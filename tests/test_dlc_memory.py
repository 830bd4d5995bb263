"""DLC's memory network: the state it is trained with is the state it is queried with
during sampling, padding included."""

from __future__ import annotations

import torch

from workbench.rollout.sampling import left_pad
from workbench.strategies.catalog import MemoryParams
from workbench.strategies.memory import MemorySampler

PAD = 0


def _memory(mu: float = 1.0) -> MemorySampler:
    mem = MemorySampler(MemoryParams(mu=mu, hidden=16, batch=8, steps=1), vocab_size=12, pad_id=PAD, seed=3)
    with torch.no_grad():  # a trained-looking memory: a zero output layer would make every state agree
        mem.model.out.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(5))
    return mem


# prompts of different lengths (left padding at sampling) and completions of different lengths
BATCH = [([3, 4, 5, 6, 7], [8, 9, 2]), ([5], [4, 4, 4, 11]), ([9, 3], [1]), ([2, 2, 2], [7, 6])]


def _sampling_logprobs(mem: MemorySampler) -> torch.Tensor:
    """log pi_m [n, C, V] as the sampler's logits processor sees it, token by token."""
    prompts = [p for p, _ in BATCH]
    C = max(len(c) for _, c in BATCH)
    history, _ = left_pad(prompts, PAD)                                          # [n, P]
    proc = mem.processor()
    out = []
    for t in range(C):
        scores = torch.zeros(len(BATCH), 12)
        out.append(-proc(history, scores))                                       # mu = 1: scores - log pi_m
        nxt = torch.tensor([c[t] if t < len(c) else PAD for _, c in BATCH])      # finished rows: padding
        history = torch.cat([history, nxt[:, None]], dim=1)
    return torch.stack(out, dim=1)                                               # [n, C, V]


def test_memory_logprobs_agree_between_training_and_sampling():
    mem = _memory()
    with torch.no_grad():
        train, targets, mask = mem.completion_logprobs(BATCH)                    # [n, C, V]
        sampled = _sampling_logprobs(mem)
    assert targets[mask].tolist() == [t for _, c in BATCH for t in c]
    diff = (train - sampled).abs().amax(-1)[mask]                                # [valid]
    assert diff.max().item() < 1e-5, diff


def test_memory_ignores_padding_and_trains():
    mem = _memory()
    with torch.no_grad():
        alone = [mem.completion_logprobs([pc])[0][0, : len(pc[1])] for pc in BATCH]
        together, _, _ = mem.completion_logprobs(BATCH)
    for i, (_, c) in enumerate(BATCH):                                           # batching (padding) changes nothing
        assert (together[i, : len(c)] - alone[i]).abs().max().item() < 1e-5
    mem.buffer.extend(BATCH)
    first = mem._train_step()
    for _ in range(20):
        last = mem._train_step()
    assert last < first

"""DLC, distribution-level calibration through a memory network (the sharpening-collapse
paper): sample away from the modes the policy has already produced.

A small memory language model m_phi with the policy's vocabulary is trained online, by
next-token cross-entropy on the completion tokens of recent rollouts ((choice) correct
ones only by default). During rollouts the sampling scores become
    z_theta / T - mu * log pi_m            (sampling ∝ pi_theta^(1/T) / pi_m^mu),
so continuations the memory finds likely (visited modes) are sampled less. The rollouts
are then off-policy: the sampler stores their log-probs under this adjusted distribution
as pi_old, and the clipped ratio pi_theta / pi_old corrects for it.

Training and sampling query the memory in the same recurrent state: every sequence runs
from the zero state over its real tokens only (training right-pads, the sampler holds the
state at zero through the prompt's left padding), so padding never moves it.

Choices where the paper is open: a one-layer GRU as the memory (cheap, any vocabulary);
log pi_m rather than raw memory logits (scale-free); mu = 0.3; the memory's output layer
starts at zero, so an untrained memory is uniform and changes nothing.
"""

from __future__ import annotations

import random
import time
from collections import deque

import torch
from torch import nn

from workbench.rollout.sampling import Rollout
from workbench.strategies.base import register


class MemoryLM(nn.Module):
    """Embedding -> GRU -> vocabulary logits. Shapes: N sequences, L positions, V vocabulary, H hidden."""

    def __init__(self, vocab_size: int, hidden: int):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, ids: torch.Tensor, h: torch.Tensor | None = None):
        x, h = self.gru(self.emb(ids), h)                                           # [N, L, H], [1, N, H]
        return self.out(x), h                                                       # [N, L, V]


class _Processor:
    """A logits processor for one rollout: keeps the GRU state and feeds only new tokens."""

    def __init__(self, sampler: "MemorySampler"):
        self.sampler, self.h, self.seen = sampler, None, 0

    @torch.no_grad()
    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        s = self.sampler
        new = history[:, self.seen :]                                               # [N, L_new]
        if self.seen == 0:  # left padding: start each row's state at its first real token
            self.h = _run_masked(s.model, new, s.pad_id)
        else:
            _, self.h = s.model(new, self.h)
        self.seen = history.shape[1]
        log_pm = torch.log_softmax(s.model.out(self.h[-1]).float(), dim=-1)        # [N, V]
        s.sampling_seconds += time.perf_counter() - t0
        return scores - s.params.mu * log_pm


def _run_masked(model: MemoryLM, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Run the GRU over left-padded rows, holding the state at zero through the padding."""
    N, L = ids.shape
    h = torch.zeros(1, N, model.gru.hidden_size, device=ids.device)
    emb = model.emb(ids)                                                            # [N, L, H]
    first = (ids != pad_id).float().argmax(dim=1)                                   # [N] first real token
    for t in range(L):
        _, h_new = model.gru(emb[:, t : t + 1], h)
        real = (t >= first)[None, :, None]
        h = torch.where(real, h_new, h)
    return h                                                                        # [1, N, H]


@register("sampling", "memory")
class MemorySampler:
    """The DLC memory: a logits processor factory plus its online training.

    State (the memory weights, its optimiser, the rollout buffer) belongs to the strategy:
    switching to another strategy and back restores it.
    """

    def __init__(self, params, *, vocab_size: int, pad_id: int, device: str = "cpu", seed: int = 0):
        self.params, self.pad_id, self.device = params, pad_id, device
        torch.manual_seed(seed)
        self.model = MemoryLM(vocab_size, params.hidden).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=params.lr)
        self.buffer: deque[tuple[list[int], list[int]]] = deque(maxlen=params.buffer)
        self.rng = random.Random(seed)
        self.sampling_seconds = 0.0
        self.updates = 0

    def processor(self) -> _Processor:
        return _Processor(self)

    def observe(self, rollout: Rollout, correct: torch.Tensor) -> dict[str, float]:
        """Add this step's rollouts to the buffer and train the memory; return timings."""
        t0 = time.perf_counter()
        keep = correct.flatten().tolist() if self.params.train_on == "correct" else [True] * len(rollout.texts)
        pm, cm = rollout.prompt_mask.bool(), rollout.completion_mask.bool()
        for i, k in enumerate(keep):
            if k:
                self.buffer.append((rollout.prompt_ids[i][pm[i]].tolist(), rollout.completion_ids[i][cm[i]].tolist()))
        if self.buffer.maxlen != self.params.buffer:
            self.buffer = deque(self.buffer, maxlen=self.params.buffer)
        for g in self.opt.param_groups:
            g["lr"] = self.params.lr
        loss = float("nan")
        for _ in range(self.params.steps if self.buffer else 0):
            loss = self._train_step()
        out = {"dlc/memory_loss": loss, "dlc/buffer": float(len(self.buffer)),
               "time/dlc_train": time.perf_counter() - t0, "time/dlc_sampling": self.sampling_seconds}
        self.sampling_seconds = 0.0
        return out

    def completion_logprobs(self, batch: list[tuple[list[int], list[int]]]):
        """The memory's next-token log-probs as training sees them, at the positions that
        predict each completion token of (prompt, completion) pairs:
        (log pi_m [n, C, V], target ids [n, C], mask [n, C]), C the longest completion."""
        # Right padding: every row starts at position 0 from the zero state and its padding
        # comes after its last token, so no padding ever drives the recurrent state -- the
        # state the sampler's processor builds (zero held through left padding).
        seqs = [p + c for p, c in batch]
        n, L = len(seqs), max(len(q) for q in seqs)
        ids = torch.full((n, L), self.pad_id, dtype=torch.long)                     # [n, L]
        for i, q in enumerate(seqs):
            ids[i, : len(q)] = torch.as_tensor(q, dtype=torch.long)
        C = max(len(c) for _, c in batch)
        pos = torch.tensor([[len(p) - 1 + j for j in range(C)] for p, _ in batch])  # [n, C] predicting position
        tmask = torch.tensor([[j < len(c) and len(p) - 1 + j >= 0 for j in range(C)] for p, c in batch])
        pos = pos.clamp(0, max(L - 2, 0))
        ids, pos, tmask = ids.to(self.device), pos.to(self.device), tmask.to(self.device)
        logits, _ = self.model(ids[:, :-1])                                         # [n, L-1, V]
        logp_all = torch.log_softmax(logits.float(), -1)                            # [n, L-1, V]
        logp_all = logp_all.gather(1, pos[..., None].expand(n, C, logp_all.shape[-1]))   # [n, C, V]
        targets = ids.gather(1, (pos + 1).clamp(max=L - 1))                         # [n, C]
        return logp_all, targets, tmask

    def _train_step(self) -> float:
        batch = self.rng.sample(list(self.buffer), min(self.params.batch, len(self.buffer)))
        logp_all, targets, tmask = self.completion_logprobs(batch)                  # loss on completion tokens only
        logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)                  # [n, C]
        m = tmask.float()
        loss = -(logp * m).sum() / m.sum().clamp(min=1)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.updates += 1
        return float(loss.detach())

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "buffer": list(self.buffer),
                "updates": self.updates, "rng": self.rng.getstate()}

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.opt.load_state_dict(sd["opt"])
        self.buffer = deque((tuple(x) for x in sd["buffer"]), maxlen=self.params.buffer)
        self.updates = int(sd["updates"])
        rng = sd["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]) if isinstance(rng, list) else rng)

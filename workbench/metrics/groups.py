"""Training groups: which groups carry signal, the advantages, each problem's history.

A GRPO-style group of G samples of one prompt gives zero advantage when all samples
agree, so the split all-correct / all-wrong / mixed is logged as three numbers (an
all-correct group means "too easy", all-wrong "too hard" — one "zero-std" fraction hides
which).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from workbench.errors import CheckpointError, ConfigError


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def group_split(correct) -> dict:
    """Fractions of groups all correct, all wrong and mixed; correct: bool [B, G].

    Keys ``train/frac_all_correct``, ``train/frac_all_wrong``, ``train/frac_mixed``
    (they sum to 1).  An empty batch (B = 0) raises ``ConfigError``.
    """
    correct = _to_numpy(correct).astype(bool)  # [B, G]
    if correct.ndim != 2 or correct.shape[0] == 0 or correct.shape[1] == 0:
        raise ConfigError(f"group_split needs a bool array [B, G] with B, G ≥ 1 (got {correct.shape})")
    all_correct = correct.all(axis=1)  # [B]
    all_wrong = ~correct.any(axis=1)  # [B]
    frac_all_correct = float(all_correct.mean())
    frac_all_wrong = float(all_wrong.mean())
    return {
        "train/frac_all_correct": frac_all_correct,
        "train/frac_all_wrong": frac_all_wrong,
        "train/frac_mixed": float((~all_correct & ~all_wrong).mean()),
    }


def advantage_stats(adv, atol: float = 1e-8) -> dict:
    """Mean, population std and fraction zero (|A| ≤ atol) of advantages, any shape ([B, G]).

    Keys ``train/adv_mean``, ``train/adv_std``, ``train/adv_frac_zero``; all 0.0 when empty.
    ``atol`` absorbs the rounding of (r − mean r) in groups whose rewards are all equal.
    """
    adv = _to_numpy(adv).astype(np.float64).reshape(-1)  # [B*G]
    if adv.size == 0:
        return {"train/adv_mean": 0.0, "train/adv_std": 0.0, "train/adv_frac_zero": 0.0}
    return {
        "train/adv_mean": float(adv.mean()),
        "train/adv_std": float(adv.std()),
        "train/adv_frac_zero": float((np.abs(adv) <= atol).mean()),
    }


class SuccessHistory:
    """Each training problem's running success record, saved with checkpoints.

    Per problem: total samples, total correct and the list of (step, c, G) entries, one per
    time the problem was in a batch.  ``decayed`` gives exponentially-decayed counts for
    curricula that weigh recent evidence more.
    """

    def __init__(self) -> None:
        self.entries: dict[str, list[tuple[int, int, int]]] = {}
        self.n_total: dict[str, int] = {}
        self.c_total: dict[str, int] = {}
        self.last_step: int | None = None

    def update(self, step: int, problem_ids: Sequence[str], c, G) -> None:
        """Record one batch: problem_ids [B], c int [B] correct per group, G int or int [B]."""
        c_arr = _to_numpy(c).astype(np.int64).reshape(-1)  # [B]
        g_arr = np.broadcast_to(_to_numpy(G).astype(np.int64), c_arr.shape)  # [B]
        if len(problem_ids) != c_arr.shape[0]:
            raise ConfigError(
                f"SuccessHistory.update: {len(problem_ids)} problem ids but {c_arr.shape[0]} counts"
            )
        if np.any(c_arr < 0) or np.any(c_arr > g_arr):
            raise ConfigError("SuccessHistory.update needs 0 ≤ c ≤ G for every group")
        for pid, ci, gi in zip(problem_ids, c_arr.tolist(), g_arr.tolist()):
            self._add(str(pid), int(step), ci, gi)

    def _add(self, pid: str, step: int, c: int, g: int) -> None:
        self.entries.setdefault(pid, []).append((step, c, g))
        self.n_total[pid] = self.n_total.get(pid, 0) + g
        self.c_total[pid] = self.c_total.get(pid, 0) + c
        self.last_step = step if self.last_step is None else max(self.last_step, step)

    def rate(self, problem_id: str) -> float | None:
        """Total correct / total samples of a problem; ``None`` if never sampled."""
        n = self.n_total.get(problem_id, 0)
        return self.c_total[problem_id] / n if n else None

    def decayed(self, problem_id: str, gamma: float, step: int | None = None) -> tuple[float, float]:
        """Exponentially-decayed (c_eff, n_eff) = Σ γ^(step − s_i)·(c_i, G_i) over entries.

        ``step`` defaults to the latest step recorded for any problem, so a problem not
        seen for a while fades.  γ = 1 gives the plain totals; an unseen problem (0, 0).
        """
        if not 0.0 < gamma <= 1.0:
            raise ConfigError(f"SuccessHistory.decayed needs 0 < gamma ≤ 1 (got {gamma})")
        entries = self.entries.get(problem_id)
        if not entries:
            return 0.0, 0.0
        e = np.asarray(entries, dtype=np.float64)  # [E, 3] = (step, c, G)
        now = self.last_step if step is None else int(step)
        w = gamma ** (now - e[:, 0])  # [E]
        return float((w * e[:, 1]).sum()), float((w * e[:, 2]).sum())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, problem_id: object) -> bool:
        return problem_id in self.entries

    def to_json(self) -> str:
        """The whole history as a JSON string (entries only; totals are recomputed)."""
        return json.dumps(
            {"version": 1, "entries": {pid: [list(e) for e in es] for pid, es in self.entries.items()}}
        )

    @classmethod
    def from_json(cls, data: str | dict) -> SuccessHistory:
        """Rebuild from ``to_json()`` output (a JSON string or the parsed dict)."""
        hist = cls()
        try:
            obj = json.loads(data) if isinstance(data, str) else data
            for pid, es in obj["entries"].items():
                for step, c, g in es:
                    hist._add(str(pid), int(step), int(c), int(g))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"success history is not valid to_json() output: {exc!r}") from exc
        return hist

"""A hand-filled run in a temporary store (RunStore API only): known values to test views on."""

from __future__ import annotations

import math

from workbench.store import RunStore

PROBLEMS = ["p1", "p2", "p3", "p4"]
#: base model: (c, mode counts) per problem of the eval split, n = 8
BASE = {"p1": (6, {"a": 3, "b": 2, "c": 1}), "p2": (2, {"a": 1, "d": 1}), "p3": (1, {"x": 1}), "p4": (0, {})}
#: policy at each evaluation step: the diversity collapses, p3 is lost and p4 gained
POLICY = {
    5: {"p1": (7, {"a": 5, "b": 2}), "p2": (3, {"a": 3}), "p3": (1, {"x": 1}), "p4": (0, {})},
    10: {"p1": (8, {"a": 8}), "p2": (4, {"a": 4}), "p3": (0, {}), "p4": (1, {"y": 1})},
    15: {"p1": (8, {"a": 8}), "p2": (5, {"a": 5}), "p3": (0, {}), "p4": (2, {"y": 2})},
}
N = 8
STEPS = 15
SWITCH_AT = 8  # a set_strategy applied after step 8: bbg in force from step 9
KS = [1, 2, 4, 8]


def _mode_stats(counts: dict[str, int]) -> dict:
    c = sum(counts.values())
    if not c:
        return {"mode_entropy": None, "eff_modes": None, "top_share": None}
    h = -sum(v / c * math.log(v / c) for v in counts.values())
    return {"mode_entropy": h, "eff_modes": math.exp(h), "top_share": max(counts.values()) / c}


def _passk(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1 - k / i
    return 1 - prod


def _rows(table: dict, base: dict | None) -> list[dict]:
    rows = []
    for pid in PROBLEMS:
        c, counts = table[pid]
        row = {"problem_id": pid, "n": N, "c": c, "num_modes": len(counts), "mode_counts": counts,
               **_mode_stats(counts), "mean_entropy": 0.5, "difficulty": 0, "parse_errors": 0}
        if base is not None:
            bc, bcounts = base[pid]
            hb, hn = _mode_stats(bcounts)["mode_entropy"], row["mode_entropy"]
            row["collapse_index"] = None if hb is None or hn is None else min(1, max(0, 1 - math.exp(hn) / math.exp(hb)))
            row["base_c"] = bc
            row["bank_logratios"] = [(-0.5 if m != "a" else 0.7) * (1 + len(rows)) for m in bcounts]
        rows.append(row)
    return rows


def _summary(table: dict, base: dict | None) -> dict:
    s = {f"eval/pass@{k}": sum(_passk(N, table[p][0], k) for p in PROBLEMS) / len(PROBLEMS) for k in KS}
    s["eval/mean_entropy"] = 0.5
    s["eval/frac_unsolved"] = sum(table[p][0] == 0 for p in PROBLEMS) / len(PROBLEMS)
    if base is not None:
        for m, sfx in ((1, ""), (2, "_c2")):
            b = {p for p in PROBLEMS if base[p][0] >= m}
            now = {p for p in PROBLEMS if table[p][0] >= m}
            s[f"boundary/gained{sfx}"] = len(now - b)
            s[f"boundary/lost{sfx}"] = len(b - now)
            s[f"boundary/kept{sfx}"] = len(b & now)
            s[f"boundary/never{sfx}"] = len(PROBLEMS) - len(b | now)
    return s


def fill(root, run_id: str = "fake-run", steps: int = STEPS, switch_at: int | None = SWITCH_AT) -> RunStore:
    """Create ``run_id`` in a RunStore at ``root`` with known steps, evaluations and events."""
    store = RunStore(root)
    store.create_run({"model": {"name_or_path": "tiny-primes"}, "task": {"name": "two_primes"}, "steps": 20,
                      "strategy": "grpo"}, run_id=run_id, strategy="grpo")
    store.add_event(run_id, 0, "strategy", {"name": "grpo", "pieces": ["grpo"], "params": {"grpo": {"eps": 1e-6}},
                                            "loss": {}})
    store.write_bank(run_id, [{"problem_id": f"eval:{p}", "mode_key": m, "completion": f"{p}={m}", "ref_logprob": -1.0}
                              for p in PROBLEMS for m in BASE[p][1]])
    store.write_evaluation(run_id, 0, "base", "eval", _summary(BASE, None), _rows(BASE, None),
                           [{"problem_id": p, "completion": f"{p} base", "reward": 1.0, "correct": True, "mode_key": "a"}
                            for p in PROBLEMS])
    for s in range(1, steps + 1):
        store.write_step(run_id, s, {
            "train/reward_mean": 0.1 * s, "train/pass@1": 0.05 * s, "train/entropy": 1.0 - 0.05 * s,
            "train/logp_adv_cov": 0.01 * s, "train/kl_old": 0.001 * s, "train/kl_ref": 0.01 * s,
            "train/clip_frac_low": 0.01, "train/clip_frac_high": 0.02, "train/clip_frac": 0.03,
            "train/frac_all_correct": 0.2, "train/frac_mixed": 0.5, "train/frac_all_wrong": 0.3, "time/step": 0.5,
        })
        if switch_at is not None and s == switch_at:
            store.add_event(run_id, s, "strategy", {"name": "bbg", "pieces": ["grpo", "bbg"],
                                                    "params": {"bbg": {"k": 16}}, "loss": {}})
        if s in POLICY:
            store.write_evaluation(run_id, s, "policy", "eval", _summary(POLICY[s], BASE), _rows(POLICY[s], BASE),
                                   [{"problem_id": p, "completion": f"{p} step {s}", "reward": 0.0, "correct": False,
                                     "mode_key": None} for p in PROBLEMS])
            store.add_event(run_id, s, "evaluation", {"label": "policy"})
    store.set_status(run_id, "finished")
    return store

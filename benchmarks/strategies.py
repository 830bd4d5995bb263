"""Seconds per training step of every preset relative to grpo, on the embedded default.

    python benchmarks/strategies.py [--steps 6] [--presets grpo,bbg,...] [--json]

All presets run in this one process, one after another, on the same machine, with the
default config (B = 32 prompts, G = 8, two updates per batch) and no evaluations; the
first step of each is warm-up. Reports the median of `time/step` (rollout + reward +
update + metrics, store write excluded), the ratio to grpo, and DLC's own costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from workbench.session import Session
from workbench.strategies import PRESETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6, help="steps per preset (the first is warm-up)")
    ap.add_argument("--presets", default="", help="comma-separated presets (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    names = [n for n in args.presets.split(",") if n] or list(PRESETS)
    if "grpo" not in names:
        names.insert(0, "grpo")
    results = {}
    with tempfile.TemporaryDirectory() as ws:
        for name in names:
            sess = Session(workspace=ws, strategy=name, steps=args.steps,
                           **{"eval.every": 0, "eval.n": 1, "eval.max_problems": 1, "eval.seen_problems": 0,
                              "checkpoint_every": 0})
            recs = list(sess.run())[1:]
            results[name] = {
                "step_s": statistics.median(r["time/step"] for r in recs),
                "rollout_s": statistics.median(r["time/rollout"] for r in recs),
                "update_s": statistics.median(r["time/update"] for r in recs),
                "dlc_train_s": statistics.median(r.get("time/dlc_train", 0.0) for r in recs),
                "dlc_sampling_s": statistics.median(r.get("time/dlc_sampling", 0.0) for r in recs),
            }
    base = results["grpo"]["step_s"]
    for r in results.values():
        r["ratio_to_grpo"] = r["step_s"] / base
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'preset':<24} {'s/step':>7} {'x grpo':>7} {'rollout':>8} {'update':>7} {'dlc train':>10} {'dlc sample':>11}")
    for name, r in results.items():
        print(f"{name:<24} {r['step_s']:>7.3f} {r['ratio_to_grpo']:>7.2f} {r['rollout_s']:>8.3f} {r['update_s']:>7.3f} "
              f"{r['dlc_train_s']:>10.3f} {r['dlc_sampling_s']:>11.3f}")


if __name__ == "__main__":
    main()

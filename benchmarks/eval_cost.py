"""One evaluation point against training steps, on the embedded default config.

    python benchmarks/eval_cost.py [--steps 6] [--json]

Times `Session.evaluate()` (pass@k with n = 64 on the eval split and the 'seen' split,
plus the collapse, boundary and over-sharpening metrics) and the median training step of
the same session, side by side in one process. Target: one evaluation <= 10 steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from workbench.session import Session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as ws:
        sess = Session(workspace=ws, steps=a.steps + 1, **{"eval.every": 0, "checkpoint_every": 0})
        t0 = time.perf_counter()
        sess.ensure_base()
        base_s = time.perf_counter() - t0
        sess.step()                                          # warm-up
        steps = []
        for _ in range(a.steps):
            t = time.perf_counter()
            sess.step()
            steps.append(time.perf_counter() - t)
        evals = []
        for _ in range(2):
            t = time.perf_counter()
            sess.evaluate()
            evals.append(time.perf_counter() - t)
        problems = sum(len(v) for v in sess.eval_sets.values())
    out = {"median_step_s": statistics.median(steps), "eval_s": min(evals), "base_eval_s": base_s,
           "eval_problems": problems, "eval_n": sess.config.eval.n}
    out["eval_in_steps"] = out["eval_s"] / out["median_step_s"]
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"evaluation ({problems} problems x {out['eval_n']} samples): {out['eval_s']:.2f} s; "
              f"training step (median of {a.steps}): {out['median_step_s']:.3f} s; "
              f"one evaluation = {out['eval_in_steps']:.1f} steps (base evaluation with its bank: {base_s:.2f} s)")


if __name__ == "__main__":
    main()

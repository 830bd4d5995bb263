"""``python -m workbench.sim [--steps N]``: how many simulator steps a second this machine runs.

Times sampled and exact steps at the default size (P = 32, M = 8, G = 8, B = 8) for the
three update geometries, with and without the per-step diagnostics; then sampled steps of
S runs stepped together (``SimBatch``, one run per seed): batch steps per second (each run
advances one step per batch step) and run-steps per second in aggregate; and a sweep of
10 seeds x 5 strategies as a notebook would run it, timed end to end.
"""

from __future__ import annotations

import argparse
import time

from workbench.sim import SimBatch, SimConfig, Simulator

CASES = {
    "adam (default)": {},
    "adam, diagnostics off": {"diagnostics": False},
    "sgd": {"optimizer": "sgd", "lr": 2.0},
    "sgd, 4 updates per batch": {"optimizer": "sgd", "lr": 2.0, "updates_per_batch": 4},
    "natural gradient": {"optimizer": "sgd", "update": "natural", "lr": 0.1},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps timed per case (default 2000)")
    parser.add_argument("--runs", default="1,10,50", help="S values for the batched timing (comma-separated)")
    args = parser.parse_args(argv)
    print(f"{'case':28s} {'sampled steps/s':>16s} {'exact steps/s':>14s}")
    for name, kw in CASES.items():
        rates = []
        for expected in (False, True):
            sim = Simulator(SimConfig(**kw))
            sim.train(20, expected=expected)                      # warm up
            t = time.perf_counter()
            sim.train(args.steps, expected=expected)
            rates.append(args.steps / (time.perf_counter() - t))
        print(f"{name:28s} {rates[0]:16.0f} {rates[1]:14.0f}")
    print(f"\n{'SimBatch, adam (default)':28s} {'steps/s per run':>16s} {'run-steps/s':>14s}")
    for S in (int(x) for x in args.runs.split(",")):
        batch = SimBatch(SimConfig(), seeds=range(S)).train(20)
        t = time.perf_counter()
        batch.train(args.steps)
        rate = args.steps / (time.perf_counter() - t)
        print(f"{f'S = {S} runs':28s} {rate:16.0f} {rate * S:14.0f}")
    strategies = ["grpo", "iac", "bbg", "grpo_n", "clip_cov"]
    t = time.perf_counter()
    for spec in strategies:
        SimBatch(SimConfig(strategy=spec), seeds=range(10)).train(args.steps)
    print(f"\nsweep: 10 seeds x {len(strategies)} strategies ({', '.join(strategies)}) x {args.steps} steps: "
          f"{time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

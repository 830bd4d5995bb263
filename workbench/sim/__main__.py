"""``python -m workbench.sim [--steps N]``: how many simulator steps a second this machine runs.

Times sampled and exact steps at the default size (P = 32, M = 8, G = 8, B = 8) for the
three update geometries, with and without the per-step diagnostics.
"""

from __future__ import annotations

import argparse
import time

from workbench.sim import SimConfig, Simulator

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

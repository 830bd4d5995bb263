"""``python -m workbench.tasks write-splits [--task NAME] [--data-dir DIR]``: regenerate fixed splits."""

from __future__ import annotations

import argparse
import sys

from workbench.paths import TASKS_DIR


def main(argv: list[str] | None = None) -> int:
    from workbench.tasks import get_task, write_splits

    synthetic = ["two_primes", "countdown"]
    ap = argparse.ArgumentParser(prog="python -m workbench.tasks")
    sub = ap.add_subparsers(dest="command", required=True)
    ws = sub.add_parser("write-splits", help="write data/tasks/<family>/<split>.jsonl")
    ws.add_argument("--task", action="append", choices=synthetic, help="family (repeatable; default: all synthetic)")
    ws.add_argument("--data-dir", default=str(TASKS_DIR))
    args = ap.parse_args(argv)
    for name in args.task or synthetic:
        for path in write_splits(get_task(name), args.data_dir):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

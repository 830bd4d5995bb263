"""Regenerate docs/dashboard-trl.png (not a test: run it by hand, a few minutes).

    python tests/ui/screenshot_trl.py [--out docs] [--steps 30] [--switch-at 15]

Trains a run on the TRL backend (the embedded model, two_primes), sends it a
``set_strategy`` command through the store at --switch-at (GRPO -> BBG, as the dashboard's
switch form does), then serves the dashboard on that workspace and has Chromium (headless,
via Playwright) take the live view.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from screenshots import WIDTH, _clip, shrink  # noqa: E402
from ui_helpers import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402


def train(ws: Path, steps: int, switch_at: int) -> str:
    from transformers import TrainerCallback

    from workbench.integrations.trl import train_trl
    from workbench.store import RunStore

    class Switch(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == switch_at * args.num_iterations:
                store = RunStore(ws)
                store.send_command(store.list_runs()[0]["run_id"], "set_strategy", {"strategy": "bbg", "params": {}})

    run = train_trl(workspace=str(ws), steps=steps, name="trl-grpo-then-bbg", callbacks=[Switch()], **{
        "rollout.prompts_per_step": 16, "rollout.group_size": 8, "eval.every": 5, "eval.n": 16,
        "eval.max_problems": 24, "eval.seen_problems": 0, "checkpoint_every": 0})
    return run.run_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE.parents[1] / "docs"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--switch-at", type=int, default=15)
    ap.add_argument("--workspace", help="reuse this workspace's newest run instead of training one")
    args = ap.parse_args()
    ws = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="wb-trl-shot-"))
    run_id = train(ws, args.steps, args.switch_at) if not args.workspace else None

    from playwright.sync_api import sync_playwright

    from ui.app import build_app, launch

    demo = build_app(ws)
    run_id = run_id or demo.controller.store.list_runs()[0]["run_id"]
    port = free_port()
    launch(demo, port=port, block=False, quiet=True)
    out = Path(args.out) / "dashboard-trl.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_timeout(3000)
            sel = page.locator("#run-select input")
            sel.click()
            sel.fill(run_id)
            sel.press("Enter")
            page.wait_for_timeout(4000)
            page.screenshot(path=str(out), full_page=True, clip=_clip(page, "#run-status", "#collapse-heatmap"))
            browser.close()
        shrink(out)
        print(out, flush=True)
    finally:
        demo.controller.manager.shutdown()
        demo.close()
        time.sleep(0.5)


if __name__ == "__main__":
    main()

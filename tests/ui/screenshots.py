"""Regenerate the dashboard screenshots in docs/ (not a test: run it by hand, ~3 minutes).

    python tests/ui/screenshots.py [--out docs] [--steps 80] [--switch-at 40]

Serves the dashboard on a fresh workspace, starts two runs through it with the new-run
form's defaults (the embedded model, two_primes): GRPO switched to BBG at --switch-at,
and plain GRPO for comparison; then Debian's Chromium (headless, via Playwright) takes
one screenshot per view: runs, live, problem drill-down, compare, all metrics.
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

from ui_helpers import CHROMIUM, CHROMIUM_ARGS, free_port, wait_for  # noqa: E402

from ui import forms  # noqa: E402
from ui.app import build_app, launch  # noqa: E402

WIDTH = 1400


def form(strategy: str, steps: int, name: str) -> dict:
    D = forms.DEFAULTS
    return {"model": forms.default_model(), "task": "two_primes", "strategy": strategy, "params": None,
            "steps": steps, "group_size": D["group_size"], "prompts_per_step": D["prompts_per_step"],
            "eval_every": D["eval_every"], "eval_n": D["eval_n"], "eval_max_problems": D["eval_max_problems"],
            "eval_seen_problems": D["eval_seen_problems"], "name": name}


def shrink(path: Path, width: int = 1100) -> None:
    """Scale a screenshot down to ``width`` px and quantise it (docs stay small)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE.parents[1] / "docs"))
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--switch-at", type=int, default=40)
    ap.add_argument("--workspace", help="reuse this workspace's two newest runs instead of training new ones")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ws = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="wb-shots-"))
    demo = build_app(ws)
    ctl = demo.controller
    port = free_port()
    launch(demo, port=port, block=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        if args.workspace:
            b, a = [r["run_id"] for r in ctl.store.list_runs()[:2]]
        else:
            a, b = train_runs(ctl, args)
        take(url, a, b, out)
        for name in ("runs", "live", "drilldown", "compare", "metrics"):
            shrink(out / f"dashboard-{name}.png")
            print(out / f"dashboard-{name}.png", flush=True)
    finally:
        ctl.manager.shutdown()
        demo.close()
        time.sleep(0.5)


def train_runs(ctl, args) -> tuple[str, str]:
    """Run 1: GRPO switched to BBG mid-run (the Live tab's command); run 2: plain GRPO."""
    a = ctl.start_run(form("grpo", args.steps, "grpo-then-bbg"))
    wait_for(lambda: ctl.run_state(a)["last_step"] >= args.switch_at - 1, 900, "the switch point")
    ctl.send(a, "pause")
    wait_for(lambda: ctl.run_state(a)["status"] == "paused", 120, "the pause")
    ctl.switch(a, "bbg")
    ctl.send(a, "resume")
    wait_for(lambda: ctl.run_state(a)["status"] == "finished", 1200, "run 1")
    b = ctl.start_run(form("grpo", args.steps, "grpo"))
    wait_for(lambda: ctl.run_state(b)["status"] == "finished", 1200, "run 2")
    print(f"runs {a} and {b} finished", flush=True)
    return a, b


def _clip(page, first: str, last: str) -> dict:
    """A page-coordinates clip from the top of ``first`` to the bottom of ``last``."""
    scroll = page.evaluate("window.scrollY")
    top = page.locator(first).bounding_box()["y"] + scroll - 8
    end = page.locator(last).bounding_box()
    return {"x": 0, "y": max(top, 0), "width": WIDTH, "height": end["y"] + scroll + end["height"] + 8 - max(top, 0)}


def take(url: str, a: str, b: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        page.goto(url)
        page.wait_for_timeout(3000)
        sel = page.locator("#run-select input")
        sel.click()
        sel.fill(a)
        sel.press("Enter")
        page.wait_for_timeout(4000)

        # live: the switch form starts collapsed, the plots first
        page.screenshot(path=str(out / "dashboard-live.png"), full_page=True,
                        clip=_clip(page, "#run-status", "#collapse-heatmap"))

        # drill-down: click a problem in the heatmap (the first row the base model solved)
        hm = page.locator("#collapse-heatmap .nsewdrag").first
        hm.scroll_into_view_if_needed()
        box = hm.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + 6)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "dashboard-drilldown.png"), full_page=True,
                        clip=_clip(page, "#problem-select", "#samples-table"))

        page.get_by_role("tab", name="Compare").click()
        cmp = page.locator("#compare-select input")
        for rid in (a, b):
            if rid in page.locator("#compare-select").inner_text():
                continue  # already selected (Enter on a selected choice would remove it)
            cmp.click()
            cmp.fill(rid)
            cmp.press("Enter")
            page.wait_for_timeout(800)
        page.keyboard.press("Escape")
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "dashboard-compare.png"), full_page=True,
                        clip=_clip(page, "#compare-select", "#compare-boundary"))

        page.get_by_role("tab", name="All metrics").click()
        page.locator("#metrics-search textarea, #metrics-search input").first.fill("train/")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out / "dashboard-metrics.png"), full_page=False)

        page.get_by_role("tab", name="Runs").click()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "dashboard-runs.png"), full_page=False)
        browser.close()


if __name__ == "__main__":
    main()

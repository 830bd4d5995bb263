"""What the dashboard's live refresh costs a training run: step time with and without it.

    python benchmarks/dashboard_refresh.py [--steps 120] [--window 10] [--interval 2.0] [--browser] [--json]

One training run on the embedded model (default config: B = 32 prompts, G = 8; evaluations
every 10 steps) in a subprocess; this process plays the dashboard. A poller calls the live
view's refresh path exactly as the app's timer does (``Controller.poll``: one
``store.version`` query, incremental fetches, every changed figure recomputed, including
the collapse heatmap and a problem drill-down, each serialised to JSON as Gradio does;
the runs table every 5 s) every ``--interval`` seconds. It is switched on and off every
``--window`` steps (off, on, off, on, ...), so both conditions share the run and, window by
window, the machine's load. The first step of each window is dropped (it straddles the
switch), and evaluation steps are not timed (``time/step`` excludes them).

``--browser``: instead of the poller, serve the real app (in this process) and let Debian's
headless Chromium (Playwright) show its Live tab on the run, so Gradio's server and the
browser's rendering count too; "off" windows park the page on about:blank (the first two
steps of each window are dropped: they include loading the page).

Figures: the ratio of median ``time/step`` with / without the poller (the goal is <= 1.05);
the median of each "on" window against the mean of its two "off" neighbours (robust to
other processes' load drifting during the run); and the poller's own CPU time per second
of wall time (what it can take from the trainer at most, on a saturated CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ui.app import POLL_SECONDS, RUNS_POLL_SECONDS  # noqa: E402
from ui.control import Controller  # noqa: E402
from ui.live import Options  # noqa: E402


class Poller(threading.Thread):
    """Refresh the live view of ``run_id`` every ``interval`` s while ``active`` is set."""

    def __init__(self, ctl: Controller, run_id: str, interval: float):
        super().__init__(daemon=True)
        self.ctl, self.run_id, self.interval = ctl, run_id, interval
        self.active, self.done = threading.Event(), threading.Event()
        self.ticks: list[float] = []        # seconds of every tick
        self.redraws: list[float] = []      # seconds of ticks that redrew something
        self.cpu = 0.0                      # CPU seconds spent in ticks
        self.active_wall = 0.0              # wall seconds spent active

    def run(self) -> None:
        seen, opts, next_runs = None, Options(), 0.0
        while not self.done.is_set():
            if not self.active.wait(0.05):
                continue
            t_start = time.perf_counter()
            while self.active.is_set() and not self.done.is_set():
                c0, t0 = time.thread_time(), time.perf_counter()
                res = self.ctl.poll(self.run_id, seen, opts)
                seen = res["seen"]
                for value in res["changed"].values():
                    for v in (value.values() if isinstance(value, dict) else [value]):
                        v.to_json() if hasattr(v, "to_json") else json.dumps(v, default=str)
                if res["problems"] and opts.problem is None:  # drill down, as a user would
                    opts = Options(problem=res["problems"][0])
                if time.perf_counter() >= next_runs:
                    self.ctl.runs_rows()
                    next_runs = time.perf_counter() + RUNS_POLL_SECONDS
                dt = time.perf_counter() - t0
                self.cpu += time.thread_time() - c0
                self.ticks.append(dt)
                if res["changed"]:
                    self.redraws.append(dt)
                time.sleep(max(0.0, self.interval - dt))
            self.active_wall += time.perf_counter() - t_start


class BrowserLoad:
    """The real dashboard in headless Chromium: on = its Live tab open on the run."""

    def __init__(self, ws: Path, rid: str):
        from playwright.sync_api import sync_playwright

        sys.path.insert(0, str(ROOT / "tests" / "ui"))
        from ui_helpers import CHROMIUM, CHROMIUM_ARGS, free_port

        from ui.app import build_app, launch

        self.demo = build_app(ws)  # built once the run exists: it is the selected run
        self.port = free_port()
        launch(self.demo, port=self.port, block=False, quiet=True)
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.on = False
        self.rid = rid

    def set(self, on: bool) -> None:
        if on == self.on:
            return
        self.on = on
        self.page.goto(f"http://127.0.0.1:{self.port}/" if on else "about:blank")

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()
        self.demo.close()


def window_of(step: int, window: int) -> int:
    """Windows of ``window`` steps from step 1: even = poller off, odd = on."""
    return max(step - 1, 0) // window


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120, help="training steps (windows alternate off/on)")
    ap.add_argument("--window", type=int, default=10, help="steps per window")
    ap.add_argument("--interval", type=float, default=POLL_SECONDS, help="seconds between polls (the app's)")
    ap.add_argument("-B", type=int, default=32, help="prompts per step")
    ap.add_argument("-G", type=int, default=8, help="samples per prompt")
    ap.add_argument("--browser", action="store_true", help="the real app in headless Chromium instead of the poller")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    skip = 2 if args.browser else 1
    with tempfile.TemporaryDirectory() as tmp:
        ws, rid = Path(tmp), "bench-refresh"
        argv = [sys.executable, "-m", "workbench.cli", "train", "--quiet", "--workspace", str(ws), "--run-id", rid,
                "--steps", str(args.steps), "-B", str(args.B), "-G", str(args.G), "--eval-every", "10",
                "--eval-n", "16", "--eval.max_problems", "32", "--eval.seen_problems", "16", "--checkpoint-every", "0"]
        ctl = Controller(ws)
        log = open(ws / "train.log", "w+")  # a file, not a pipe: a full pipe would stall training
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        poller = Poller(ctl, rid, args.interval)
        browser = None
        if not args.browser:
            poller.start()
        while proc.poll() is None:  # when step k lands, set the poller for step k + 1's window
            try:
                last = ctl.store.last_step(rid)
            except Exception:  # noqa: BLE001 - not created yet
                time.sleep(0.05)
                continue
            on = window_of(last + 1, args.window) % 2 == 1
            if args.browser:
                browser = browser or BrowserLoad(ws, rid)
                browser.set(on)
            elif on:
                poller.active.set()
            else:
                poller.active.clear()
            time.sleep(0.05)
        if browser:
            browser.close()
        else:
            poller.done.set()
            poller.active.set()
            poller.join()
        log.seek(0)
        err = log.read()
        log.close()
        if proc.returncode != 0:
            raise SystemExit(f"training failed ({proc.returncode}): {err[-2000:]}")
        times = dict(ctl.store.scalars(rid, keys=["time/step"])["time/step"])
    windows: dict[int, list[float]] = {}
    for s, t in times.items():
        if (s - 1) % args.window >= skip:  # the first step(s) of a window straddle the switch
            windows.setdefault(window_of(s, args.window), []).append(t)
    off = [t for w, ts in windows.items() if w % 2 == 0 for t in ts]
    on = [t for w, ts in windows.items() if w % 2 == 1 for t in ts]
    med = {w: statistics.median(ts) for w, ts in windows.items()}
    paired = [med[w] / ((med[w - 1] + med[w + 1]) / 2) for w in med if w % 2 == 1 and w - 1 in med and w + 1 in med]
    result = {
        "mode": "browser" if args.browser else "poller", "interval_s": POLL_SECONDS if args.browser else args.interval,
        "B": args.B, "G": args.G, "steps": args.steps, "window": args.window,
        "median_step_s_without": statistics.median(off), "median_step_s_with": statistics.median(on),
        "ratio": statistics.median(on) / statistics.median(off),
        "paired_window_ratio": statistics.median(paired) if paired else None, "pairs": len(paired),
        "ticks": len(poller.ticks), "redraws": len(poller.redraws),
        "median_redraw_ms": 1000 * statistics.median(poller.redraws) if poller.redraws else 0.0,
        "poller_cpu_per_wall_s": poller.cpu / max(poller.active_wall, 1e-9),
        "timed_steps": {"without": len(off), "with": len(on)}, "goal": "ratio <= 1.05",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result
    print(f"median step {r['median_step_s_without']:.3f} s without the live refresh, {r['median_step_s_with']:.3f} s "
          f"with it (every {args.interval:g} s): ratio {r['ratio']:.3f} ({(r['ratio'] - 1) * 100:+.1f}%; goal <= +5%)")
    if paired:
        print(f"window by window (each 'on' window against its two 'off' neighbours, {len(paired)} pairs): "
              f"median ratio {r['paired_window_ratio']:.3f}")
    if not args.browser:
        print(f"the refresh: {r['redraws']} of {r['ticks']} polls redrew, median {r['median_redraw_ms']:.0f} ms per "
              f"redraw; poller CPU {100 * r['poller_cpu_per_wall_s']:.1f}% of one core while on")


if __name__ == "__main__":
    main()

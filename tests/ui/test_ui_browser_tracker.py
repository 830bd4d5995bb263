"""In Chromium, on a stored run (no training): the All metrics view finds train/grad_norm,
smoothing changes the drawn trace, a run whose trainer died shows as crashed, and the CSV
download returns the run's steps."""

from __future__ import annotations

from ui_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, free_port

RID = "fake-run"
ANNOTATIONS = """() => { const gd = document.querySelector('#all_metrics-plot div[data-testid="plotly"]');
  return gd && gd.layout ? (gd.layout.annotations || []).map((a) => a.text) : []; }"""
TRACES = """() => { const gd = document.querySelector('#all_metrics-plot div[data-testid="plotly"]');
  return gd && gd.data ? gd.data.map((t) => [t.name, t.opacity === undefined ? 1 : t.opacity]) : []; }"""


def test_all_metrics_smoothing_and_csv_download(fake_store):
    from playwright.sync_api import sync_playwright

    from ui.app import build_app, launch

    for s in range(16, 20):
        fake_store.write_step(RID, s, {"train/grad_norm": 1.0 / s, "train/entropy": 0.3 + 0.1 * (s % 2)})
    demo = build_app(fake_store.root, poll_seconds=1.0)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
                page.goto(f"http://127.0.0.1:{port}/?run={RID}&tab=metrics")
                page.locator("#metrics-search textarea, #metrics-search input").first.fill("grad_norm")
                page.wait_for_function(f"() => JSON.stringify(({ANNOTATIONS})()) === "
                                       "JSON.stringify(['train/grad_norm'])", timeout=60_000)
                page.locator("#metrics-search textarea, #metrics-search input").first.fill("train/entropy")
                page.wait_for_function(f"() => ({ANNOTATIONS})().includes('train/entropy')", timeout=60_000)
                assert [t[0] for t in page.evaluate(TRACES)] == ["train/entropy"]
                slider = page.locator("#metrics-smoothing input[type=number]")
                slider.fill("0.8")
                slider.press("Enter")
                page.wait_for_function(f"() => ({TRACES})().some((t) => t[0] === 'train/entropy (raw)' && t[1] < 1)",
                                       timeout=60_000)
                page.screenshot(path=str(ARTIFACTS / "dashboard-all-metrics.png"), full_page=True)

                page.get_by_role("tab", name="Runs").click()
                # a trainer that died without recording its end: "crashed" in the status line and the
                # table, with its error event, and Stop says no session runs it
                fake_store.set_status(RID, "running")
                fake_store.heartbeat(RID)
                fake_store.add_event(RID, 19, "error", {"message": "RuntimeError: out of memory at step 20"})
                page.wait_for_function("() => document.querySelector('#run-status').innerText.includes('crashed')",
                                       timeout=60_000)
                assert "out of memory at step 20" in page.locator("#run-status").inner_text()
                page.wait_for_function("() => document.querySelector('#runs-table').innerText.includes('crashed')",
                                       timeout=60_000)
                page.locator("#btn-stop").click()
                page.wait_for_function("() => document.querySelector('#control-msg').innerText.includes('crashed')",
                                       timeout=30_000)
                page.locator("#btn-export-csv").click()
                link = page.locator("#export-file a").first
                link.wait_for(timeout=60_000)
                with page.expect_download(timeout=60_000) as dl:
                    link.click()
                text = open(dl.value.path()).read().splitlines()
                assert text[0].startswith("step,") and len(text) == 1 + 19     # a header and 19 steps
            finally:
                browser.close()
    finally:
        demo.controller.manager.shutdown()
        demo.close()

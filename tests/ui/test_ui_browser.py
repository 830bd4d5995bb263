"""A real browser (Debian's Chromium, headless, driven by Playwright for Python) loads the
dashboard, starts a run, sees a plot update, switches the strategy and sees the switch on
the timeline; the screenshot lands in test-artifacts/. Playwright never downloads a browser
here: a missing /usr/bin/chromium is a failure (the test set-up installs it)."""

from __future__ import annotations

from pathlib import Path

from ui_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

# the number of points in the reward plot, and whether its timeline names a strategy
POINTS = """() => { const gd = document.querySelector('#reward-plot div[data-testid="plotly"]');
  return gd && gd.data && gd.data.length ? (gd.data[0].x || []).length : 0; }"""
# whether the status line contains a text (the element is briefly absent while the page reloads)
STATUS_HAS = "(t) => (document.querySelector('#run-status') || {innerText: ''}).innerText.includes(t)"
TIMELINE_HAS = """(name) => ['#reward-plot', '#entropy-plot', '#diagnostics-plot'].every((id) => {
  const gd = document.querySelector(id + ' div[data-testid="plotly"]');
  return gd && gd.layout && (gd.layout.annotations || []).some((a) => String(a.text).includes(name)); })"""


def test_browser_start_watch_switch(dashboard):
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium); "
        "Playwright must not download a browser")
    from playwright.sync_api import sync_playwright

    url, demo = dashboard
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_role("tab", name="Runs").click()
            page.locator("#new-steps input").fill("400")
            page.locator("#new-G input").fill("4")
            page.locator("#new-B input").fill("4")
            page.locator("#new-eval-every input").fill("5")
            page.locator("#new-eval-n input").fill("4")
            page.get_by_text("More settings").click()
            page.locator("#new-eval-max input").fill("8")
            page.locator("#new-eval-seen input").fill("4")
            page.locator("#btn-start").click()

            # the app opens the live view on the new run; its reward plot fills as it trains
            page.wait_for_function(f"() => ({POINTS})() >= 2", timeout=180_000)
            first = page.evaluate(POINTS)
            page.wait_for_function(f"() => ({POINTS})() > {first}", timeout=60_000)
            assert "step" in page.locator("#run-status").inner_text()

            # the switch panel starts collapsed (plots first); Apply asks before it sends
            assert not page.locator("#btn-switch").is_visible()
            page.get_by_text("Switch strategy").click()
            page.locator("#btn-switch").click()   # "bbg" is the switch form's default
            page.wait_for_selector("#btn-switch-confirm", state="visible", timeout=30_000)
            assert "bbg" in page.locator("#switch-question").inner_text()
            page.locator("#btn-switch-confirm").click()
            page.wait_for_function(TIMELINE_HAS, arg="→ bbg", timeout=60_000)
            page.wait_for_timeout(1500)  # let the other plots draw
            shot = ARTIFACTS / "dashboard-live.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # the URL keeps the run and tab: a reload shows the same run, not "No run selected"
            rid = demo.controller.run_ids()[0]
            assert f"run={rid}" in page.url
            page.get_by_role("tab", name="Compare").click()
            page.wait_for_function("() => window.location.search.includes('tab=compare')", timeout=10_000)
            page.reload()
            page.wait_for_function(STATUS_HAS, arg=rid, timeout=30_000)
            page.wait_for_function("() => [...document.querySelectorAll('[role=tab]')].some((t) => "
                                   "t.innerText.includes('Compare') && t.getAttribute('aria-selected') === 'true')",
                                   timeout=30_000)
            page.goto(url)                        # no run in the URL: the most recent run is selected
            page.wait_for_function(STATUS_HAS, arg=rid, timeout=30_000)

            page.locator("#btn-stop").click()
            page.wait_for_function(STATUS_HAS, arg="stopped", timeout=120_000)
        finally:
            browser.close()

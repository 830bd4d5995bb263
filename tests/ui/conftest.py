"""Fixtures of the dashboard tests: a hand-filled store, and a live dashboard on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_run, ui_helpers

from ui_helpers import free_port  # noqa: E402


def pytest_configure(config):
    # gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    config.addinivalue_line("filterwarnings", "ignore:.*no_silent_downcasting:Warning")
    config.addinivalue_line("filterwarnings", "ignore:The copy keyword is deprecated:Warning")


@pytest.fixture
def fake_store(tmp_path):
    import fake_run

    return fake_run.fill(tmp_path / "ws")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """(url, demo) of a dashboard serving a fresh workspace; its training processes end with it."""
    from ui.app import build_app, launch

    ws = tmp_path_factory.mktemp("dashboard-ws")
    demo = build_app(ws, poll_seconds=1.0)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.controller.manager.shutdown()
        demo.close()

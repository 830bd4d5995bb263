"""``ui/`` imports no torch, directly or through the engine: it reads the store and
writes commands; training runs in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ui_imports_and_builds_without_torch(tmp_path):
    code = (
        "import sys\n"
        "import ui.app, ui.views, ui.drilldown, ui.compare, ui.tables, ui.live, ui.forms, ui.control, ui.runner\n"
        f"ui.app.build_app({str(tmp_path)!r})\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]

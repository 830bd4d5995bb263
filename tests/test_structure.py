"""Structure: one update path, seeds in their own torch-free module, a package whose star
import works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_star_import_of_the_strategies_package_works():
    ns: dict = {}
    exec("from workbench.strategies import *", ns)                # every name in __all__ exists
    assert {"build_strategy", "GroupBatch", "PRESETS"} <= set(ns)


def test_seeding_is_torch_free_and_stable():
    code = ("import sys; from workbench.seeding import row_seed; "
            "print(row_seed(0, 'train', 1, 'p01', 3), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    seed, torch_loaded = out.split()
    assert torch_loaded == "False" and 0 <= int(seed) < 2**63
    from workbench.seeding import row_seed

    assert int(seed) == row_seed(0, "train", 1, "p01", 3) != row_seed(0, "train", 1, "p01", 4)


def test_the_sampled_update_loop_is_written_once():
    """The engine and the simulator both train through ``workbench.update.update``; the
    clipped loss is called from there (and from the simulator's exact expected update)."""
    callers = {p.relative_to(ROOT).as_posix() for p in (ROOT / "workbench").rglob("*.py")
               if re.search(r"\bpolicy_loss\(", p.read_text()) and p.name != "losses.py"}
    assert callers == {"workbench/update.py", "workbench/sim/engine.py"}
    engine = (ROOT / "workbench" / "sim" / "engine.py").read_text()
    assert len(re.findall(r"\bpolicy_loss\(", engine)) == 1                  # expected_step only
    for path in ("workbench/session.py", "workbench/sim/engine.py"):
        src = (ROOT / path).read_text()
        assert re.search(r"\bupdate\(forward,", src), path
        assert "def _loss_settings" not in src or "loss_settings(self.config.loss, self.strategy)" in src

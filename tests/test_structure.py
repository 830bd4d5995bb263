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


def _string_constants(path: Path) -> set[str]:
    """The string literals of a module's code (docstrings left out)."""
    import ast

    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def test_metric_names_are_imported_not_retyped():
    """The dashboard, the CLI and the simulator name train/, eval/ and sim/ metrics through
    ``workbench.keys`` (torch-free), and every key a training step logs is defined there."""
    files = [*sorted((ROOT / "ui").glob("*.py")), ROOT / "workbench" / "cli.py",
             *sorted((ROOT / "workbench" / "sim").glob("*.py"))]
    retyped = {f"{p.relative_to(ROOT)}: {s}" for p in files for s in _string_constants(p)
               if re.fullmatch(r"(train|eval|sim)/[\w@]+", s)}
    assert not retyped, sorted(retyped)
    code = "import sys, workbench.keys; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip() == "False"
    from workbench import keys
    from workbench.sim import Simulator

    rec = Simulator(problems=8, prompts_per_step=2, train_problems=6, strategy="clip_cov").step()
    assert set(rec) - {"step"} <= keys.all_keys()

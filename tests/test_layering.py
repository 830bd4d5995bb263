"""Layering: the low layers (models, metrics, losses, keys, seeding, errors, paths) never
import the layers built on them. An import that runs back up makes a cycle waiting to happen
and drags the whole engine into code that should load on its own. And the quantities that
``workbench.metrics`` defines are computed there, not retyped where they are used."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "workbench"

LOW = [*sorted((PKG / "models").glob("*.py")), *sorted((PKG / "metrics").glob("*.py")),
       PKG / "losses.py", PKG / "keys.py", PKG / "seeding.py", PKG / "errors.py", PKG / "paths.py"]

# what sits above the low layers: tasks and their verifiers, rollout, strategies, the update
# loop, the engine, evaluation, experiments, the simulator, storage, pretraining, the CLI, the UI
HIGH = ("workbench.tasks", "workbench.evaluation", "workbench.session", "workbench.experiments",
        "workbench.rollout", "workbench.strategies", "workbench.update", "workbench.sim",
        "workbench.store", "workbench.pretrain", "workbench.integrations", "workbench.cli", "ui")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names, wherever it stands
    (inside functions and ``if TYPE_CHECKING`` too); relative imports resolved; for
    ``from a import b`` both ``a`` and ``a.b``."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return out


def _is_high(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HIGH)


def test_the_scan_sees_every_kind_of_import(tmp_path):
    """The checker itself: plain, from, relative, nested and TYPE_CHECKING imports all count."""
    pkg = tmp_path / "workbench" / "models"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import workbench.session\n"
                 "def g():\n    from ..tasks import get_task\n    from workbench import evaluation\n")
    found = imported_modules(f, root=tmp_path)
    assert {"workbench.session", "workbench.tasks", "workbench.tasks.get_task", "workbench.evaluation"} <= found
    assert sorted(m for m in found if _is_high(m)) == [
        "workbench.evaluation", "workbench.session", "workbench.tasks", "workbench.tasks.get_task"]
    assert not _is_high("workbench.metrics.kl") and not _is_high("uikit") and _is_high("ui.app")


@pytest.mark.parametrize("path", LOW, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_low_layers_do_not_import_upward(path):
    upward = sorted(m for m in imported_modules(path) if _is_high(m))
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}: move the code that needs them up a layer"


# the expressions that computed a full-distribution entropy or KL (p * log p with p =
# exp(log p), softmax(x) * x) or a log-ratio of log-probs (logp - old_logp, exp of it)
RETYPED = {
    "p log p (distribution_entropy / distribution_kl)": (r"\.exp\(\)\s*\*|\*\s*[\w.]+\.exp\(\)|softmax\([^)]*\)\s*\*"
                                                         r"|\b(?:p|probs?)\s*\*\s*[\w.]*(?:logp|scores)"),
    "log-prob difference (log_ratio / importance_ratio)": r"\b[\w.]*logp\w*(?:\.detach\(\))?\s*-\s*[\w.]*logp",
}


def test_entropy_kl_and_log_ratio_are_computed_in_metrics_only():
    found = [f"{p.relative_to(ROOT)}:{i}: {what}: {line.strip()}"
             for p in [*sorted(PKG.rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]
             if (PKG / "metrics") not in p.parents
             for i, line in enumerate(p.read_text().splitlines(), 1)
             for what, pattern in RETYPED.items()
             if re.search(pattern, line.split("#", 1)[0])]
    assert not found, "use the helpers in workbench.metrics:\n" + "\n".join(found)

"""Every teaching notebook executes end to end, small (WORKBENCH_NOTEBOOK_SMALL=1), in the
virtual environment's own kernel; notebooks are committed without outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_five_lessons_are_there():
    assert {"01", "02", "03", "04", "05"} <= {p.name[:2] for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs before committing"


RUNNER = """
import sys, nbformat, nbclient
src, dst, cwd = sys.argv[1:4]
nb = nbformat.read(src, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": cwd}})
try:
    client.execute()
finally:
    nbformat.write(nb, dst)
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    # Each notebook runs from a fresh Python process: a kernel client inside the long-lived
    # pytest process (after torch, gradio and asyncio users have run in it) was seen to hang
    # with the kernel idle.
    env = {**os.environ, "WORKBENCH_NOTEBOOK_SMALL": "1", "WORKBENCH_WORKSPACE": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}      # tiny tensors: a second thread only waits
    out = tmp_path / path.name
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(out), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stderr[-4000:]}"
    nb = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream").strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve(), "the notebook ran in another Python's kernel"
    assert _figures(nb) >= 3, f"{path.name} drew {_figures(nb)} plotly figures"


def _figures(nb) -> int:
    """Plotly figures in the cells' outputs and in the outputs of interactive (ipywidgets) views."""
    plotly = "application/vnd.plotly.v1+json"
    n = sum(plotly in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model in state.values():
        if model.get("model_name") == "OutputModel":
            n += sum(plotly in o.get("data", {}) for o in model["state"].get("outputs", []))
    return n

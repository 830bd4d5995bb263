"""Every teaching notebook executes end to end, small (WORKBENCH_NOTEBOOK_SMALL=1), in the
virtual environment's own kernel; notebooks are committed without outputs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbclient  # noqa: F401  (the dev extra installs both: a missing one is a failure, not a skip)
import nbformat

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


FIGURE = ("fig.show()", "widgets.interact(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_figure_says_what_to_look_for_and_the_lesson_ends_with_exercises(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(f in cell.source for f in FIGURE):
            before = nb.cells[i - 1]
            assert before.cell_type == "markdown" and before.source.startswith("**Look for:**"), \
                f"{path.name}: the figure of cell {i} needs a '**Look for:**' note just before it"
    heads = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Exercises")]
    assert len(heads) == 1, f"{path.name}: one '## Exercises' section at the end"
    rest = nb.cells[heads[0] + 1:]
    exercises = [c for c in rest if c.source.startswith("**Exercise ")]
    assert 2 <= len(exercises) <= 3 and len(exercises) == len(rest), f"{path.name}: 2-3 exercises close the lesson"
    for c in exercises:
        question, _, answer = c.source.partition("<details><summary>Answer</summary>")
        assert question.strip() and answer.strip().endswith("</details>") and len(answer) > 40, \
            f"{path.name}: every exercise has its answer in a closed <details> block"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_refer_only_to_files_in_the_repository(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "FEASIBILITY" not in text and "../shared" not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        assert not re.match(r"[a-z]+://", target), f"{path.name} links outside the repository: {target}"
        assert (path.parent / target.split("#")[0]).exists(), f"{path.name}: {target} does not exist"


def test_lesson_4_gives_the_expected_results_with_their_noise():
    nb = nbformat.read(ROOT / "notebooks" / "04_lora_run_embedded_model.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Expected results")]
    assert len(cells) == 1
    rows = [ln for ln in cells[0].splitlines() if ln.startswith("| ")]
    assert {"base", "grpo", "bbg", "iac_dlc"} <= {r.split("|")[1].strip() for r in rows}
    assert "one seed" in cells[0].lower()


RUNNER = Path(__file__).with_name("notebook_runner.py")
NOTEBOOK_TIMEOUT_S = 300       # the slowest notebook takes about 30 s at the small size on 2 busy cores


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    # Each notebook runs from a fresh Python process: a kernel client inside the long-lived
    # pytest process (after torch, gradio and asyncio users have run in it) was seen to hang
    # with the kernel idle. The runner's watchdog fails a cell whose kernel stays idle for
    # 60 s, with the kernel's last messages and stacks.
    env = {**os.environ, "WORKBENCH_NOTEBOOK_SMALL": "1", "WORKBENCH_WORKSPACE": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",   # tiny tensors: a second thread only waits
           "WORKBENCH_NB_CELL_TIMEOUT": "240"}
    out = tmp_path / path.name
    stray = ROOT / "notebooks" / "runs"
    stray_before = stray.exists()             # left by an older checkout: not this run's doing
    rc, err = run_runner(path, out, tmp_path, env)
    assert rc == 0, f"{path.name} failed:\n{err[-6000:]}"
    nb = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream").strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve(), "the notebook ran in another Python's kernel"
    assert _figures(nb) >= 3, f"{path.name} drew {_figures(nb)} plotly figures"
    if "to_store(" in _code(path) or "Session(" in _code(path):           # its runs are in the given store
        assert (tmp_path / "runs" / "store.sqlite").is_file(), f"{path.name} wrote no run to $WORKBENCH_WORKSPACE"
    assert stray_before or not stray.exists(), "a notebook wrote a run store inside notebooks/"


def run_runner(path: Path, out: Path, cwd: Path, env: dict, timeout: float = NOTEBOOK_TIMEOUT_S) -> tuple[int, str]:
    """Run tests/notebook_runner.py in a session of its own; past `timeout` kill it and every
    process it started (the kernel runs in a session of its own too) and return its output."""
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(path), str(out), str(cwd)], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        for pid in reversed(_descendants(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        output, _ = proc.communicate()
        return -9, f"{output}\n[killed after {timeout:.0f} s with everything it started]"


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (the runner's own /proc walk)."""
    from notebook_runner import _tree

    return _tree(pid)


def test_a_hung_cell_fails_within_a_minute_with_the_kernels_last_message(tmp_path):
    """The watchdog: a cell that waits forever (kernel idle, client waiting) fails after the
    stall limit, reports the kernel's last message and where its main thread waits, and
    leaves no kernel behind."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("print('first cell ran')"),
                nbformat.v4.new_code_cell("import threading\nnever = threading.Event()\n"
                                          "print('about to wait')\nnever.wait()")]
    src = tmp_path / "hang.ipynb"
    nbformat.write(nb, src)
    env = {**os.environ, "WORKBENCH_NB_STALL": "5", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    rc, err = run_runner(src, tmp_path / "out.ipynb", tmp_path, env, timeout=120)
    assert rc == 3, err[-3000:]
    assert time.monotonic() - started < 60
    assert "stalled: the kernel used no CPU and sent nothing for 5 s" in err
    assert "stream: about to wait" in err                     # the kernel's last message
    assert "never.wait()" in err and "kernel stacks:" in err  # where the kernel's main thread waits
    pid = int(re.search(r"pid (\d+) S \(sleeping\).*ipykernel_launcher", err).group(1))
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_kernels_own_output_never_blocks_when_nobody_reads_the_runners_pipes(tmp_path):
    """ipykernel echoes C-level output to the stdout/stderr it inherited. When those were the
    runner's pipes and the caller did not drain them, 64 KiB later the kernel blocked in
    write(): kernel and client idle, the cell never finishing. The runner gives the kernel
    a file instead."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import os\nos.write(2, b'x' * 300_000)\nprint('written')")]
    src, out = tmp_path / "loud.ipynb", tmp_path / "loud.out.ipynb"
    nbformat.write(nb, src)
    env = {**os.environ, "WORKBENCH_NB_STALL": "20", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(src), str(out), str(tmp_path)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=90)                   # nobody reads the pipes meanwhile
    except subprocess.TimeoutExpired:
        for pid in reversed(_descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)
        rc = None
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    assert rc == 0, err[-3000:]
    cell = nbformat.read(out, as_version=4).cells[0]
    assert "written" in "".join(o.get("text", "") for o in cell.outputs)


def test_notebooks_store_runs_where_the_cli_and_dashboard_look(monkeypatch, tmp_path):
    """A kernel starts in notebooks/: a plain "runs" would make a second store there. The
    notebooks take the checkout's runs/ (the CLI's default at the checkout's root), or
    $WORKBENCH_WORKSPACE."""
    from workbench.paths import notebook_workspace

    monkeypatch.delenv("WORKBENCH_WORKSPACE", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert notebook_workspace() == ROOT / "runs"
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path / "elsewhere"))
    assert notebook_workspace() == tmp_path / "elsewhere"
    for path in NOTEBOOKS:
        code = _code(path)
        if any(w in code for w in ("to_store(", "Session(", "RunStore(")):
            assert "WORKSPACE = notebook_workspace()" in code, f"{path.name}: store runs in notebook_workspace()"
        assert '"runs")' not in code and "'runs')" not in code, f"{path.name}: a relative runs/ lands in notebooks/"


def _code(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _figures(nb) -> int:
    """Plotly figures in the cells' outputs and in the outputs of interactive (ipywidgets) views."""
    plotly = "application/vnd.plotly.v1+json"
    n = sum(plotly in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model in state.values():
        if model.get("model_name") == "OutputModel":
            n += sum(plotly in o.get("data", {}) for o in model["state"].get("outputs", []))
    return n

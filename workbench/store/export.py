"""Export a run's scalars as a wide table (one row per step, one column per key).

Wide, because that is what a spreadsheet, pandas or a plotting script wants to read.
A cell is empty (CSV) / null (Parquet) where the key was not logged at that step, and
NaN where NaN was logged, so the two stay distinguishable. pyarrow is imported only
when Parquet is asked for, keeping the store importable without it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from workbench.errors import ConfigError

FORMATS = ("csv", "parquet")
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

Series = dict[str, list[tuple[int, float]]]


def resolve_format(path: Path, fmt: str | None) -> str:
    """The export format: ``fmt`` if given, else from the file suffix."""
    chosen = fmt.lower().lstrip(".") if fmt else _SUFFIXES.get(path.suffix.lower())
    if chosen not in FORMATS:
        got = repr(fmt) if fmt else f"suffix {path.suffix or '(none)'!r} of {path}"
        raise ConfigError(
            f"unknown export format {got}; valid formats: {', '.join(FORMATS)} "
            "(pass fmt= or use a .csv / .parquet file name)"
        )
    return chosen


def wide(series: Series) -> tuple[list[str], list[list[float | int | None]]]:
    """Column names (step first, then sorted keys) and rows; None marks 'not logged'."""
    keys = sorted(series)
    by_step: dict[int, dict[str, float]] = {}
    for key in keys:
        for step, value in series[key]:
            by_step.setdefault(step, {})[key] = value
    rows = [[step, *(by_step[step].get(k) for k in keys)] for step in sorted(by_step)]
    return ["step", *keys], rows


def write_table(path: Path, fmt: str, columns: list[str], rows: list[list[float | int | None]]) -> Path:
    """Write atomically (temp file, then rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(columns)
                for row in rows:
                    writer.writerow(["" if v is None else v for v in row])
        else:
            _write_parquet(tmp, columns, rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_parquet(path: Path, columns: list[str], rows: list[list[float | int | None]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise ConfigError("Parquet export needs pyarrow: `pip install pyarrow`, or export to .csv") from exc
    arrays = [pa.array([r[0] for r in rows], type=pa.int64())]
    arrays += [pa.array([r[i] for r in rows], type=pa.float64()) for i in range(1, len(columns))]
    pq.write_table(pa.table(arrays, names=columns), str(path))

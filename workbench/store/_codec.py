"""Turning the API's plain Python values into column values and back.

Callers on the training side hand over numpy scalars, small arrays or tensors as often
as plain floats; anything with ``tolist()`` is converted (duck-typed, so this module
imports neither numpy nor torch).  Everything else that JSON cannot hold is a
ConfigError that says which row and field, raised inside the write transaction so
nothing of the write is kept.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from workbench.errors import ConfigError

#: Keys the store adds to the rows it returns; a caller's extra field may not shadow them.
RESERVED = frozenset({"run_id", "step", "eval_id"})

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars/arrays, torch tensors
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def dumps(value: Any, where: str) -> str:
    """JSON text of ``value``; ``where`` names the argument in the error."""
    try:
        return json.dumps(value, default=_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}; use str, int, float, bool, None, lists and dicts") from exc


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def to_float(value: Any, where: str) -> float | None:
    """A REAL column value: NaN and None become NULL (read back as NaN)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} must be a number, got {value!r}") from exc
    return None if math.isnan(out) else out


def from_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def to_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return int(value.__index__())


def check_dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a dict, got {type(value).__name__}")
    return dict(value)


def check_run_id(run_id: Any) -> str:
    """Run ids name folders (checkpoints), so only path-safe characters are allowed."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(
            f"run_id {run_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-' "
            "and start with a letter or digit"
        )
    return run_id


def slug(name: str) -> str:
    """A path-safe fragment of a run name for default run ids."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:40] or "run"


def split_row(
    row: Any,
    where: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> tuple[dict[str, Any], str | None]:
    """Split an input row into its known columns and the JSON text of the rest."""
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where} must be a dict, got {type(row).__name__}")
    missing = [k for k in required if k not in row]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)} (has {', '.join(map(str, row))})")
    known = set(required) | set(optional)
    cols = {k: row.get(k) for k in (*required, *optional)}
    extra = {k: v for k, v in row.items() if k not in known}
    clash = RESERVED.intersection(extra)
    if clash:
        raise ConfigError(f"{where} may not carry the field(s) {', '.join(sorted(clash))}: the store sets them")
    return cols, (dumps(extra, where) if extra else None)


def merge_extra(base: dict[str, Any], extra: str | None) -> dict[str, Any]:
    """The row as the caller wrote it: known columns plus the extra fields, flat."""
    if extra:
        base.update(loads(extra))  # split_row kept extras disjoint from the columns
    return base


def sample_params(s: Any, where: str) -> tuple[Any, ...]:
    """(problem_id, completion, reward, correct, mode_key, extra) of one sample dict."""
    cols, extra = split_row(s, where, ("problem_id", "completion", "reward", "correct"), ("mode_key",))
    mode = cols["mode_key"]
    return (
        str(cols["problem_id"]),
        str(cols["completion"]),
        to_float(cols["reward"], f"{where} reward"),
        int(bool(cols["correct"])),
        None if mode is None else str(mode),
        extra,
    )


def sample_row(r: sqlite3.Row) -> dict[str, Any]:
    base = {
        "problem_id": r["problem_id"],
        "completion": r["completion"],
        "reward": from_float(r["reward"]),
        "correct": bool(r["correct"]),
        "mode_key": r["mode_key"],
    }
    return merge_extra(base, r["extra"])


def placeholders(items: Iterable[Any]) -> str:
    return ",".join("?" for _ in items)

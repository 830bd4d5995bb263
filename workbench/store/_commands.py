"""What a command may carry: the one check both ends of the command channel run.

``send_command`` runs it so a bad request fails at once, in the sender, with a clear
ConfigError; the session runs it again on every row it reads, because a row can reach
the table without ``send_command`` (raw SQL, another version of the workbench), and a
row that fails is marked ``rejected`` instead of stopping training. Torch-free, like the
rest of the store, so the dashboard can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from workbench.errors import ConfigError

#: Command kinds a session understands, with the payload fields each one accepts.
COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "pause": (),
    "resume": (),
    "stop": (),
    "step": ("n",),
    "evaluate": (),
    "checkpoint": (),
    "set_strategy": ("strategy", "params", "at_step"),
}
COMMANDS = tuple(COMMAND_FIELDS)
#: The largest ``step`` count one command may ask for.
MAX_STEP_COUNT = 1_000_000


def _finite_json(value: Any, where: str, depth: int = 0) -> None:
    """Strategy parameters: JSON scalars, lists and dicts of them, numbers finite."""
    if depth > 8:
        raise ConfigError(f"{where} is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: numbers must be finite")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a non-string key {k!r}")
            _finite_json(v, f"{where}.{k}", depth + 1)
        return
    raise ConfigError(f"{where} = {value!r}: expected a number, string, bool, null, list or dict")


def check_command(kind: Any, payload: Any) -> dict[str, Any]:
    """The payload of a valid command (defaults filled in), or a ConfigError saying which
    field is wrong and what is expected."""
    if not isinstance(kind, str) or kind not in COMMAND_FIELDS:
        raise ConfigError(f"unknown command {kind!r}; valid: {', '.join(COMMANDS)}")
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise ConfigError(f"command {kind!r}: the payload must be a dict, got {type(payload).__name__} {payload!r}")
    allowed = COMMAND_FIELDS[kind]
    unknown = [str(k) for k in payload if k not in allowed]
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no payload"
        raise ConfigError(f"command {kind!r}: unknown field(s) {', '.join(unknown)}; it {takes}")
    out: dict[str, Any] = {}
    if kind == "step":
        n = payload.get("n", 1)
        if isinstance(n, float) and math.isfinite(n) and n.is_integer():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConfigError(f"command 'step': n must be a whole number of steps (1 to {MAX_STEP_COUNT}), got {n!r}")
        if not 1 <= n <= MAX_STEP_COUNT:
            raise ConfigError(f"command 'step': n = {n} is out of range; expected 1 to {MAX_STEP_COUNT}")
        out["n"] = n
    elif kind == "set_strategy":
        if "strategy" not in payload:
            raise ConfigError("command 'set_strategy' needs a 'strategy' field, e.g. {\"strategy\": \"grpo\"}")
        spec = payload["strategy"]
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"command 'set_strategy': strategy must be a non-empty name such as 'grpo', got {spec!r}")
        params = payload.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"command 'set_strategy': params must be a dict of PIECE.PARAM -> value, "
                              f"got {type(params).__name__} {params!r}")
        _finite_json(dict(params), "command 'set_strategy': params")
        out = {"strategy": spec.strip(), "params": dict(params)}
        at = payload.get("at_step")
        if at is not None:  # switch after this step (the session keeps it pending until then)
            if isinstance(at, float) and math.isfinite(at) and at.is_integer():
                at = int(at)
            if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= 10**9:
                raise ConfigError(f"command 'set_strategy': at_step must be a step number >= 0 (switch after that "
                                  f"step), got {at!r}")
            out["at_step"] = at
    return out

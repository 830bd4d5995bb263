"""What a web client may ask of the dashboard, and who may ask.

Threat model (docs/dashboard.md says the same for users): whoever can send HTTP requests
to the dashboard can start training processes as the dashboard's user. So

- nothing a client sends may name code, modules or paths that the server then imports,
  runs or opens outside its workspace (``WebPolicy``): only registered task families with
  their documented parameters (no custom verifiers, which are code; data files only from
  ``<workspace>/data``), models from an allow-list (the embedded ones plus what the
  operator passed with ``--allow-model``), and the dashboard's own workspace;
- uploads are refused (the dashboard has no upload component, and an upload would place
  a file of the client's choosing on disk);
- requests whose ``Host`` (or ``Origin``) is not an address the dashboard serves are
  refused (``HostGuard``): a web page on another site cannot reach a dashboard on
  127.0.0.1 by pointing its own DNS name at 127.0.0.1 (DNS rebinding);
- a dashboard reachable from other machines (``--host`` other than loopback, or
  ``--share``) refuses to start without credentials (``exposure_auth``).

Custom verifiers, arbitrary model folders and Hub ids stay CLI and Python features.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import RunConfig
from workbench.errors import ConfigError
from workbench.models.loading import embedded_models  # torch-free; ui.forms imports it from here
from workbench.tasks import list_tasks

#: Task families a web client may start, with the parameters it may set. ``custom`` is
#: absent: its verifier is a ``module:function`` or ``.py`` path, i.e. code.
WEB_TASK_PARAMS: dict[str, tuple[str, ...]] = {
    "two_primes": (),
    "countdown": (),
    "gsm8k": ("path", "question_field", "answer_field", "eval_size", "seed"),
}
#: Task parameters that name a file: accepted only inside ``<workspace>/data``.
PATH_PARAMS = ("path",)
#: Config fields a web client may not set through "other config fields": each has its own
#: checked form field (model, task, strategy) or is the dashboard's own (workspace).
FORBIDDEN_FIELDS = {
    "workspace": "runs always go to the dashboard's own run store",
    "model.name_or_path": "choose the model in the Model field",
    "task.name": "choose the task in the Task field",
    "task": "choose the task in the Task field and its parameters as task.params",
    "model": "set model.dtype, model.device or model.chat_template one at a time",
    "strategy": "choose the strategy in the Strategy field",
    "strategy_params": "set strategy parameters in the parameter table",
}

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
ENV_AUTH = "WORKBENCH_DASHBOARD_AUTH"


class PolicyError(ValueError):
    """A request the dashboard refuses; the message says which field and what is allowed."""


@dataclass(frozen=True)
class WebPolicy:
    """The dashboard's limits on what a web client may start (see the module docstring)."""

    workspace: Path
    #: Models the operator allowed with ``--allow-model``: local folders (resolved) or Hub ids.
    extra_models: tuple[str, ...] = ()
    embedded: tuple[str, ...] = field(default_factory=lambda: tuple(embedded_models()))

    @classmethod
    def create(cls, workspace: str | Path, allow_models: list[str] | tuple[str, ...] = ()) -> "WebPolicy":
        """The policy of a dashboard on ``workspace``; ``allow_models`` come from the operator's
        command line, so a local folder there must exist (checked now, not at a client's request)."""
        extra = []
        for name in allow_models or ():
            name = str(name).strip()
            if not name:
                continue
            p = Path(name).expanduser()
            if p.exists():
                if not (p / "config.json").is_file():
                    raise ConfigError(f"--allow-model {name}: the folder has no config.json (a saved Hugging Face "
                                      "model folder is needed)")
                extra.append(str(p.resolve()))
            elif name.startswith((".", "/", "~")) or "\\" in name:
                raise ConfigError(f"--allow-model {name}: no such folder")
            else:
                extra.append(name)
        return cls(Path(workspace).expanduser().resolve(), tuple(extra))

    @property
    def data_dir(self) -> Path:
        """The only folder whose files a web client may name (task data)."""
        return self.workspace / "data"

    def models(self) -> list[str]:
        """Every model a web client may start a run on (embedded first)."""
        return [*self.embedded, *(m for m in self.extra_models if m not in self.embedded)]

    # ------------------------------------------------------------------ checks
    def check_model(self, name: Any) -> str:
        """The allowed model ``name`` names, or PolicyError."""
        if not isinstance(name, str) or not name.strip():
            raise PolicyError(f"model: choose one of {', '.join(self.models())}")
        name = name.strip()
        if name in self.embedded or name in self.extra_models:
            return name
        p = Path(name).expanduser()
        try:
            resolved = str(p.resolve())
        except (OSError, RuntimeError):
            resolved = None
        if resolved is not None and resolved in self.extra_models:
            return resolved
        raise PolicyError(f"model: {name!r} is not allowed from the dashboard; allowed: {', '.join(self.models())}. "
                          "The operator can allow a local folder or Hub id with `workbench dashboard --allow-model "
                          "NAME` (or use `workbench train --model NAME` on the command line)")

    def check_task(self, name: Any) -> str:
        if name not in WEB_TASK_PARAMS or name not in list_tasks():
            allowed = [t for t in WEB_TASK_PARAMS if t in list_tasks()]
            extra = (" (custom tasks run a verifier, which is code: use `workbench train --task custom` on the "
                     "command line)" if name == "custom" else "")
            raise PolicyError(f"task: {name!r} cannot be started from the dashboard; choose one of "
                              f"{', '.join(allowed)}{extra}")
        return name

    def check_task_params(self, task: str, params: Any) -> dict[str, Any]:
        """Task parameters with every file resolved inside ``data_dir``, or PolicyError."""
        if params in (None, ""):
            return {}
        if not isinstance(params, dict):
            raise PolicyError("task.params: a JSON object of the task's parameters is expected")
        allowed = WEB_TASK_PARAMS[task]
        out: dict[str, Any] = {}
        for key, value in params.items():
            if key not in allowed:
                raise PolicyError(f"task.params: {key!r} cannot be set from the dashboard for {task!r}; allowed: "
                                  f"{', '.join(allowed) or 'none'}")
            if key in PATH_PARAMS:
                out[key] = str(self.data_file(value, f"task.params.{key}"))
            elif isinstance(value, (dict, list)):
                raise PolicyError(f"task.params.{key}: a single value is expected")
            else:
                out[key] = value
        return out

    def data_file(self, value: Any, what: str) -> Path:
        """An existing file inside ``<workspace>/data`` (relative paths are relative to it;
        symbolic links are followed before the check), or PolicyError."""
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise PolicyError(f"{what}: a file name inside {self.data_dir} is expected")
        root = self.data_dir.resolve()
        p = Path(value.strip()).expanduser()
        p = (p if p.is_absolute() else root / p).resolve()
        if not p.is_relative_to(root):
            raise PolicyError(f"{what}: {value!r} is outside the dashboard's data folder {root}; put the file "
                              "there and name it relative to that folder")
        if not p.is_file():
            raise PolicyError(f"{what}: {value!r} is not a file in {root}")
        return p

    def check_extra(self, extra: dict[str, Any], task: str) -> dict[str, Any]:
        """Validate "other config fields" (``section.field -> value``); task.params are checked here."""
        sections = {f.name for f in dataclasses.fields(RunConfig)}
        out: dict[str, Any] = {}
        for key, value in extra.items():
            key = str(key).strip()
            if key in FORBIDDEN_FIELDS:
                raise PolicyError(f"other config fields: {key} cannot be set from the dashboard: "
                                  f"{FORBIDDEN_FIELDS[key]}")
            if key.split(".")[0] not in sections:
                raise PolicyError(f"other config fields: {key} is not a config field (e.g. loss.eps_high=0.28, "
                                  "optim.updates_per_batch=2); strategy parameters go in the parameter table")
            if key == "task.params":
                if isinstance(value, str):
                    try:
                        value = json.loads(value) if value.strip() else {}
                    except json.JSONDecodeError as exc:
                        raise PolicyError(f"task.params: not valid JSON ({exc.msg})") from None
                value = self.check_task_params(task, value)
            elif key.startswith("task.params."):
                value = self.check_task_params(task, {key[len("task.params."):]: value})
                key, value = "task.params", {**out.get("task.params", {}), **value}
            out[key] = value
        return out


# ---------------------------------------------------------------------- who may ask
def is_loopback(host: str) -> bool:
    host = (host or "").strip().strip("[]")
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The ``Host`` names a dashboard bound to ``host`` answers to: the bound address, the
    loopback names, for a wildcard bind this machine's names and addresses, and ``extra``
    (``--allow-host``)."""
    names = {h.lower() for h in (*LOOPBACK_NAMES, host.strip().strip("[]"))}
    if host in ("0.0.0.0", "::", ""):
        try:
            hn = socket.gethostname()
            names |= {hn.lower(), socket.getfqdn().lower()}
            names |= {info[4][0].lower() for info in socket.getaddrinfo(hn, None)}
        except OSError:
            pass
    names |= {h.strip().lower().strip("[]") for h in extra if h.strip()}
    return names


def _hostname(value: str) -> str:
    """The host part of a Host header or an Origin URL, lower-case, without port or brackets."""
    v = value.strip().lower()
    v = re.sub(r"^[a-z][a-z0-9+.-]*://", "", v).split("/", 1)[0]
    if v.startswith("["):
        return v[1:].split("]", 1)[0]
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


class HostGuard:
    """ASGI middleware: refuse requests whose Host or Origin is not one of ``hosts`` (DNS
    rebinding, cross-site requests), and every upload. ``suffixes``: domains whose
    sub-domains are also allowed (the share tunnel's)."""

    def __init__(self, app, hosts: set[str], suffixes: tuple[str, ...] = ()):
        self.app = app
        self.hosts = {h.lower() for h in hosts}
        self.suffixes = tuple(s.lower() for s in suffixes)

    def _ok(self, name: str) -> bool:
        return name in self.hosts or any(name.endswith(s) for s in self.suffixes)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = _hostname(headers.get("host", ""))
        origin = headers.get("origin")
        reason = None
        if not self._ok(host):
            reason = (f"Host {host or '(none)'!r} is not an address this dashboard serves (DNS rebinding "
                      "protection). Open it by its bound address, or start it with --allow-host NAME.")
        elif origin is not None and not self._ok(_hostname(origin)):
            reason = f"requests from the page {origin!r} are refused (cross-site)."
        elif scope["type"] == "http" and scope.get("path", "").rstrip("/").endswith("/upload"):
            reason = "uploads are disabled on this dashboard."
        if reason is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = reason.encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def exposure_auth(host: str, share: bool, auth: str | None) -> tuple[str, str] | None:
    """Credentials of a dashboard on ``host`` (None: loopback without ``--auth``).

    ``auth``: "USER:PASS", "generate" (a random password, printed once by the caller), or
    None (then the ``WORKBENCH_DASHBOARD_AUTH`` environment variable, if set). A dashboard
    reachable from elsewhere (``--host`` not loopback, or ``--share``) without credentials
    is a ConfigError: anyone who can reach it could start processes as this user.
    """
    auth = auth if auth not in (None, "") else os.environ.get(ENV_AUTH) or None
    if auth is None:
        if share or not is_loopback(host):
            where = "a public share link" if share else f"--host {host}"
            raise ConfigError(
                f"{where} makes the dashboard reachable from other machines, and whoever reaches it can start "
                "training processes as you: give credentials with --auth USER:PASS (or the environment variable "
                f"{ENV_AUTH}=USER:PASS), or --auth generate for a random password printed once")
        return None
    if auth == "generate":
        return "workbench", secrets.token_urlsafe(18)
    user, sep, password = auth.partition(":")
    if not sep or not user or len(password) < 8:
        raise ConfigError("--auth: expected USER:PASS with a password of at least 8 characters "
                          "(or --auth generate)")
    return user, password

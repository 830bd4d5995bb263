"""The dashboard runs no code and opens no file a web client chooses, answers only to its
own address, refuses uploads, and needs credentials whenever others can reach it.

Every payload is sent the way an attacker would send it: over HTTP, through
``gradio_client`` or a raw request, to a dashboard serving on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import sys

import pytest
from ui_helpers import free_port

from ui import forms
from ui.security import WebPolicy, allowed_hosts, exposure_auth
from workbench.errors import ConfigError


def _snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """(url, demo, workspace, outside) of a dashboard whose operator allowed one extra model folder."""
    from ui.app import build_app, launch

    ws = tmp_path_factory.mktemp("secure-ws")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "evil.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    (outside / "model").mkdir()
    (outside / "model" / "config.json").write_text("{}")
    allowed = tmp_path_factory.mktemp("allowed-model")
    (allowed / "config.json").write_text("{}")
    (ws / "data").mkdir()
    (ws / "data" / "escape.jsonl").symlink_to(outside / "evil.jsonl")
    (ws / "data" / "ok.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    demo = build_app(ws, poll_seconds=60.0, allow_models=[str(allowed)])
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo, ws, outside
    finally:
        demo.controller.manager.shutdown()
        demo.close()


#: (form fields, message fragment): each names code, a module, a path outside the workspace,
#: another workspace or a model the operator did not allow, and must be refused.
REFUSED = [
    ({"task": "custom", "extra": 'task.params={"path": "x.jsonl", "verifier": "os:system"}'}, "custom"),
    ({"task": "gsm8k", "extra": 'task.params={"verifier": "os:system"}'}, "'verifier' cannot be set"),
    ({"task": "gsm8k", "extra": "task.params.verifier=/tmp/evil.py"}, "'verifier' cannot be set"),
    ({"task": "gsm8k", "extra": 'task.params={"path": "/etc/passwd"}'}, "outside the dashboard's data folder"),
    ({"task": "gsm8k", "extra": 'task.params={"path": "../../../../etc/hostname"}'}, "outside"),
    ({"task": "gsm8k", "extra": 'task.params={"path": "escape.jsonl"}'}, "outside"),          # a symlink out
    ({"task": "gsm8k", "extra": 'task.params={"config": "main", "path": "openai/gsm8k"}'}, "cannot be set"),
    ({"task": "gsm8k", "extra": 'task.params={"path": "openai/gsm8k"}'}, "not a file"),     # no Hub ids
    ({"task": "two_primes", "extra": 'task.params={"path": "ok.jsonl"}'}, "'path' cannot be set"),
    ({"extra": "task.name=custom"}, "Task field"),
    ({"extra": 'task={"name": "custom", "params": {"verifier": "os:system"}}'}, "Task field"),
    ({"extra": "workspace=/tmp/elsewhere"}, "dashboard's own run store"),
    ({"extra": "model.name_or_path=/tmp"}, "Model field"),
    ({"extra": 'model={"name_or_path": "/tmp"}'}, "one at a time"),
    ({"extra": 'strategy_params={"bbg.k": 4}'}, "parameter table"),
    ({"extra": "strategy=grpo"}, "Strategy field"),
    ({"model": "OUTSIDE/model"}, "not allowed from the dashboard"),                         # a real model folder
    ({"model": "Qwen/Qwen2.5-0.5B-Instruct"}, "--allow-model"),
    ({"model": "../../../../tmp"}, "not allowed"),
    ({"task": "../custom"}, "cannot be started"),
]


def test_start_run_refuses_code_paths_and_foreign_models(guarded):
    from gradio_client import Client

    url, demo, ws, outside = guarded
    client = Client(url, verbose=False)
    before = _snapshot(ws)
    for fields, fragment in REFUSED:
        fields = {k: str(v).replace("OUTSIDE", str(outside)) for k, v in fields.items()}
        kw = {"model": "tiny-primes", "task": "two_primes", "strategy": "grpo", **fields}
        with pytest.raises(Exception) as err:
            client.predict(api_name="/start_run", **kw)
        assert fragment in str(err.value), (fields, str(err.value))
    assert demo.controller.manager.started() == []          # no process was started
    assert _snapshot(ws) == before                          # and nothing was written


def test_uploads_foreign_hosts_and_cross_site_requests_are_refused(guarded):
    url, demo, ws, outside = guarded
    port = int(url.rstrip("/").rsplit(":", 1)[1])

    def request(path, method="GET", body=None, **headers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")

    assert request("/")[0] == 200
    assert request("/gradio_api/info", Host=f"localhost:{port}")[0] == 200
    status, text = request("/", Host=f"rebind.attacker.example:{port}")     # DNS rebinding
    assert status == 403 and "DNS rebinding" in text
    status, text = request("/gradio_api/info", Origin="http://attacker.example")
    assert status == 403 and "cross-site" in text
    boundary = "xyz"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"evil.py\"\r\n\r\n"
            f"import os\r\n--{boundary}--\r\n")
    for path in ("/gradio_api/upload", "/upload"):
        status, text = request(path, "POST", body, **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 403 and "uploads are disabled" in text, (path, status, text)
    assert not list(ws.rglob("evil.py"))


def test_allowed_inputs_still_start(tmp_path):
    """The policy refuses what it must and no more: a data file inside the workspace and an
    operator-allowed model folder pass, resolved to absolute paths on the command line."""
    (tmp_path / "data" / "sub").mkdir(parents=True)
    data = tmp_path / "data" / "sub" / "mine.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    model = tmp_path / "mymodel"
    model.mkdir()
    (model / "config.json").write_text("{}")
    policy = WebPolicy.create(tmp_path, [str(model)])
    form = {"model": str(model), "task": "gsm8k", "strategy": "grpo", "steps": 2, "group_size": 2,
            "prompts_per_step": 1, "eval_every": 0, "eval_n": 1,
            "extra": 'task.params={"path": "sub/mine.jsonl", "seed": 3}\neval.max_problems=2',
            "name": "--workspace=/tmp/evil"}
    req = forms.run_request(form, tmp_path, policy)
    assert f"--model={model.resolve()}" in req.argv
    assert f"--set=task.params={json.dumps({'path': str(data.resolve()), 'seed': 3})}" in req.argv
    from workbench.cli import build_parser

    args = build_parser().parse_args(req.argv[3:])
    assert getattr(args, "cfg:workspace") == str(tmp_path.resolve())   # the name stayed a name
    assert getattr(args, "cfg:name") == "--workspace=/tmp/evil"


def test_reachable_dashboard_needs_credentials(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.delenv("WORKBENCH_DASHBOARD_AUTH", raising=False)
    for argv, fragment in ((["--host", "0.0.0.0"], "--host 0.0.0.0"), (["--share"], "public share link"),
                           (["--host", "192.0.2.7"], "--auth USER:PASS"), (["--auth", "user:short"], "8 characters"),
                           (["--auth", "nocolon"], "USER:PASS")):
        assert main(["dashboard", "--workspace", str(tmp_path / "ws"), "--port", str(free_port()), *argv]) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "ws").exists()                   # refused before anything was created
    assert exposure_auth("127.0.0.1", False, None) is None
    assert exposure_auth("::1", False, None) is None
    user, password = exposure_auth("0.0.0.0", False, "generate")
    assert user == "workbench" and len(password) >= 16
    monkeypatch.setenv("WORKBENCH_DASHBOARD_AUTH", "alice:correct-horse")
    assert exposure_auth("0.0.0.0", True, None) == ("alice", "correct-horse")
    assert "attacker.example" not in allowed_hosts("0.0.0.0")
    assert {"127.0.0.1", "localhost", "::1"} <= allowed_hosts("127.0.0.1")


def test_credentials_are_enforced_on_the_api(tmp_path):
    from gradio_client import Client

    from ui.app import build_app, launch

    demo = build_app(tmp_path / "ws", poll_seconds=60.0)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, block=False, quiet=True, auth=("alice", "correct-horse"))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/gradio_api/call/start_run", body=json.dumps({"data": ["tiny-primes"]}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status in (401, 403), resp.status
        with pytest.raises(Exception):
            Client(f"http://127.0.0.1:{port}/", verbose=False, auth=("alice", "wrong-password")).predict(
                api_name="/list_runs")
        ok = Client(f"http://127.0.0.1:{port}/", verbose=False, auth=("alice", "correct-horse"))
        assert json.loads(ok.predict(api_name="/list_runs")) == []
        assert demo.controller.manager.started() == []
    finally:
        demo.close()


def test_the_policy_module_imports_no_torch():
    import subprocess

    code = ("import sys; import ui.security, ui.forms; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_allow_model_is_checked_at_start(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        WebPolicy.create(tmp_path, ["/no/such/folder"])


"""Freed tensor memory stays in the process (glibc's mmap and trim thresholds raised by
``mallopt``): memory freed in one round of allocations is reused by the next without new
page faults; ``WORKBENCH_MALLOC=default`` leaves glibc alone. Each case runs in its own
process (the settings are process-wide). Counted in page faults, not time."""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the settings exist only in glibc")

PROBE = r"""
import json, resource, sys, torch
applied = None
if sys.argv[1] == "direct":
    from workbench.allocator import keep_freed_memory
    applied = keep_freed_memory()
if sys.argv[1] == "session":
    from workbench.session import Session
    Session(workspace=sys.argv[2], steps=1, **{"rollout.prompts_per_step": 2, "rollout.group_size": 2})
    from workbench import allocator
    applied = allocator._done
def one_round():
    kept = [torch.ones(256 * 1024) for _ in range(64)]     # 64 tensors of 1 MiB, written, then freed
    del kept
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    one_round()
print(json.dumps({"applied": applied, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4}))
"""


def _probe(mode, tmp_path, **env):
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(tmp_path / "runs")], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_by_the_next_allocations(tmp_path):
    plain = _probe("plain", tmp_path)
    kept = _probe("direct", tmp_path)
    assert kept["applied"] is True
    pages = 64 * 2**20 / 4096                                         # what one round touches
    assert kept["faults"] < 0.1 * pages                               # reused without new faults
    assert plain["faults"] > 3 * kept["faults"]                       # glibc's own: pages handed back and faulted again


def test_the_environment_variable_leaves_glibc_alone(tmp_path):
    off = _probe("direct", tmp_path, WORKBENCH_MALLOC="default")
    kept = _probe("direct", tmp_path)
    assert off["applied"] is False and kept["applied"] is True
    assert off["faults"] > 3 * kept["faults"]                        # glibc's own behaviour: pages handed back


def test_a_session_applies_it(tmp_path):
    assert _probe("session", tmp_path)["applied"] is True
    assert _probe("session", tmp_path, WORKBENCH_MALLOC="default")["applied"] is False


def test_an_unknown_setting_is_refused_by_name(monkeypatch):
    from workbench import allocator
    from workbench.errors import ConfigError

    monkeypatch.setenv("WORKBENCH_MALLOC", "jemalloc")
    with pytest.raises(ConfigError, match="WORKBENCH_MALLOC = 'jemalloc': expected 'default'"):
        allocator.keep_freed_memory()

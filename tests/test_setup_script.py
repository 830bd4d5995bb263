"""scripts/setup-browser.sh against stub commands on PATH (no real apt-get runs): it waits
for another apt process's lock instead of failing at once."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "setup-browser.sh"

# apt-get stub: logs its arguments and DEBIAN_FRONTEND; `update` fails with a lock error
# while the counter file says the lock is still held (or with another error when asked).
APT_GET = r"""#!/usr/bin/env bash
echo "$DEBIAN_FRONTEND $*" >> "$STUB_LOG"
for a in "$@"; do
  if [ "$a" = update ]; then
    held=$(cat "$STUB_HELD")
    if [ "$STUB_MODE" = network ]; then echo "E: Failed to fetch http://deb.debian.org/ 404" >&2; exit 100; fi
    if [ "$held" -gt 0 ]; then
      echo $((held - 1)) > "$STUB_HELD"
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
      exit 100
    fi
  fi
done
exit 0
"""


def _stub(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture()
def fake(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "apt-get", APT_GET)
    _stub(bin_dir, "id", "#!/usr/bin/env bash\necho 0\n")                 # as root: no sudo
    _stub(bin_dir, "sleep", "#!/usr/bin/env bash\necho \"sleep $*\" >> \"$STUB_LOG\"\n")
    log, held = tmp_path / "log", tmp_path / "held"
    log.write_text("")

    def run(held_times: int, mode: str = "lock", lock_wait: str = "600", chromium: str | None = None):
        held.write_text(str(held_times))
        env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log), "STUB_HELD": str(held),
               "STUB_MODE": mode, "APT_LOCK_WAIT": lock_wait,
               "WORKBENCH_CHROMIUM": chromium or str(tmp_path / "no-chromium")}
        proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
        return proc, log.read_text().splitlines()

    return run


def test_waits_for_a_lock_held_by_another_apt_process(fake):
    proc, calls = fake(held_times=2)
    assert proc.returncode == 0, proc.stderr
    apt = [c for c in calls if not c.startswith("sleep")]
    assert [("update" if "update" in c.split() else c.split()[-1]) for c in apt] == ["update"] * 3 + ["chromium"]
    assert all(c.startswith("noninteractive -o DPkg::Lock::Timeout=600 ") for c in apt), apt
    assert sum(c.startswith("sleep") for c in calls) == 2
    assert "waiting" in proc.stderr


def test_gives_up_with_a_clear_message_when_the_lock_is_never_released(fake):
    proc, calls = fake(held_times=1000, lock_wait="0")
    assert proc.returncode == 1
    assert "still holds the package lists' lock after 0 s" in proc.stderr and "APT_LOCK_WAIT" in proc.stderr
    assert not any(c.endswith("chromium") for c in calls)


def test_other_failures_are_not_retried(fake):
    proc, calls = fake(held_times=0, mode="network")
    assert proc.returncode == 1
    assert "Failed to fetch" in proc.stderr and "not a lock" in proc.stderr
    assert len([c for c in calls if "update" in c.split()]) == 1


def test_nothing_to_do_when_chromium_is_there(fake, tmp_path):
    browser = tmp_path / "chromium"
    _stub(browser.parent, browser.name, "#!/bin/sh\n")
    proc, calls = fake(held_times=0, chromium=str(browser))
    assert proc.returncode == 0 and calls == []

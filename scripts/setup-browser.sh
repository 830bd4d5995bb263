#!/usr/bin/env bash
# The browser tests drive Debian's Chromium headless through Playwright (never a browser
# that Playwright downloads). Install it when it is missing.
#
# Another apt or dpkg process (e.g. a fresh machine's automatic updates) may hold the package
# locks: apt-get waits for them up to APT_LOCK_WAIT seconds (default 600) instead of failing
# at once. `apt-get update` takes the package-lists lock, which some APT releases do not wait
# for, so it is retried while its error names a lock, within the same limit.
set -euo pipefail
CHROMIUM=${WORKBENCH_CHROMIUM:-/usr/bin/chromium}
LOCK_WAIT=${APT_LOCK_WAIT:-600}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
    echo "The browser tests need Debian's chromium: run 'apt-get install chromium' as root." >&2
    exit 1
  fi
else
  SUDO=()
fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$LOCK_WAIT")
echo "installing Debian's chromium for the browser tests" >&2

deadline=$((SECONDS + LOCK_WAIT))
err=$(mktemp)
trap 'rm -f "$err"' EXIT
until ${SUDO[@]+"${SUDO[@]}"} "${APT[@]}" update -qq 2>"$err"; do
  if ! grep -qiE "could not get lock|unable to lock|is held by process" "$err"; then
    cat "$err" >&2
    echo "apt-get update failed (not a lock held by another process; see above)" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    cat "$err" >&2
    echo "another apt process still holds the package lists' lock after ${LOCK_WAIT} s; wait for it to finish" \
         "(or raise APT_LOCK_WAIT), then run this script again" >&2
    exit 1
  fi
  echo "another apt process holds the package lists' lock; waiting ..." >&2
  sleep 5
done
cat "$err" >&2
${SUDO[@]+"${SUDO[@]}"} "${APT[@]}" install -y -qq chromium >/dev/null

#!/usr/bin/env bash
# The browser test's browser (tests/dev/test_e2e.py drives it with Playwright): Debian's chromium, never a
# downloaded one. Only the tests need it; it takes root (or sudo) to install, once.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "error: the browser test needs /usr/bin/chromium (apt-get install chromium); run this as root once" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "installing Debian's chromium for the browser test"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/test_browser.py).
# Idempotent: does nothing, silently, when /usr/bin/chromium is already there.
# Needs root (or sudo) and Debian's package archive; downloads no browser of its own
# (the playwright PyPI package drives this system Chromium; never run `playwright install`).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "install_browser.sh: installing Debian's chromium ..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# fonts-liberation: metric-compatible fonts so pages render text sensibly in screenshots
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null

if ! [ -x /usr/bin/chromium ]; then
    echo "install_browser.sh: /usr/bin/chromium still missing after apt-get install" >&2
    exit 1
fi
echo "install_browser.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)" >&2

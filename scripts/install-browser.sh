#!/usr/bin/env bash
# Installs the browser the dashboard tests drive: Debian's `chromium` + `chromium-driver`
# (a tool's own browser download does not work offline). Idempotent; fails loudly when the
# browser cannot be installed.
set -euo pipefail

die() { echo "install-browser: error: $*" >&2; exit 1; }

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have; then
  exit 0
fi
command -v apt-get >/dev/null 2>&1 \
  || die "chromium and chromedriver are missing and apt-get is not available; install Chromium and a matching chromedriver on PATH"
sudo=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot apt-get install chromium chromium-driver"
  sudo="sudo"
fi
echo "install-browser: installing chromium + chromium-driver (apt-get)"
$sudo apt-get update -qq || die "apt-get update failed"
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null \
  || die "apt-get install chromium chromium-driver failed"
have || die "chromium or chromedriver still not on PATH after installing"
echo "install-browser: $(chromium --version 2>/dev/null || echo chromium) / $(chromedriver --version 2>/dev/null | head -n1)"

#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine; idempotent and quiet when
# everything is already present. Fails loudly when something cannot be installed.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

die() { echo "install-test-deps: error: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup)"
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install cargo-nextest --locked || die "could not install cargo-nextest"
fi

# Node.js + the pinned Claude ACP adapter.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null || die "could not install Node.js"
  else
    die "Node.js >= 20 and npm are required"
  fi
fi
bash scripts/install-agents.sh

# Python tools (schemathesis) in a project-local virtualenv.
venv="$repo_root/.venv"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  command -v python3 >/dev/null || die "python3 is required for schemathesis"
  python3 -m venv "$venv" || die "could not create $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt \
    || die "could not install scripts/requirements-test.txt"
fi

#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
# formatting and lint checks, every Rust test (including the real Claude adapter tests
# against the fake Anthropic API), schemathesis against a live server, and the orphan check.
#
# Usage: bash scripts/test.sh
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Keep the build outside the clone so repeated CI runs on this machine stay warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aegis-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# This machine exports IS_SANDBOX=yes, which makes Claude refuse sessions as root; the agent
# environment normalises it, but tests that spawn the adapter directly must not inherit it.
unset IS_SANDBOX || true

step() { printf '\n==> %s\n' "$*"; }
suite_started="$(date +%s)"

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo nextest (all tests, real Claude adapter included)"
cargo nextest run --workspace --no-fail-fast --status-level fail --final-status-level fail

step "schemathesis against a live server (scripted agent)"
bash scripts/schemathesis.sh

step "no agent process survived the suite"
bash scripts/check-orphans.sh "$suite_started"

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
bash scripts/install-browser.sh  # Debian chromium + chromium-driver for the dashboard tests

# Python tools (schemathesis, the `mcp` client for the MCP tests) in a project-local virtualenv.
venv="$repo_root/.venv"
if [[ ! -x "$venv/bin/schemathesis" ]] || ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
  command -v python3 >/dev/null || die "python3 is required for schemathesis"
  python3 -m venv "$venv" || die "could not create $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt \
    || die "could not install scripts/requirements-test.txt"
fi

# PostgreSQL and Redis on 127.0.0.1 for the store tests (crates/aegis-store-postgres,
# crates/aegis-store-redis). Tests never skip: they fail when these are not reachable.
# Override with AEGIS_TEST_POSTGRES_URL / AEGIS_TEST_REDIS_URL to use other servers.
if [[ -z "${AEGIS_TEST_POSTGRES_URL:-}" ]]; then
  pg_installed_now=0
  if ! command -v pg_ctlcluster >/dev/null || [[ -z "$(ls /etc/postgresql 2>/dev/null)" ]]; then
    command -v apt-get >/dev/null || die "PostgreSQL is not installed (and no apt-get to install it)"
    echo "installing PostgreSQL and Redis (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null \
      || die "could not install postgresql and redis-server"
    pg_installed_now=1
  fi
  pg_version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  pg_hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  if [[ "$pg_installed_now" == 1 && -f "$pg_hba" ]] && ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$pg_hba"; then
    # A fresh cluster asks for passwords over TCP; the tests connect as postgres without one.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$pg_hba"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload >/dev/null 2>&1 || true
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "starting PostgreSQL $pg_version"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start \
      || die "could not start PostgreSQL: pg_ctlcluster --skip-systemctl-redirect $pg_version main start"
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432"
  psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null \
    || die "cannot log in to PostgreSQL on 127.0.0.1:5432 as postgres without a password (the tests need trust auth for 127.0.0.1 in $pg_hba)"
fi

if [[ -z "${AEGIS_TEST_REDIS_URL:-}" ]]; then
  if ! command -v redis-server >/dev/null; then
    command -v apt-get >/dev/null || die "redis-server is not installed (and no apt-get to install it)"
    echo "installing Redis (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
      || die "could not install redis-server"
  fi
  if [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != "PONG" ]]; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null \
      || die "could not start redis-server"
    for _ in $(seq 1 30); do [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]] && break; sleep 0.2; done
  fi
  [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]] || die "Redis does not answer on 127.0.0.1:6379"
fi

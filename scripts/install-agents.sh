#!/usr/bin/env bash
# Install the pinned ACP agent adapters (agents/package-lock.json) into agents/node_modules.
#
# Idempotent: runs `npm ci` only when the adapter binary is missing or the lockfile changed since the
# last successful install (tracked by a stamp holding the lockfile's SHA-256).
#
# Usage: bash scripts/install-agents.sh [--force]
set -euo pipefail

MIN_NODE_MAJOR=20

die() {
  echo "install-agents: error: $*" >&2
  exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agents_dir="$repo_root/agents"
lockfile="$agents_dir/package-lock.json"
adapter_bin="$agents_dir/node_modules/.bin/claude-agent-acp"
stamp="$agents_dir/node_modules/.aegis-install-stamp"

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $arg (expected --force)" ;;
  esac
done

[[ -f "$agents_dir/package.json" ]] || die "missing $agents_dir/package.json"
[[ -f "$lockfile" ]] || die "missing $lockfile"

command -v node >/dev/null 2>&1 \
  || die "node not found on PATH. Install Node.js >= $MIN_NODE_MAJOR (e.g. apt-get install -y nodejs npm)."
command -v npm >/dev/null 2>&1 \
  || die "npm not found on PATH. Install npm (e.g. apt-get install -y npm)."

node_version="$(node -p 'process.versions.node')" || die "could not run 'node' to read its version"
node_major="${node_version%%.*}"
if ! [[ "$node_major" =~ ^[0-9]+$ ]] || (( node_major < MIN_NODE_MAJOR )); then
  die "Node.js $node_version is too old: need >= $MIN_NODE_MAJOR (found at $(command -v node))."
fi

if command -v sha256sum >/dev/null 2>&1; then
  lock_hash="$(sha256sum "$lockfile" | cut -d' ' -f1)"
else
  lock_hash="$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha256").update(f.readFileSync(process.argv[1])).digest("hex"))' "$lockfile")"
fi

if (( force == 0 )) && [[ -x "$adapter_bin" && -f "$stamp" && "$(cat "$stamp")" == "$lock_hash" ]]; then
  echo "install-agents: up to date ($adapter_bin)"
  exit 0
fi

echo "install-agents: installing agents from $lockfile with npm ci (node $node_version, npm $(npm --version))"
rm -f "$stamp"
(cd "$agents_dir" && npm ci --no-audit --no-fund) \
  || die "npm ci failed in $agents_dir (is the npm registry reachable? see output above)"

[[ -x "$adapter_bin" ]] || die "npm ci succeeded but $adapter_bin is missing"
printf '%s\n' "$lock_hash" >"$stamp"
echo "install-agents: done ($adapter_bin)"

#!/usr/bin/env bash
# schemathesis against a live `ag serve` (scripted agent): 0 server errors and 0 response
# schema violations, or this fails.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aegis-target}"
bin="$CARGO_TARGET_DIR/debug"
if [[ ! -x "$bin/ag" || ! -x "$bin/aegis-scripted-agent" ]]; then
  cargo build --quiet -p aegis-cli --bin ag -p aegis-testkit --bin aegis-scripted-agent
fi
st="$repo_root/.venv/bin/schemathesis"
[[ -x "$st" ]] || { echo "schemathesis missing: run scripts/install-test-deps.sh" >&2; exit 1; }

tmp="$(mktemp -d)"
port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
mkdir -p "$tmp/work"
cat > "$tmp/config.yaml" <<YAML
port: $port
stateDir: "$tmp/state"
defaultAgent: scripted
allowedWorkDirs: ["$tmp/work"]
maxSessions: 1000
agents:
  scripted:
    command: "$bin/aegis-scripted-agent"
    env: {SCRIPTED_AGENT_STATE_DIR: "$tmp/scripted"}
YAML
"$bin/ag" serve --config "$tmp/config.yaml" > "$tmp/server.log" 2>&1 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null || { cat "$tmp/server.log"; exit 1; }

set +e
"$st" run "http://127.0.0.1:$port/v1/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --checks not_a_server_error,response_schema_conformance \
  --exclude-path-regex '/events$|/stream$' \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
  --generation-deterministic \
  --request-timeout 20 \
  --no-color
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "--- server log (last 40 lines) ---"; tail -40 "$tmp/server.log"
  echo "schemathesis: 0 passed, 1 failed"
  exit $rc
fi
echo "schemathesis: 1 passed, 0 failed"

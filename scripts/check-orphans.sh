#!/usr/bin/env bash
# Fails when an agent process started by the test suite is still running: the scripted
# agent, the Claude ACP adapter, or the Claude CLI it spawns from agents/node_modules.
set -uo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
patterns=("aegis-scripted-agent" "$repo_root/agents/node_modules" "claude-agent-acp")
found=0
for pat in "${patterns[@]}"; do
  while read -r pid; do
    [[ -z "$pid" || "$pid" == "$$" ]] && continue
    echo "orphan: pid $pid: $(tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null)"
    found=1
  done < <(pgrep -f -- "$pat" || true)
done
if [[ $found -ne 0 ]]; then
  echo "orphan check: 0 passed, 1 failed"
  exit 1
fi
echo "orphan check: 1 passed, 0 failed"

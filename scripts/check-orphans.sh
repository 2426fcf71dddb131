#!/usr/bin/env bash
# Fails when an agent process started by the test suite is still running: the scripted
# agent, the Claude ACP adapter, or the Claude CLI it spawns from agents/node_modules.
# Usage: check-orphans.sh [SINCE_EPOCH_SECONDS]  — only processes started at or after SINCE
# count (the suite's start), so unrelated processes on the machine are never blamed.
set -uo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
since="${1:-0}"
btime="$(awk '/^btime/ {print $2}' /proc/stat)"
hz="$(getconf CLK_TCK)"
patterns=("aegis-scripted-agent" "$repo_root/agents/node_modules" "claude-agent-acp")
found=0
declare -A seen=()
for pat in "${patterns[@]}"; do
  while read -r pid; do
    [[ -z "$pid" || "$pid" == "$$" || -n "${seen[$pid]:-}" ]] && continue
    seen[$pid]=1
    stat="$(cat /proc/"$pid"/stat 2>/dev/null)" || continue
    # Field 22 (starttime, clock ticks since boot) counted after the ")" that ends the name.
    start_ticks="$(echo "${stat##*)}" | awk '{print $20}')"
    started=$(( btime + start_ticks / hz ))
    (( started >= since )) || continue
    echo "orphan: pid $pid: $(tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null)"
    found=1
  done < <(pgrep -f -- "$pat" || true)
done
if [[ $found -ne 0 ]]; then
  echo "orphan check: 0 passed, 1 failed"
  exit 1
fi
echo "orphan check: 1 passed, 0 failed"

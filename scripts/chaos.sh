#!/usr/bin/env bash
# make chaos: the whole robustness catalogue (e2e/robustness_test.go) with
# several seeds; every history checked linearizable. Writes the runs to
# docs/robustness-runs.md and exits with the tests' status.
#   ROBUSTNESS_SEEDS=1,2,3   the seeds (default 1,2,3)
#   ROBUSTNESS_FAULTS=a,b    only these faults (replaying a failure)
set -uo pipefail
cd "$(dirname "$0")/.."

seeds="${ROBUSTNESS_SEEDS:-1,2,3}"
rows="$(mktemp)"
log="$(mktemp -t chaos-XXXXXX.log)"
trap 'rm -f "$rows"' EXIT
start=$(date +%s)
ROBUSTNESS_CATALOGUE=all ROBUSTNESS_SEEDS="$seeds" ROBUSTNESS_RESULTS="$rows" \
  go test -count=1 -timeout 45m -v -run 'TestRobustness' ./e2e/ >"$log" 2>&1
code=$?
took=$(( $(date +%s) - start ))
grep -E '^\s*--- (PASS|FAIL)|robustness_test.go:[0-9]+: .* seed [0-9]+:' "$log" || true

out=docs/robustness-runs.md
{
  echo "# Robustness runs"
  echo
  echo "Written by \`make chaos\` ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git describe --always --dirty),"
  echo "seeds $seeds, ${took} s in all, go test exit status $code). See docs/ROBUSTNESS.md for what each column means."
  echo
  echo "| fault | seed | operations | ok | unknown | acked writes | watch events | linearizable | violations | took | verdict |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  cat "$rows"
} >"$out"
echo "chaos: $(wc -l <"$rows") runs written to $out; full log in $log"
exit $code

#!/usr/bin/env bash
# make chaos: the whole robustness catalogue (e2e/robustness_test.go) with
# several seeds; every history checked linearizable. Writes the runs to
# docs/robustness-runs.md and exits with the tests' status. Then the
# multi-region tests on the faithful network (formation, a replacement in
# each region, a region of a 2+2+1 cluster cut off) at each inter-region
# round trip of FAITHFUL_RTTS (default 80ms,200ms), their summaries added.
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

multi="$(mktemp)"
trap 'rm -f "$rows" "$multi"' EXIT
for rtt in $(echo "${FAITHFUL_RTTS:-80ms,200ms}" | tr , ' '); do
  mlog="$(mktemp -t chaos-multiregion-XXXXXX.log)"
  FAITHFUL_RTT="$rtt" go test -count=1 -timeout 20m -v -run 'TestMultiRegionFaithful|TestChaosMultiRegion' ./e2e/ >"$mlog" 2>&1 || code=1
  {
    echo "### Inter-region round trip $rtt"
    echo
    grep -E '^\s*--- (PASS|FAIL)' "$mlog" | sed 's/^ */- /'
    grep -E 'multiregion_(faithful|loss)_test.go:[0-9]+: (replaced|.* cut off at|3 healthy voters)' "$mlog" | sed 's/^ *[a-z_]*\.go:[0-9]*: /  - /'
    echo
  } >>"$multi"
  echo "chaos: multi-region at $rtt: log in $mlog"
done
# The other long scenarios of the catalogue (TestChaos*, left out of make test).
clog="$(mktemp -t chaos-rest-XXXXXX.log)"
go test -count=1 -timeout 20m -v -run '^TestChaos' -skip 'TestChaosMultiRegion' ./e2e/ >"$clog" 2>&1 || code=1
{
  echo "### Other long scenarios"
  echo
  grep -E '^\s*--- (PASS|FAIL)' "$clog" | sed 's/^ */- /'
  echo
} >>"$multi"
echo "chaos: the other long scenarios: log in $clog"
took=$(( $(date +%s) - start ))

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
  echo
  echo "## Multi-region on the faithful network"
  echo
  echo "Regions in network namespaces, public names and addresses, security groups enforced, the round trip between"
  echo "regions added by the public proxy (e2e/multiregion_faithful_test.go, e2e/multiregion_loss_test.go)."
  echo
  cat "$multi"
} >"$out"
echo "chaos: $(wc -l <"$rows") runs written to $out; full log in $log"
exit $code

#!/usr/bin/env bash
# The chaos soak as a benchmark: Tests/Chaos/chaos.py for MINUTES (default 20) on each seed,
# its report kept as Tests/Benchmarks/results/chaos-<date>-seed-<S>.md. Prints each report and
# a line per seed (violations, faults, heal p95); exits non-zero if any seed had a violation.
#   bash Tests/Benchmarks/chaos-soak.sh [--minutes 20] [--seeds 11,12,13]
# As root, after swift build (VIOLIN_BIN: other executables). About MINUTES + 3 per seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=20; seeds=11,12,13
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "chaos-soak.sh: unknown option $1 (--minutes, --seeds)" >&2; exit 64 ;;
  esac
done
status=0
summary=()
for s in ${seeds//,/ }; do
  out=Tests/Benchmarks/results/chaos-$(date +%F)-seed-$s.md
  rc=0
  # --keep: the run's files (logs, journals, the diagnosis of a violation) stay in /tmp.
  python3 Tests/Chaos/chaos.py --minutes "$minutes" --seed "$s" --report "$out" --keep || rc=$?
  [ $rc = 0 ] || status=1
  summary+=("seed $s: exit $rc, $(grep -o '| invariant violations | [0-9]*' "$out" | grep -o '[0-9]*$') violations, $(head -3 "$out" | tail -1 | cut -d';' -f1) ($out)")
done
printf '%s\n' "${summary[@]}"
exit $status

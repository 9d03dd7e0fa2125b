#!/usr/bin/env bash
# Instructions per forwarded frame, counted by callgrind on a fixed workload: `violin bench
# forward` (an in-process switch, loopback UDP, no privileges). Prints, per run and as the
# median, the forwarding thread's instructions per frame and those of receiveFromPort.
# The count varies a little with how frames fall into batches; compare medians of the same
# number of runs, two binaries in one sitting:
#   bash Tests/Benchmarks/forward-callgrind.sh .build/release/violin 3
#   bash Tests/Benchmarks/forward-callgrind.sh /tmp/violin-before 3
# Needs valgrind (apt-get install valgrind); a release build (swift build -c release --product violin).
set -euo pipefail
bin=${1:-.build/release/violin}
runs=${2:-3}
frames=${FRAMES:-20000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Debian 12's valgrind cannot read the DWARF 5 Swift writes: count on a copy without it.
objcopy --strip-debug "$bin" "$work/violin"
threads=(); receives=()
for i in $(seq "$runs"); do
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg" \
        "$work/violin" bench forward --frames "$frames" >/dev/null 2>&1
    # The forwarding thread is the one that runs receiveFromPort.
    for f in "$work"/cg-*; do
        if callgrind_annotate "$f" 2>/dev/null | grep -q receiveFromPort; then
            t=$(callgrind_annotate "$f" | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",", "", $1); print $1}')
            r=$(callgrind_annotate "$f" | grep -m1 'receiveFromPort' | awk '{gsub(",", "", $1); print $1}')
            threads+=($((t / frames))); receives+=($((r / frames)))
            echo "run $i: forwarding thread $((t / frames)) instructions/frame, receiveFromPort $((r / frames))"
        fi
    done
    rm -f "$work"/cg*
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median of $runs: forwarding thread $(median "${threads[@]}") instructions/frame, receiveFromPort $(median "${receives[@]}")"

#!/usr/bin/env bash
# The paper's Table 1 on this machine: a VIOLIN of 1, 2 and 4 QEMU guests (TCG) runs a
# communication-heavy job — every guest echoes M MiB back to a probe on the VIOLIN, all at
# once — once static and once with the whole VIOLIN migrated live to another host (domain d1
# -> d2) while the job runs. Prints the runtimes, the migration's overhead in seconds and %,
# the paper's figures beside them, and per migration the network blackout the switches
# measured over libvirt's downtime (target <= 1.2x).
#   bash Tests/Benchmarks/migration-bench.sh [--sizes 1,2,4] [--mbytes 24]
# As root; uses compose/lab.sh (VIOLIN_BIN: the executables; default: swift build).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
sizes=1,2,4; mbytes=24
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) sizes=$2; shift 2 ;;
    --mbytes) mbytes=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "migration-bench.sh: unknown option $1 (--sizes, --mbytes)" >&2; exit 64 ;;
  esac
done
if [ -z "${VIOLIN_BIN:-}" ]; then swift build >&2; VIOLIN_BIN=$(swift build --show-bin-path); fi
export VIOLIN_BIN
bin=$VIOLIN_BIN
cache=/var/cache/violin-test-guest
run=$(mktemp -d /tmp/violin-mbench.XXXXXX)
cleanup() { trap - EXIT; bash compose/lab.sh down "$run" || true; rm -rf "$run"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
bash compose/lab-libvirt.sh guest "$cache" 2>/dev/null
bash compose/lab.sh up "$run" --open   # an open lab: the benchmark calls the executors directly
tag=$(cat "$run/tag")
call() { ip netns exec "$tag-ctl" "$bin/violin" call "$@"; }
source compose/wait-for.sh
h1=tcp://10.77.0.1:7704; h3=tcp://10.77.0.3:7704
echo "VMs  static_s  migrated_s  overhead_s  overhead_%   paper(1 host)  blackout/downtime per VM" >"$run/table"
for n in ${sizes//,/ }; do
  vni=$((300 + n)); p="$tag-p$n"
  ip netns add "$p"; ip -n "$p" link set lo up
  call tcp://10.77.0.1:7701 add_port "{\"vni\":$vni,\"name\":\"${tag}q$n\"}" >/dev/null
  ip -n "$tag-h1" link set "${tag}q$n" netns "$p"
  ip -n "$p" addr add 10.0.0.100/24 dev "${tag}q$n"; ip -n "$p" link set "${tag}q$n" up
  ips=()
  for i in $(seq 1 "$n"); do
    call $h1 create_vm "{\"name\":\"s$n-$i\",\"vni\":$vni,\"mac\":\"52:54:00:30:0$n:0$i\",\"kernel\":\"$cache/vmlinuz\",
      \"initrd\":\"$cache/initrd.gz\",\"cmdline\":\"console=ttyS0 quiet violin.ip=10.0.0.$i/24\",\"memory_mb\":128,
      \"nic_port\":$((22000 + n * 20 + i * 2)),\"console\":\"$run/s$n-$i.console\"}" >/dev/null
    ips+=("10.0.0.$i")
  done
  for i in $(seq 1 "$n"); do wait_for 120 grep -q VIOLIN-GUEST-UP "$run/s$n-$i.console"; wait_for 30 ip netns exec "$p" ping -c 1 -W 1 "10.0.0.$i"; done
  list=$(IFS=,; echo "${ips[*]}")
  echo "== $n VM(s): static" >&2
  static=$(ip netns exec "$p" python3 "$root/compose/probe.py" bulk "$list" --mbytes "$mbytes" | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  echo "== $n VM(s): the whole VIOLIN migrated to h3 while the job runs" >&2
  ip netns exec "$p" python3 "$root/compose/probe.py" bulk "$list" --mbytes "$mbytes" >"$run/bulk$n" &
  bp=$!
  wait_for 120 grep -q running "$run/bulk$n"
  jobs=$(call $h1 migrate_violin "{\"vni\":$vni,\"to\":\"h3\"}" | python3 -c 'import json,sys; print(" ".join(j["job"] for j in json.load(sys.stdin)["jobs"]))')
  ratios=""
  for job in $jobs; do
    wait_for 180 bash -c "ip netns exec $tag-ctl $bin/violin call $h1 job '{\"job\":\"$job\"}' | grep -qE '\"state\" : \"(completed|failed|cancelled|rolled_back)\"'"
    ratios+=$(call $h1 job "{\"job\":\"$job\"}" | python3 -c '
import json,sys; j=json.load(sys.stdin)
b,d=j["blackout_ms"],j["downtime_ms"]
print("%s:%s/%sms=%s " % (j["vm"], b, d, ("%.2f" % (b/d)) if b is not None and d else "n/a"), end="")')
  done
  wait $bp
  migrated=$(tail -1 "$run/bulk$n" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  paper=$(case $n in 1) echo "4 s (4%)" ;; 2) echo "27 s (31%)" ;; 4) echo "35 s (8%)" ;; 8) echo "30 s (4%)" ;; *) echo "-" ;; esac)
  python3 - "$n" "$static" "$migrated" "$paper" "$ratios" >>"$run/table" <<'PY'
import sys
n, s, m, paper, ratios = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
print("%-4s %8.2f  %10.2f  %10.2f  %10.1f   %-13s  %s" % (n, s, m, m - s, 100 * (m - s) / s, paper, ratios.strip()))
PY
  for i in $(seq 1 "$n"); do call tcp://10.77.0.3:7704 destroy_vm "{\"name\":\"s$n-$i\"}" >/dev/null || true; done
done
cat "$run/table"

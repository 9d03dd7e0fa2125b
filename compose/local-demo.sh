#!/usr/bin/env bash
# The local demo: builds VIOLIN, starts the event bus and the four services on this machine
# (loopback endpoints in a private directory), shows their events flowing with `violin watch`,
# talks to each with `violin ping` / `violin status`; then builds a VIOLIN across two "hosts"
# (network namespaces, each with its violin-mesh) and pings between its two "VMs" (namespaces
# holding the switch's ports). Stops and removes everything it started.
#
#   bash compose/local-demo.sh [--keep]     # --keep: leave the services running (Ctrl-C stops)
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0; [ "${1:-}" = "--keep" ] && keep=1
bash compose/setup.sh
swift build
bin=$(swift build --show-bin-path)
run=$(mktemp -d /tmp/violin-demo.XXXXXX)
pids=()
tag=vd$$
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pkill -9 -f "$run" 2>/dev/null || true      # the switches the meshes started
  for ns in $tag-h1 $tag-h2 $tag-vm1 $tag-vm2; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT INT TERM
ep() { echo "ipc://$run/$1.sock"; }

echo "== starting violin-bus (requests $(ep bus), publishers $(ep pub), subscribers $(ep sub))"
"$bin/violin-bus" --listen "$(ep bus)" --publishers "$(ep pub)" --subscribers "$(ep sub)" \
  --heartbeat-interval 1 2>"$run/bus.log" & pids+=($!)
until "$bin/violin" ping --to "$(ep bus)" --timeout 0.5 >/dev/null 2>&1; do :; done

echo "== violin watch --bus $(ep sub)   (events as JSON lines)"
"$bin/violin" watch --bus "$(ep sub)" --count 10 --timeout 20 >"$run/events.jsonl" & watch=$!
# Wait until the watcher's subscription has reached the bus, so no event is missed.
until "$bin/violin" metrics --to "$(ep bus)" | grep -q '"bus_subscriptions_forwarded" : [1-9]'; do :; done

for svc in mesh monitor policy executor; do
  extra=()
  [ $svc = monitor ] && extra=(--libvirt-uri test:///default --sample-interval 1)   # libvirt's test driver
  [ $svc = policy ] && extra=(--database "$run/policy.sqlite" --subscribe "$(ep sub)")
  "$bin/violin-$svc" --listen "$(ep $svc)" --bus "$(ep pub)" --heartbeat-interval 1 \
    --instance "$svc@demo" "${extra[@]}" 2>"$run/$svc.log" & pids+=($!)
done
wait "$watch"
python3 - "$run/events.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    h = e["header"]
    print(f'  {e["topic"]:<20} seq={h["seq"]:<3} from {h["sender"]:<16} {json.dumps(e["body"], sort_keys=True)[:70]}')
PY
echo "== violin ping / status"
for svc in bus mesh monitor policy executor; do
  printf '  '; "$bin/violin" ping --to "$(ep $svc)"
done
"$bin/violin" status --to "$(ep policy)" | sed 's/^/  /'
echo "== violin call with an unknown request (an error reply, exit status 1)"
"$bin/violin" call "$(ep mesh)" frobnicate '{}' 2>&1 | sed 's/^/  /' || true
echo "== a VIOLIN across two hosts (network namespaces $tag-h1, $tag-h2)"
for ns in $tag-h1 $tag-h2 $tag-vm1 $tag-vm2; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add ${tag}a netns $tag-h1 type veth peer name ${tag}b netns $tag-h2
ip -n $tag-h1 addr add 10.99.0.1/24 dev ${tag}a; ip -n $tag-h1 link set ${tag}a up
ip -n $tag-h2 addr add 10.99.0.2/24 dev ${tag}b; ip -n $tag-h2 link set ${tag}b up
for i in 1 2; do
  ip netns exec $tag-h$i "$bin/violin-mesh" --listen tcp://10.99.0.$i:7701 --host-address 10.99.0.$i \
    --run-dir "$run/mesh$i" --bus "$(ep pub)" --instance "mesh@host$i" --log-level warning 2>"$run/mesh$i.log" & pids+=($!)
done
mesh() { ip netns exec $tag-h$1 "$bin/violin" "${@:2}"; }
until mesh 1 ping --to tcp://10.99.0.1:7701 --timeout 0.5 >/dev/null 2>&1; do :; done
until mesh 2 ping --to tcp://10.99.0.2:7701 --timeout 0.5 >/dev/null 2>&1; do :; done
echo "  host 1: add_port vm1 to VIOLIN 42; host 2: add_port vm2, joining through host 1"
mesh 1 call tcp://10.99.0.1:7701 add_port '{"vni":42,"name":"'$tag'p1"}' >/dev/null
mesh 2 call tcp://10.99.0.2:7701 add_port '{"vni":42,"name":"'$tag'p2","seed":"tcp://10.99.0.1:7701"}' >/dev/null
for i in 1 2; do
  ip -n $tag-h$i link set ${tag}p$i netns $tag-vm$i
  ip -n $tag-vm$i addr add 192.168.42.$i/24 dev ${tag}p$i
  ip -n $tag-vm$i link set ${tag}p$i up
done
mesh 2 mesh members 42 --to tcp://10.99.0.2:7701 | sed 's/^/  /'
echo "  vm1 (192.168.42.1, on host 1) pings vm2 (192.168.42.2, on host 2) through the VIOLIN:"
ip netns exec $tag-vm1 ping -c 3 -W 2 192.168.42.2 | sed 's/^/  /'
echo "  host 1's switch, its MAC table:"
"$bin/violin" switch fdb --to "ipc://$run/mesh1/switch-42.sock" | sed 's/^/  /'
if [ $keep = 1 ]; then
  echo "== services keep running; try: $bin/violin watch --bus $(ep sub)    (Ctrl-C to stop)"
  wait
fi
echo "== stopping"

#!/usr/bin/env bash
# The local demo: builds VIOLIN, starts the event bus and the four services on this machine
# (loopback endpoints in a private directory), shows their events flowing with `violin watch`,
# talks to each with `violin ping` / `violin status`, then stops everything it started.
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
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
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
  "$bin/violin-$svc" --listen "$(ep $svc)" --bus "$(ep pub)" --heartbeat-interval 1 \
    --instance "$svc@demo" 2>"$run/$svc.log" & pids+=($!)
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
if [ $keep = 1 ]; then
  echo "== services keep running; try: $bin/violin watch --bus $(ep sub)    (Ctrl-C to stop)"
  wait
fi
echo "== stopping"

#!/usr/bin/env bash
# Request/reply round trips per second and events per second through violin-bus, beside a
# pyzmq reference measured in the same run. Prints figures and ratios; asserts nothing.
#
#   Tests/Benchmarks/bus-bench.sh [--debug] [--seconds N] [--count N]
set -euo pipefail
cd "$(dirname "$0")/../.."
config=release; seconds=3; count=200000
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) config=debug ;;
    --seconds) seconds=$2; shift ;;
    --count) count=$2; shift ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
  shift
done
swift build -c "$config" >/dev/null
bin=$(swift build -c "$config" --show-bin-path)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BUS_REQ=tcp://127.0.0.1:$(port); PUB=tcp://127.0.0.1:$(port); SUB=tcp://127.0.0.1:$(port)
MESH=tcp://127.0.0.1:$(port); PYREP=tcp://127.0.0.1:$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$bin/violin-bus" --listen "$BUS_REQ" --publishers "$PUB" --subscribers "$SUB" --log-level warning & pids+=($!)
"$bin/violin-mesh" --listen "$MESH" --bus "$PUB" --log-level warning & pids+=($!)
for _ in $(seq 50); do "$bin/violin" ping --to "$MESH" --timeout 0.2 >/dev/null 2>&1 && break; done
for _ in $(seq 50); do "$bin/violin" ping --to "$BUS_REQ" --timeout 0.2 >/dev/null 2>&1 && break; done

num() { awk '{print $2}'; }
echo "== request/reply (${seconds} s each, $config build, $(nproc) cores)"
v_rpc=$("$bin/violin" bench rpc --to "$MESH" --seconds "$seconds"); echo "violin (ping_request to violin-mesh): $v_rpc"
p_rpc=$(python3 Tests/Benchmarks/pyzmq_reference.py rpc --endpoint "$PYREP" --seconds "$seconds"); echo "pyzmq REQ/REP echo:                  $p_rpc"
echo "== events through violin-bus ($count events)"
v_ev=$("$bin/violin" bench events --publishers "$PUB" --subscribers "$SUB" --count "$count"); echo "violin PUB -> bus -> SUB:  $v_ev"
p_ev=$(python3 Tests/Benchmarks/pyzmq_reference.py events --publishers "$PUB" --subscribers "$SUB" --count "$count"); echo "pyzmq PUB -> bus -> SUB:   $p_ev"
echo "== ratios (violin / pyzmq)"
awk -v a="$(echo "$v_rpc" | num)" -v b="$(echo "$p_rpc" | num)" 'BEGIN { printf "rpc_ratio %.2f\n", a / b }'
awk -v a="$(echo "$v_ev" | num)" -v b="$(echo "$p_ev" | num)" 'BEGIN { printf "events_ratio %.2f\n", a / b }'

#!/usr/bin/env bash
# The local launcher: one machine playing a VIOLIN infrastructure, with network namespaces as
# nodes on one bridge. A control node (10.77.0.100: violin-bus, violin-policy) and three host
# nodes in two domains (d1: h1 10.77.0.1, h2 10.77.0.2; d2: h3 10.77.0.3), each host with its
# own libvirtd (TCG, private mount namespace), violin-mesh, violin-monitor, violin-executor.
#   lab.sh up RUN                   start it all; RUN is a fresh directory (logs, databases, state)
#   lab.sh down RUN                 stop every process, libvirtd and guest, delete the namespaces
#   lab.sh start RUN NODE SERVICE   (re)start one service (e.g. after `lab.sh kill`)
#   lab.sh kill RUN NODE SERVICE    SIGKILL one service
#   lab.sh ns RUN NODE              print the node's namespace name (for ip netns exec)
# VIOLIN_BIN names the directory of the executables (default: swift build --show-bin-path).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: lab.sh up|down|start|kill|ns RUN ...}; run=${2:?RUN directory}
bin=${VIOLIN_BIN:-$(cd "$here/.." && swift build --show-bin-path)}
addr() { case $1 in ctl) echo 10.77.0.100 ;; h1) echo 10.77.0.1 ;; h2) echo 10.77.0.2 ;; h3) echo 10.77.0.3 ;; *) echo "no node $1" >&2; return 1 ;; esac; }
bus_pub=tcp://10.77.0.100:7710; bus_sub=tcp://10.77.0.100:7711
tag() { cat "$run/tag"; }

# A service in its node's namespace, detached from our descriptors; its pid in RUN/NODE/SERVICE.pid.
start() {
  local node=$1 svc=$2 a; a=$(addr "$node")
  local uri="qemu+unix:///system?socket=$run/$node/libvirt/sock/libvirt-sock"
  local args
  case $svc in
    bus) args=(--listen "tcp://$a:7700" --publishers $bus_pub --subscribers $bus_sub) ;;
    policy) args=(--listen "tcp://$a:7703" --bus $bus_pub --subscribe $bus_sub --database "$run/$node/policy.sqlite"
                  --evaluate-interval 5 --policy paper) ;;
    mesh) args=(--listen "tcp://$a:7701" --host-address "$a" --run-dir "$run/$node/mesh" --bus $bus_pub) ;;
    monitor) args=(--listen "tcp://$a:7702" --libvirt-uri "$uri" --sample-interval 1 --bus $bus_pub) ;;
    executor) args=(--listen "tcp://$a:7704" --host-id "$node" --libvirt-uri "$uri" --migration-uri "qemu+tcp://$a/system"
                    --mesh "tcp://$a:7701" --database "$run/$node/executor.sqlite" --memory-mb 2048 --bus $bus_pub) ;;
    *) echo "lab.sh: no service $svc" >&2; return 64 ;;
  esac
  mkdir -p "$run/$node"
  # It outlives this script: it must hold none of our caller's descriptors (a harness waits for
  # its pipes to close).
  (
    for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
    exec ip netns exec "$(tag)-$node" setsid "$bin/violin-$svc" "${args[@]}" --instance "$svc@$node"
  ) </dev/null >>"$run/$node/$svc.log" 2>&1 &
  echo $! >"$run/$node/$svc.pid"
  local port; port=$(echo "${args[1]}" | sed 's/.*://')
  local end=$((SECONDS + 30))
  while [ $SECONDS -lt $end ]; do
    ip netns exec "$(tag)-$node" "$bin/violin" ping --to "tcp://$a:$port" --timeout 0.5 >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$run/$node/$svc.pid")" 2>/dev/null || { echo "lab.sh: $svc on $node exited: $(tail -3 "$run/$node/$svc.log")" >&2; return 1; }
    sleep 0.1
  done
  echo "lab.sh: $svc on $node does not answer: $(tail -3 "$run/$node/$svc.log")" >&2
  return 1
}

up() {
  mkdir -p "$run"
  [ -f "$run/tag" ] || echo "vl$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')" >"$run/tag"
  local t; t=$(tag)
  ip netns add "$t-net"
  ip -n "$t-net" link add br0 type bridge
  ip -n "$t-net" link set br0 up
  for n in ctl h1 h2 h3; do
    ip netns add "$t-$n"
    ip -n "$t-$n" link set lo up
    ip link add eth0 netns "$t-$n" type veth peer name "$n" netns "$t-net"
    ip -n "$t-net" link set "$n" master br0 up
    ip -n "$t-$n" addr add "$(addr $n)/24" dev eth0
    ip -n "$t-$n" link set eth0 up
  done
  start ctl bus
  start ctl policy
  for h in h1 h2 h3; do
    mkdir -p "$run/$h"
    ip netns exec "$t-$h" bash "$here/lab-libvirt.sh" daemon "$run/$h/libvirt" "$(addr $h)" >/dev/null
    start $h mesh
    start $h monitor
    start $h executor
  done
}

down() {
  [ -f "$run/tag" ] || return 0
  local t; t=$(tag)
  for f in "$run"/*/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  for h in h1 h2 h3; do [ -d "$run/$h/libvirt" ] && bash "$here/lab-libvirt.sh" stop "$run/$h/libvirt" >/dev/null 2>&1 || true; done
  pkill -9 -f "$run/" 2>/dev/null || true        # switches the meshes started
  for ns in $(ip netns list | awk '{print $1}' | grep "^$t-" || true); do
    # Whatever still runs in a namespace (probes, guests' helpers) goes with it.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

case $cmd in
  up) up ;;
  down) down ;;
  start) start "${3:?NODE}" "${4:?SERVICE}" ;;
  kill) kill -9 "$(cat "$run/${3:?NODE}/${4:?SERVICE}.pid")" ;;
  ns) echo "$(tag)-${3:?NODE}" ;;
  *) echo "lab.sh: unknown command $cmd (up, down, start, kill, ns)" >&2; exit 64 ;;
esac

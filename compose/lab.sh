#!/usr/bin/env bash
# The local launcher: one machine playing a VIOLIN deployment, network namespaces as nodes on
# one bridge. It writes one configuration file per node (RUN/nodes/NODE.yaml, the format a
# real node uses; see compose/DEPLOY.md) and runs `violin node run FILE` in each node's
# namespace — what runs here is what a deployment runs. A control node (ctl, 10.77.0.100) and
# three host nodes in two domains (d1: h1 10.77.0.1, h2 10.77.0.2; d2: h3 10.77.0.3), each host
# with its own libvirtd (QEMU/TCG, private mount namespace, its guests in its own partition of
# the cgroup v1 cpu hierarchy, so CPU weights take effect). Each domain has its own bridge
# (the control node sits on d1's); the domains are joined by a router namespace (RUN's tag
# -rt, one leg per domain named for it, proxy ARP, so every node keeps its 10.77.0.0/24
# address), so a fault can act on the link between domains alone:
#   ip netns exec TAG-rt tc qdisc add dev d2 root netem loss 30%
#   lab.sh up RUN [--open]          write the node files and start every node; RUN: a fresh directory.
#                                   Keyed: every node gets a CURVE key with its role (RUN/keys/NODE.key;
#                                   an operator's RUN/keys/admin.key) and serves over CURVE;
#                                   --open: no keys (insecure: true, on the lab's own bridge)
#   lab.sh add RUN NODE DOMAIN      add a host node at run time (h4 .. h9, address 10.77.0.N)
#   lab.sh down RUN                 stop every node, libvirtd and guest; delete the namespaces
#   lab.sh kill RUN NODE SERVICE    SIGKILL one service (its node restarts it)
#   lab.sh start RUN NODE SERVICE   wait until the service answers again
#   lab.sh ns RUN NODE              print the node's namespace name (for ip netns exec)
#   lab.sh lose RUN NODE            the node lost: its link down, every process of it SIGKILLed
#                                   (node, services, switches, libvirtd, guests)
#   lab.sh revive RUN NODE          a lost node back: link up, libvirtd (no guests), its node again
#   lab.sh libvirtd-restart RUN NODE  SIGKILL a host's libvirtd and start it again (guests run on)
#   lab.sh curve RUN NODE           print the operator's CURVE options for NODE's services (if keyed)
# With VIOLIN_LAB_OBSERVE=1 every node serves Prometheus expositions on its address (ports
# 9700-9704, the bearer token in RUN/metrics.token; `violin node prometheus RUN/nodes/*.yaml`
# writes the scrape configuration), and the control node the live web view at
# http://10.77.0.100:9780/?access_token=TOKEN.
# VIOLIN_BIN names the directory of the executables (default: swift build --show-bin-path).
# VIOLIN_LAB_LEVERS=1 (for `up`): the policy with its fine-grain levers (the local demo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: lab.sh up|add|down|kill|start|ns RUN ...}; run=${2:?RUN directory}
bin=${VIOLIN_BIN:-$(cd "$here/.." && swift build --show-bin-path)}
addr() { case $1 in ctl) echo 10.77.0.100 ;; h[1-9]) echo "10.77.0.${1#h}" ;; *) echo "lab.sh: no node $1" >&2; return 1 ;; esac; }
port() { case $1 in bus) echo 7700 ;; mesh) echo 7701 ;; monitor) echo 7702 ;; policy) echo 7703 ;; executor) echo 7704 ;; esac; }
tag() { cat "$run/tag"; }

keyed() { [ -d "$run/keys" ]; }
# The operator's CURVE options for a service of NODE (none without keys).
curve() {
  keyed || return 0
  local server=$1; [ "$server" = ctl ] || [ -f "$run/keys/$server.pub" ] || server=ctl
  echo "--curve-key $run/keys/admin.key --server-key $run/keys/$server.pub"
}
new_key() {  # node: its key pair and role, allowed everywhere
  local role
  case $1 in admin) role=operator ;; ctl) role=control ;; *) role=host:$1 ;; esac
  "$bin/violin" keygen --out "$run/keys/$1" --role "$role" >/dev/null
  cp "$run/keys/$1.pub" "$run/keys/allowed/"
}

wait_answer() {  # node service seconds
  local a; a=$(addr "$1")
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    # shellcheck disable=SC2046
    ip netns exec "$(tag)-$1" "$bin/violin" ping --to "tcp://$a:$(port "$2")" --timeout 0.5 $(curve "$1") >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "lab.sh: $2 on $1 does not answer: $(tail -3 "$run/$1/$2.log" 2>/dev/null)" >&2
  return 1
}

# A domain's bridge, and its leg on the router between domains (once per domain).
domain_up() {  # domain
  local d=$1 t; t=$(tag)
  ip -n "$t-net" link show "br-$d" >/dev/null 2>&1 && return 0
  ip -n "$t-net" link add "br-$d" type bridge
  ip -n "$t-net" link set "br-$d" up
  ip link add "$d" netns "$t-rt" type veth peer name "rt-$d" netns "$t-net"
  ip -n "$t-net" link set "rt-$d" master "br-$d" up
  ip -n "$t-rt" addr add 10.77.0.254/32 dev "$d"
  ip netns exec "$t-rt" sysctl -qw "net.ipv4.conf.$d.proxy_arp=1" "net.ipv4.conf.$d.rp_filter=0" "net.ipv4.conf.$d.send_redirects=0"
  ip -n "$t-rt" link set "$d" up
}

netns() {  # node domain: its namespace, on its domain's bridge, routed to from the others
  local n=$1 d=$2 t; t=$(tag)
  domain_up "$d"
  ip netns add "$t-$n"
  ip -n "$t-$n" link set lo up
  ip link add eth0 netns "$t-$n" type veth peer name "$n" netns "$t-net"
  ip -n "$t-net" link set "$n" master "br-$d" up
  ip -n "$t-$n" addr add "$(addr $n)/24" dev eth0
  ip -n "$t-$n" link set eth0 up
  ip -n "$t-rt" route replace "$(addr $n)/32" dev "$d"
}

# `violin node run` in the node's namespace, holding none of our caller's descriptors (a test
# harness waits for its pipes to close); returns when the node says its services run.
node_run() {
  local n=$1
  mkdir -p "$run/$n"
  local from; from=$(wc -l <"$run/$n/node.log" 2>/dev/null || echo 0)   # a node run again: its new lines
  (
    for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
    exec ip netns exec "$(tag)-$n" setsid "$bin/violin" node run "$run/nodes/$n.yaml" --bin "$bin"
  ) </dev/null >>"$run/$n/node.log" 2>&1 &
  echo $! >"$run/$n/node.pid"
  local end=$((SECONDS + 60))
  until tail -n +"$((from + 1))" "$run/$n/node.log" 2>/dev/null | grep -q " running: "; do
    kill -0 "$(cat "$run/$n/node.pid")" 2>/dev/null || { echo "lab.sh: node $n failed: $(tail -5 "$run/$n/node.log")" >&2; return 1; }
    [ $SECONDS -lt $end ] || { echo "lab.sh: node $n did not start: $(tail -5 "$run/$n/node.log")" >&2; return 1; }
    sleep 0.1
  done
}

# VIOLIN_LAB_OBSERVE=1 (for `up`, kept for `add`): every node serves its Prometheus expositions
# (and the control node the web view), with RUN/metrics.token.
observe() {  # address [web]
  [ -f "$run/observe" ] || return 0
  echo "metrics_address: $1"
  echo "metrics_token_file: $run/metrics.token"
  [ "${2:-}" = web ] && echo "web_listen: $1:9780"
  return 0
}

host_file() {  # node domain
  local keys="insecure: true    # the lab run with --open: no keys, on its own bridge"
  if keyed; then
    # Keyed, libvirt migrates over TLS with the lab's CA (compose/lab-libvirt.sh ca).
    keys="key: $run/keys/$1.key
control_public_key: $run/keys/ctl.pub
allowed_keys: $run/keys/allowed
migration_uri: qemu+tls://$(addr "$1")/system
libvirt_pki: $run/$1/libvirt/pki/client"
  fi
  cat >"$run/nodes/$1.yaml" <<YAML
# Host node $1 of the local lab (compose/lab.sh).
role: host
node: $1
domain: $2
address: $(addr $1)
control_address: 10.77.0.100
libvirt_uri: qemu+unix:///system?socket=$run/$1/libvirt/sock/libvirt-sock
cores: 1
memory_mb: 2048
sample_interval: 1
switch_queues: 2    # two forwarding threads per switch: the lab's migrations run over sharded switches
data_dir: $run/$1
image_dir: $run/images
uplink_network: violin-nat
$(observe "$(addr $1)")
$keys
YAML
}

host_up() {  # node domain
  netns "$1" "$2"
  mkdir -p "$run/$1"
  host_file "$1" "$2"
  local ca=; keyed && ca=$run/ca
  VIOLIN_LAB_CGROUPS=cpu VIOLIN_LAB_CA=$ca ip netns exec "$(tag)-$1" bash "$here/lab-libvirt.sh" daemon "$run/$1/libvirt" "$(addr "$1")" >/dev/null
  node_run "$1"
}

# The hosts' image store (one for all: they share this machine's files): the tiny test guest
# as image `tiny`, from the cache compose/lab-libvirt.sh builds.
images() {
  local cache=/var/cache/violin-test-guest
  mkdir -p "$run/images/tiny"
  ln -sf "$cache/vmlinuz" "$run/images/tiny/vmlinuz"
  ln -sf "$cache/initrd.gz" "$run/images/tiny/initrd.gz"
  # panic=5: a guest whose kernel panics boots again in its own QEMU five seconds later, instead
  # of running on as a QEMU nothing answers in. softlockup_panic=1: a CPU stuck in the kernel for
  # 2 × watchdog_thresh s panics too (seen in the chaos soak: after a live migration under TCG a
  # guest's virtio-net said "output.0:id 0 is not a head!" and its CPU stayed stuck for good).
  echo "console=ttyS0 quiet panic=5 softlockup_panic=1 watchdog_thresh=5" >"$run/images/tiny/cmdline"
}

up() {
  mkdir -p "$run/nodes"
  images
  local keys="insecure: true    # the lab run with --open: no keys, on its own bridge"
  if [ "${1:-}" != --open ]; then
    mkdir -p "$run/keys/allowed"
    # Every key up front: the allowed lists are read when the services start.
    for n in admin ctl h1 h2 h3 h4 h5 h6 h7 h8 h9; do new_key $n; done
    bash "$here/lab-libvirt.sh" ca "$run/ca"      # the small CA of the hosts' libvirt TLS, once per lab
    keys="key: $run/keys/ctl.key
allowed_keys: $run/keys/allowed"
  fi
  [ -f "$run/tag" ] || echo "vl$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')" >"$run/tag"
  # The bearer token of every node's Prometheus exposition and of the web view.
  [ -f "$run/metrics.token" ] || (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$run/metrics.token")
  [ "${VIOLIN_LAB_OBSERVE:-}" = 1 ] && touch "$run/observe"
  local t; t=$(tag)
  ip netns add "$t-net"
  ip netns add "$t-rt"
  ip -n "$t-rt" link set lo up
  ip netns exec "$t-rt" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.all.send_redirects=0
  netns ctl d1
  # VIOLIN_LAB_LEVERS=1: the policy tries its fine-grain levers first, awaits their effect 20 s,
  # and takes each host's link for 4 Mbit/s (so a TCG guest can fill it). High demand is the
  # paper's 75 % of demand (use plus run-queue wait), so a busy loop counts as one however
  # little of a core a machine running other tests leaves it.
  local levers=
  [ "${VIOLIN_LAB_LEVERS:-}" = 1 ] && levers="levers: true
lever_settle: 20
link_mbit_s: 4"
  cat >"$run/nodes/ctl.yaml" <<YAML
# The control node of the local lab (compose/lab.sh).
role: control
node: ctl
address: 10.77.0.100
policy: paper
evaluate_interval: 5
data_dir: $run/ctl
$(observe 10.77.0.100 web)
$levers
$keys
YAML
  node_run ctl
  host_up h1 d1
  host_up h2 d1
  host_up h3 d2
}

# Every process of a node, SIGKILLed: what a power cut leaves (its files stay).
lose() {  # node
  local n=$1 t; t=$(tag)
  ip -n "$t-net" link set "$n" down 2>/dev/null || true
  for f in "$run/$n"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  [ -d "$run/$n/libvirt" ] && bash "$here/lab-libvirt.sh" crash "$run/$n/libvirt"
  pkill -9 -f "$run/$n/" 2>/dev/null || true
  for p in $(ip netns pids "$t-$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}

revive() {  # node
  local n=$1 t; t=$(tag)
  ip -n "$t-net" link set "$n" up
  if [ "$n" != ctl ]; then
    local ca=; keyed && ca=$run/ca
    VIOLIN_LAB_CGROUPS=cpu VIOLIN_LAB_CA=$ca ip netns exec "$t-$n" bash "$here/lab-libvirt.sh" daemon "$run/$n/libvirt" "$(addr "$n")" >/dev/null
  fi
  node_run "$n"
}

libvirtd_restart() {  # node
  local n=$1 ca=; keyed && ca=$run/ca
  bash "$here/lab-libvirt.sh" crash "$run/$n/libvirt"
  VIOLIN_LAB_CGROUPS=cpu VIOLIN_LAB_CA=$ca ip netns exec "$(tag)-$n" bash "$here/lab-libvirt.sh" daemon "$run/$n/libvirt" "$(addr "$n")" >/dev/null
}

down() {
  [ -f "$run/tag" ] || return 0
  local t; t=$(tag)
  for f in "$run"/*/node.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for f in "$run"/*/node.pid; do
    [ -f "$f" ] || continue
    for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
  done
  for f in "$run"/*/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  for d in "$run"/h*/libvirt; do [ -d "$d" ] && bash "$here/lab-libvirt.sh" stop "$d" >/dev/null 2>&1 || true; done
  pkill -9 -f "$run/" 2>/dev/null || true        # switches the meshes started
  for ns in $(ip netns list | awk '{print $1}' | grep "^$t-" || true); do
    # Whatever still runs in a namespace (probes, watchers) goes with it.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

case $cmd in
  up) up "${3:-}" ;;
  add) host_up "${3:?NODE (h4..h9)}" "${4:?DOMAIN}" ;;
  down) down ;;
  kill) kill -9 "$(cat "$run/${3:?NODE}/${4:?SERVICE}.pid")" ;;
  start) wait_answer "${3:?NODE}" "${4:?SERVICE}" 60 ;;
  ns) echo "$(tag)-${3:?NODE}" ;;
  lose) lose "${3:?NODE}" ;;
  revive) revive "${3:?NODE}" ;;
  libvirtd-restart) libvirtd_restart "${3:?NODE}" ;;
  curve) curve "${3:?NODE}" ;;
  *) echo "lab.sh: unknown command $cmd (up, add, down, kill, start, ns, curve, lose, revive, libvirtd-restart)" >&2; exit 64 ;;
esac

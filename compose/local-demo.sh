#!/usr/bin/env bash
# The local demo: a VIOLIN infrastructure on one machine, with real libvirt, QEMU and live
# migration. Network namespaces play the nodes: a control node (violin-bus, violin-policy) and
# three host nodes in two domains (domain d1: h1, h2; domain d2: h3), each host with its own
# libvirtd, violin-mesh, violin-monitor and violin-executor. Everything a user does goes through
# `violin`: two VIOLINs of tiny QEMU guests are made from their spec files (compose/demo-a.yaml,
# compose/demo-b.yaml; the same IP addresses in both) with `violin create`, looked at with
# `violin list` and `violin show`; pings go inside each VIOLIN and none across; `violin migrate`
# moves one VM live to the other domain while a 10 ms ping and a TCP stream run, then a whole
# VIOLIN (its head node stays home); then the policy, in automatic mode with its fine-grain
# levers, acts on h3 without an operator: a guest that fills its memory gets memory back (and
# its idle neighbours give theirs), two guests of two VIOLINs that fill the host's link are
# capped at their fair share, busy guests get CPU weight — each lever's effect measured 20 s
# later — and then load moves off h3; `violin destroy` ends both VIOLINs, and the demo checks
# that no libvirt domain and no switch is left on any host. Per migration it prints the time,
# the hypervisor's downtime, the network blackout the switches measured, the pings lost and
# whether the TCP connection survived. It removes everything it made, also on Ctrl-C.
#
#   bash compose/local-demo.sh [--json] [--keep]
#     --json  print one JSON object with the figures (progress goes to stderr)
#     --keep  leave the nodes running at the end (Ctrl-C stops and cleans up)
#   VIOLIN_BIN=DIR  use these executables instead of building (the system test does)
#   VIOLIN_DEMO_DIR=DIR  keep the run's files there (removed at the end like the rest; the figures
#                        are also in DIR/result.json)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
json=0; keep=0
for a in "$@"; do
  case $a in
    --json) json=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "local-demo.sh: unknown option $a (--json, --keep)" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "local-demo.sh: run it as root (namespaces, libvirtd)" >&2; exit 77; }
say() { if [ $json = 1 ]; then echo "$*" >&2; else echo "$*"; fi }
if [ -z "${VIOLIN_BIN:-}" ]; then
  say "== setting up (packages, build)"
  bash compose/setup.sh >&2
  swift build >&2
  VIOLIN_BIN=$(swift build --show-bin-path)
fi
bin=$VIOLIN_BIN
cache=/var/cache/violin-test-guest
# VIOLIN_DEMO_DIR: where the run keeps its files (the system test reads the raw ping output there).
run=${VIOLIN_DEMO_DIR:-$(mktemp -d /tmp/violin-demo.XXXXXX)}
mkdir -p "$run"
export VIOLIN_BIN
sinks=
cleanup() {
  trap - EXIT INT TERM
  [ -z "$sinks" ] || kill $sinks 2>/dev/null || true
  bash compose/lab.sh down "$run" || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_ns() { local n=$1; shift; ip netns exec "$tag-$n" "$@"; }
violin() { in_ns ctl "$bin/violin" "$@"; }
# The operator's CURVE options for a node's services (the lab is keyed: compose/lab.sh).
op() { bash compose/lab.sh curve "$run" "$1"; }
node_of() { case $1 in *10.77.0.100:*) echo ctl ;; *10.77.0.*) local a=${1#*10.77.0.}; echo "h${a%%:*}" ;; *) echo ctl ;; esac; }
# shellcheck disable=SC2046
call() { local ep=$1; shift; violin call "$ep" "$@" $(op "$(node_of "$ep")"); }
addr() { case $1 in ctl) echo 10.77.0.100 ;; h1) echo 10.77.0.1 ;; h2) echo 10.77.0.2 ;; h3) echo 10.77.0.3 ;; esac; }
ex() { echo "tcp://$(addr "$1"):7704"; }
mesh() { echo "tcp://$(addr "$1"):7701"; }
bus_sub=tcp://10.77.0.100:7711
source compose/wait-for.sh
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

say "== the guest image (Debian cloud kernel + busybox initramfs, cached in $cache)"
bash compose/lab-libvirt.sh guest "$cache" 2>/dev/null

say "== nodes (compose/lab.sh): control 10.77.0.100 with violin-bus and violin-policy; hosts with"
say "   libvirtd (TCG), violin-mesh, violin-monitor, violin-executor: d1 = h1 10.77.0.1, h2 10.77.0.2; d2 = h3 10.77.0.3"
VIOLIN_LAB_LEVERS=1 bash compose/lab.sh up "$run"
tag=$(cat "$run/tag")
# shellcheck disable=SC2046
if [ $json = 1 ]; then violin cluster status --control 10.77.0.100 $(op ctl) >&2; else violin cluster status --control 10.77.0.100 $(op ctl); fi

# Every event of the run, for the record and for the policy step.
# shellcheck disable=SC2046
in_ns ctl "$bin/violin" watch --bus $bus_sub executor. policy.decided --timeout 900 $(op ctl) >"$run/events.jsonl" 2>/dev/null &

# shellcheck disable=SC2207
ctl=(--control 10.77.0.100 $(op ctl))
show() { violin show "$1" --json "${ctl[@]}"; }
# Prints the command's output (to stderr with --json).
shown() { if [ $json = 1 ]; then "$@" >&2; else "$@"; fi }

say "== two VIOLINs from their spec files, both on 10.0.0.0/24 (compose/demo-a.yaml, compose/demo-b.yaml):"
say "   the policy allocates each a VNI, MACs and NIC ports, and makes its VMs on the hosts the files pin"
for v in a b; do shown violin create -f "$root/compose/demo-$v.yaml" --timeout 120 "${ctl[@]}"; done
shown violin list "${ctl[@]}"
vni_a=$(show a | json_field '["vms"][0]["vni"]'); vni_b=$(show b | json_field '["vms"][0]["vni"]')
# A probe namespace per VIOLIN, on h1: the operator's window into the VIOLIN (10.0.0.100). h1's
# mesh joins B (which has no VM on h1) through B's head node's host, h2.
for v in a b; do
  vni=$([ $v = a ] && echo "$vni_a" || echo "$vni_b"); seed=$([ $v = a ] && mesh h1 || mesh h2)
  ip netns add "$tag-p$v"; ip -n "$tag-p$v" link set lo up
  call "$(mesh h1)" add_port "{\"vni\":$vni,\"name\":\"${tag}$v\",\"seed\":\"$seed\"}" >/dev/null
  ip -n "$tag-h1" link set "${tag}$v" netns "$tag-p$v"
  ip -n "$tag-p$v" addr add 10.0.0.100/24 dev "${tag}$v"
  ip -n "$tag-p$v" link set "${tag}$v" up
done
say "  booting (TCG) ..."
# Each executor logs its VMs' consoles beside its journal.
for g in h1/a1 h2/a2 h2/b1 h2/b2 h2/b3; do wait_for 120 grep -q VIOLIN-GUEST-UP "$run/${g%/*}/console/${g#*/}.log"; done
probe() { local v=$1; shift; in_ns "p$v" python3 "$root/compose/probe.py" "$@"; }
for ip in 10.0.0.1 10.0.0.2; do wait_for 30 in_ns pa ping -c 1 -W 1 $ip; done
for ip in 10.0.0.1 10.0.0.2 10.0.0.3; do wait_for 30 in_ns pb ping -c 1 -W 1 $ip; done
shown violin show b "${ctl[@]}"

# Runs a command in a guest's shell through `violin console` (as a user at its serial console
# would) and prints what it printed. The end is a line the typed command cannot echo: E<n+1>.
console_run() {
  local vm=$1 cmd=$2 n=$RANDOM line
  coproc CON { violin console "$vm" "${ctl[@]}" 2>/dev/null; }
  local pid=$CON_PID in=${CON[1]} out=${CON[0]}
  printf '%s\necho E$((%s+1))\n' "$cmd" "$n" >&"$in"
  while IFS= read -r -t 60 line <&"$out"; do
    line=${line%$'\r'}
    [ "$line" = "E$((n + 1))" ] && break
    echo "$line"
  done
  eval "exec $in>&-"
  wait "$pid" 2>/dev/null || true
}

say "== inside each VIOLIN, guest to guest, typed at the guests' consoles (violin console); nothing across"
received() { grep -o '[0-9]* packets received' | grep -o '^[0-9]*' || echo 0; }
pa_ok=$(console_run a1 "ping -c 3 -W 2 10.0.0.2" | received)
pb_ok=$(console_run b1 "ping -c 3 -W 2 10.0.0.3" | received)
# 10.0.0.3 is a guest of B only: from A it does not answer.
pa_b3=$(console_run a1 "ping -c 3 -W 1 10.0.0.3" | received)
say "  A: a1 -> a2 (10.0.0.2): $pa_ok/3 replies;  B: b1 -> b3 (10.0.0.3): $pb_ok/3 replies;  A: a1 -> 10.0.0.3 (only in B): $pa_b3/3"
mac_a=$(probe a arp 10.0.0.2); mac_b=$(probe b arp 10.0.0.2)
say "  10.0.0.2 is $mac_a in A and $mac_b in B (the same MAC and address, two isolated networks)"
# The MACs each VIOLIN's switches learned, on every host, that are neither its guests' nor its
# probe's: none, or the VIOLINs leak into each other. Prints "foreign learned": a table read
# that failed would show as nothing learned, not as no leak.
cross() {
  local n=0 all=0
  for v in a b; do
    local vni=$([ $v = a ] && echo "$vni_a" || echo "$vni_b")
    local own; own="$(show $v | python3 -c 'import json,sys; print(" ".join(x["mac"] for x in json.load(sys.stdin)["vms"] if x["mac"]))') $(ip -n "$tag-p$v" -br link show "${tag}$v" | awk '{print $3}')"
    for h in h1 h2 h3; do
      [ -S "$run/$h/mesh/switch-$vni.sock" ] || continue
      local learned; learned=$(in_ns $h "$bin/violin" switch fdb --to "ipc://$run/$h/mesh/switch-$vni.sock" 2>/dev/null | grep -o '[0-9a-f]\{2\}\(:[0-9a-f]\{2\}\)\{5\}' | sort -u)
      for m in $learned; do all=$((all + 1)); case " $own " in *" $m "*) ;; *) n=$((n + 1)) ;; esac; done
    done
  done
  echo "$n $all"
}
read -r cross1 learned1 <<<"$(cross)"
say "  MACs in a VIOLIN's switches that are not its own: $cross1 (of $learned1 learned)"

# One migration with traffic: pings every 10 ms from a guest, a TCP echo stream from the probe;
# `violin migrate ... --wait` moves it and reports. Args: label violin pinger-ip ping-target-ip
# stream-ip ping-vm stream-vm migrate-args...
migrate_with_traffic() {
  local label=$1 v=$2 pinger=$3 target=$4 streamip=$5 pingvm=$6 streamvm=$7; shift 7
  local vni=$([ $v = a ] && echo "$vni_a" || echo "$vni_b")
  echo "$pingvm $streamvm" >"$run/$label.meta"
  probe $v sh "$pinger" "ping -q -i 0.01 -w 25 $target" --timeout 60 >"$run/$label.ping" 2>&1 & local pp=$!
  probe $v stream "$streamip" --seconds 25 >"$run/$label.tcp" 2>/dev/null & local sp=$!
  # Traffic has started when the switches count the probe's frames.
  wait_for 20 bash -c "[ \$(ip netns exec $tag-h1 $bin/violin switch stats --to ipc://$run/h1/mesh/switch-$vni.sock 2>/dev/null | grep -c '\"rx\" : [0-9][0-9][0-9]') -gt 0 ]"
  violin migrate "$@" --wait 180 "${ctl[@]}" >"$run/$label.out" 2>"$run/$label.err" || true
  if [ $json = 1 ]; then cat "$run/$label.out" >&2; else cat "$run/$label.out"; fi
  # The jobs it started ("job ID: VM from HOST"), as the executors journaled them.
  violin jobs --json "${ctl[@]}" >"$run/$label.jobs"
  python3 - "$run" "$label" <<'PY'
import json, re, sys
run, label = sys.argv[1], sys.argv[2]
ids = re.findall(r"^job (\S+):", open(f"{run}/{label}.out").read(), re.M)
for j in json.load(open(f"{run}/{label}.jobs"))["jobs"]:
    if j["job"] in ids: json.dump(j, open(f"{run}/{label}.{j['job']}.job", "w"))
PY
  wait $pp $sp || true
}

say "== live migration of a2 (VIOLIN A) from h2 (domain d1) to h3 (domain d2), under a 10 ms ping from a1 and a TCP stream"
migrate_with_traffic m1 a 10.0.0.1 10.0.0.2 10.0.0.2 a2 a2 a2 --to h3

say "== whole-VIOLIN migration of B to domain d2; its head node b1 stays in its home domain"
migrate_with_traffic m2 b 10.0.0.1 10.0.0.2 10.0.0.3 b2 b3 b --to-domain d2
where() { show "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)["vms"]; print(" ".join(sorted(x["name"] for x in d if x["host"]==sys.argv[1])))' "$2"; }
vms_h2="$(where a h2) $(where b h2)"; vms_h3="$(where a h3) $(where b h3)"
say "  h2 holds: $vms_h2;  h3 holds: $vms_h3"
shown violin show b "${ctl[@]}"
read -r cross2 learned2 <<<"$(cross)"

say "== the policy in automatic mode, fine-grain levers first (a migration off a host waits 20 s after a lever that relieves it)"
say "   on h3 (a2, b2, b3; 1 core offered, a 4 Mbit/s link): b2, ballooned to 96 MiB, fills its memory; a2 and b3 send TCP"
before=$(grep -c migration_completed "$run/events.jsonl" || true)
monitor() { echo "tcp://$(addr "$1"):7702"; }
call "$(monitor h3)" set_balloon '{"vm":"b2","memory_mb":96}' >/dev/null
shown violin policy mode automatic --to tcp://10.77.0.100:7703 "${ctl[@]:2}"
console_run b2 "(i=0; while [ \$(awk '/^MemAvailable/ {print \$2}' /proc/meminfo) -gt 6144 ]; do dd if=/dev/zero of=/tmp/f\$i bs=1M count=1 2>/dev/null; i=\$((i+1)); done) >/dev/null 2>&1 &" >/dev/null
# A TCP sink at each VIOLIN's probe; the senders are guests of two VIOLINs on one host.
for v in a b; do
  ip netns exec "$tag-p$v" python3 -c 'import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("10.0.0.100", 9000)); s.listen(4)
def drain(c):
    while c.recv(65536): pass
while True: threading.Thread(target=drain, args=(s.accept()[0],), daemon=True).start()' &
  sinks="$sinks $!"
done
for v in a b; do wait_for 10 in_ns "p$v" bash -c "ss -ltn | grep -q 10.0.0.100:9000"; done
for vm in a2 b3; do console_run $vm "(yes 0123456789abcdef | nc 10.0.0.100 9000) >/dev/null 2>&1 &" >/dev/null; done
say "  waiting for the levers: balloons, network caps ..."
# policy.decided events of a kind; the ledger rows with a measured effect.
decided() { [ "$(grep '"policy.decided"' "$run/events.jsonl" | grep -c "\"kind\":\"$1\"")" -gt 0 ]; }
moved() { [ "$(grep -c migration_completed "$run/events.jsonl")" -gt "$before" ]; }
measured() { violin policy decisions --json --limit 50 --to tcp://10.77.0.100:7703 "${ctl[@]:2}" \
  | python3 -c 'import json,sys; w=[d for d in json.load(sys.stdin)["decisions"] if d["kind"]=="set_cpu_weight"]; sys.exit(0 if w and all(d.get("effect") for d in w) else 1)'; }
wait_for 150 decided set_balloon || true
wait_for 90 decided set_port_rate || true
say "  then a2 and b2 burn their CPU ..."
for vm in a2 b2; do console_run $vm "(while :; do :; done) >/dev/null 2>&1 &" >/dev/null; done
wait_for 90 decided set_cpu_weight || true
wait_for 180 moved || true
# A whole-VIOLIN decision moves several VMs: wait for all of its jobs.
wait_for 120 bash -c "python3 - $run/events.jsonl <<'PY'
import json,sys
started=set(); ended=set()
for l in open(sys.argv[1]):
    e=json.loads(l); t=e['topic']; b=e['body']
    if t=='executor.migration_started': started.add(b['job'])
    if t in ('executor.migration_completed','executor.migration_failed'): ended.add(b['job'])
sys.exit(0 if started and started<=ended else 1)
PY" || true
# The levers' effects are written 20 s after them (the CPU weights' last).
wait_for 60 measured || true
kill $sinks 2>/dev/null || true; sinks=
shown violin policy decisions --limit 12 --to tcp://10.77.0.100:7703 "${ctl[@]:2}"
violin policy decisions --json --limit 50 --to tcp://10.77.0.100:7703 "${ctl[@]:2}" >"$run/ledger.json" || echo '{"decisions":[]}' >"$run/ledger.json"
shown violin policy mode recommend --to tcp://10.77.0.100:7703 "${ctl[@]:2}"

say "== violin destroy: both VIOLINs, every VM on every host"
for v in a b; do
  vni=$([ $v = a ] && echo "$vni_a" || echo "$vni_b")
  call "$(mesh h1)" remove_port "{\"vni\":$vni,\"name\":\"${tag}$v\"}" >/dev/null 2>&1 || true
  ip netns del "$tag-p$v" 2>/dev/null || true
  violin destroy $v --timeout 120 "${ctl[@]}" >/dev/null
done
shown violin list "${ctl[@]}"
# What is left on the hosts: libvirt domains, and switches (a mesh stops a VIOLIN's switch with its last port).
domains_left=0; switches_left=0
for h in h1 h2 h3; do
  domains_left=$((domains_left + $(in_ns $h virsh -c "qemu+unix:///system?socket=$run/$h/libvirt/sock/libvirt-sock" list --all --name | grep -c . || true)))
  switches_left=$((switches_left + $(call "$(mesh $h)" ports | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["violins"]))')))
done
say "  left on the hosts: $domains_left libvirt domains, $switches_left switches"

python3 - "$run" "$json" "$pa_ok" "$pb_ok" "$mac_a" "$mac_b" "$cross1" "$cross2" "$vms_h2" "$vms_h3" "$pa_b3" "$domains_left" "$switches_left" "$learned1" "$learned2" <<'PY'
import glob, json, os, re, sys
run, as_json = sys.argv[1], sys.argv[2] == "1"
pa_ok, pb_ok, mac_a, mac_b, cross1, cross2, vms_h2, vms_h3, pa_b3, domains_left, switches_left, learned1, learned2 = sys.argv[3:16]
migrations = []
def pings(label):
    text = open(os.path.join(run, label + ".ping")).read()
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", text)
    return (int(m.group(1)), int(m.group(1)) - int(m.group(2))) if m else (None, None)
def tcp(label):
    try: return json.load(open(os.path.join(run, label + ".tcp")))
    except Exception: return {"survived": False, "error": "no result"}
for label, kind in (("m1", "vm"), ("m2", "violin")):
    sent, lost = pings(label)
    t = tcp(label)
    ping_vm, stream_vm = open(os.path.join(run, label + ".meta")).read().split()
    for f in sorted(glob.glob(os.path.join(run, label + ".*.job"))):
        j = json.load(open(f))
        pinged, streamed = j["vm"] == ping_vm, j["vm"] == stream_vm
        migrations.append({"step": label, "kind": kind, "vm": j["vm"], "from": j["from"], "to": j["to"], "state": j["state"],
                           "elapsed_ms": j["elapsed_ms"], "downtime_ms": j["downtime_ms"], "blackout_ms": j["blackout_ms"],
                           "pings_sent": sent if pinged else None, "pings_lost": lost if pinged else None,
                           "tcp_survived": t.get("survived", False) if streamed else None,
                           "tcp_longest_stall_ms": t.get("longest_stall_ms") if streamed else None, "error": j["error"]})
jobs_seen = {}
for line in open(os.path.join(run, "events.jsonl")):
    e = json.loads(line); b = e["body"]
    if e["topic"] == "executor.migration_completed": jobs_seen[b["job"]] = b
manual = set()
for f in glob.glob(os.path.join(run, "m*.*.job")):
    manual.add(json.load(open(f))["job"])
for job, b in jobs_seen.items():
    if job in manual: continue
    migrations.append({"step": "policy", "kind": "policy", "vm": b["vm"], "from": b["from"], "to": b["to"], "state": "completed",
                       "elapsed_ms": b["elapsed_ms"], "downtime_ms": b["downtime_ms"], "blackout_ms": b["blackout_ms"],
                       "pings_sent": None, "pings_lost": None, "tcp_survived": None, "error": ""})
decisions = []
for line in open(os.path.join(run, "events.jsonl")):
    e = json.loads(line)
    if e["topic"] == "policy.decided": decisions.append({"kind": e["body"]["kind"], "outcome": e["body"]["outcome"], "reason": e["body"]["reason"]})
# The ledger, oldest first: what each lever expected and the effect measured after it.
ledger = [{"id": d["id"], "kind": d["kind"], "outcome": d["outcome"], "reason": d["reason"], "effect": d.get("effect", "")}
          for d in reversed(json.load(open(os.path.join(run, "ledger.json")))["decisions"]) if d.get("mode") == "automatic"]
result = {
    "isolation": {"a_pings_received": int(pa_ok or 0), "b_pings_received": int(pb_ok or 0), "a_to_b_only_address_received": int(pa_b3 or 0),
                  "mac_of_10.0.0.2_in_a": mac_a,
                  "mac_of_10.0.0.2_in_b": mac_b, "foreign_macs_before": int(cross1), "foreign_macs_after": int(cross2),
                  "macs_learned_before": int(learned1), "macs_learned_after": int(learned2)},
    "violin_b_after": {"h2": vms_h2.split(), "h3": vms_h3.split()},
    "policy_decisions": decisions,
    "ledger": ledger,
    "after_destroy": {"libvirt_domains": int(domains_left), "switches": int(switches_left)},
    "migrations": migrations,
}
json.dump(result, open(os.path.join(run, "result.json"), "w"), indent=1)
if as_json:
    print(json.dumps(result, indent=1))
else:
    print("== per migration")
    print("  %-7s %-4s %-4s %-4s %-10s %9s %11s %11s %11s %5s" % ("step", "vm", "from", "to", "state", "time ms", "downtime ms", "blackout ms", "pings lost", "TCP"))
    for m in migrations:
        f = lambda v: "-" if v is None else str(v)
        lost = "-" if m["pings_lost"] is None else "%d/%d" % (m["pings_lost"], m["pings_sent"])
        tcp_ok = "-" if m["tcp_survived"] is None else ("ok" if m["tcp_survived"] else "LOST")
        print("  %-7s %-4s %-4s %-4s %-10s %9s %11s %11s %11s %5s" % (m["step"], m["vm"], m["from"], m["to"], m["state"], f(m["elapsed_ms"]),
              f(m["downtime_ms"]), f(m["blackout_ms"]), lost, tcp_ok))
    print("== the policy's decisions in automatic mode, in order (levers first)")
    for d in ledger:
        print("  #%s %s (%s): %s" % (d["id"], d["kind"], d["outcome"], d["reason"][:160]))
        if d["effect"]:
            print("      effect: %s" % d["effect"][:160])
PY
if [ $keep = 1 ]; then
  say "== everything keeps running (namespaces $tag-*); Ctrl-C stops and cleans up"
  say "   e.g.: ip netns exec $tag-ctl $bin/violin watch --bus $bus_sub $(op ctl)"
  wait
fi

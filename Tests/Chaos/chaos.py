#!/usr/bin/env python3
"""The chaos soak: the local lab (compose/lab.sh: a control node, hosts h1, h2 in domain d1 and
h3 in d2, the domains joined by a router namespace) runs two VIOLINs of real QEMU guests with
pings and a TCP stream inside each, the policy in automatic mode with a guest burning CPU, and an
operator migrating VMs and whole VIOLINs every few seconds — while faults chosen from the seed
hit it: processes SIGKILLed (also at chosen phases of a migration), libvirtd restarted under a
migration, a host's link down, a host lost (back after a while, or for good), loss or delay on
the link between the domains, the control node down for 30 s. Invariants are checked all along
and at the end; the report lists faults per kind, time to heal, pings lost, TCP streams that
survived and every violation with the events around it. Exit status 1 on any violation.

  python3 Tests/Chaos/chaos.py --minutes N --seed S [--report FILE] [--keep]

Run as root after `swift build` (VIOLIN_BIN names other executables). A 3-minute run with a
fixed seed is part of Tests/run.sh; 20-minute soaks are a benchmark (Tests/Benchmarks/chaos-soak.sh).
"""
import argparse
import calendar
import glob
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = "/var/cache/violin-test-guest"
ADDR = {"ctl": "10.77.0.100", **{"h%d" % i: "10.77.0.%d" % i for i in range(1, 10)}}
PORT = {"bus": 7700, "mesh": 7701, "monitor": 7702, "policy": 7703, "executor": 7704}
DOMAIN = {"h1": "d1", "h2": "d1", "h3": "d2"}
VIOLINS = {"a": {"a1": "10.0.0.1", "a2": "10.0.0.2", "a3": "10.0.0.3"}, "b": {"b1": "10.0.0.1", "b2": "10.0.0.2"}}
PROBE_MAC = {"a": "52:54:00:ff:00:0a", "b": "52:54:00:ff:00:0b"}
MEMBER_TIMEOUT = 3.0          # the meshes' member_timeout (the lab's default)
RECONCILE = 10.0              # the policy's reconcile_interval (the lab's default)
PROCESS_HEAL, LINK_HEAL = 10.0, 30.0
BOOT_GRACE = 60.0             # a VM (re)made boots under TCG: not judged by pings before this
REMAKE_LIMIT = 240.0          # a restart-always guest lost with its host runs again within this
                              # (host_lost_after 30 s + a reconcile + the remake, with room for
                              # the faults that land on the way: seed 15 put a control-node outage,
                              # the lost host's return, a killed executor there, its link down and
                              # a killed policy between one loss and its remake, 157 s in all)
# A guest kernel that crashed (its console says so): it cannot answer pings whatever the network
# does. Seen under TCG after live migrations: virtio-net's "output.0:id 0 is not a head!", then a
# CPU stuck for good (the lab's guests now panic on a soft lockup and boot again: panic=5).
GUEST_CRASH = re.compile(r"Kernel panic|soft lockup|BUG: |Oops|general protection fault|is not a head")
JUDGE_AFTER = 15.0            # pings are judged this long after a group's deadline: time for a
                              # crash's console line (a soft lockup shows 10 s in) to be read first
KINDS = ["kill-bus", "kill-policy", "kill-mesh", "kill-switch", "kill-monitor", "kill-executor",
         "executor-in-migration", "libvirtd-in-migration", "host-link-down", "host-lost",
         "interdomain-loss", "interdomain-delay", "control-down"]
LINK_KINDS = {"host-link-down", "host-lost", "interdomain-loss", "interdomain-delay"}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sh(cmd, timeout=60, check=False):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise RuntimeError("timed out: %s" % cmd)
        return 124, "", "timeout"
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (cmd, (r.stderr or r.stdout)[-800:]))
    return r.returncode, r.stdout, r.stderr


class Lab:
    """The lab and the operator's tools in it."""

    def __init__(self, run, bin_dir):
        self.run, self.bin = run, bin_dir
        self.tag = ""
        self.env = "VIOLIN_BIN=%s" % bin_dir

    def lab(self, args, timeout=180, check=False):
        return sh("%s bash %s/compose/lab.sh %s" % (self.env, ROOT, args), timeout, check)

    def keys(self, node):
        server = node if os.path.exists("%s/keys/%s.pub" % (self.run, node)) else "ctl"
        return "--curve-key %s/keys/admin.key --server-key %s/keys/%s.pub" % (self.run, self.run, server)

    def violin(self, args, timeout=30):
        return sh("ip netns exec %s-ctl %s/violin %s" % (self.tag, self.bin, args), timeout)

    def op(self, args, timeout=30):
        """A command of the operator's against the control node."""
        return self.violin("%s --control %s %s" % (args, ADDR["ctl"], self.keys("ctl")), timeout)

    def call(self, node, service, msg, body="{}", timeout=10):
        """One request to a service; its reply as JSON, or None."""
        rc, out, _ = self.violin("call tcp://%s:%d %s '%s' --timeout %g %s" % (ADDR[node], PORT[service], msg, body, timeout,
                                                                               self.keys(node)), timeout + 5)
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def libvirt(self, host):
        return "qemu+unix:///system?socket=%s/%s/libvirt/sock/libvirt-sock" % (self.run, host)

    def running(self, host):
        """The domains running on a host, or None when its libvirt does not answer."""
        rc, out, _ = sh("virsh -c '%s' list --name --state-running" % self.libvirt(host), 10)
        return set(x for x in out.split() if x) if rc == 0 else None

    def ns(self, node):
        return "%s-%s" % (self.tag, node)


class Events:
    """Every event on the bus with the time it arrived (for the report), restarted whenever the
    watcher dies (the control node went down)."""

    def __init__(self, lab):
        self.lab, self.lines, self.lock = lab, [], threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop:
            p = subprocess.Popen("ip netns exec %s %s/violin watch --bus tcp://%s:7711 --timeout 86400 %s"
                                 % (self.lab.ns("ctl"), self.lab.bin, ADDR["ctl"], self.lab.keys("ctl")),
                                 shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.proc = p
            for line in p.stdout:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("topic", "").endswith(".heartbeat") or e.get("topic") == "monitor.sampled":
                    continue
                with self.lock:
                    self.lines.append((time.time(), e.get("topic", ""), e.get("header", {}).get("sender", ""), e.get("body", {})))
            p.wait()
            time.sleep(1)

    def around(self, t, seconds=10, limit=25):
        with self.lock:
            near = [x for x in self.lines if abs(x[0] - t) <= seconds]
        return ["%s %s %s %s" % (time.strftime("%H:%M:%S", time.localtime(x[0])), x[1], x[2], json.dumps(x[3])[:160])
                for x in near[-limit:]]

    def matching(self, topic):
        with self.lock:
            return [x for x in self.lines if x[1] == topic]

    def close(self):
        self.stop = True
        try:
            self.proc.kill()
        except Exception:
            pass


class Probes:
    """Per VIOLIN, a namespace holding a port of it on h1 (10.0.0.100): pings every 200 ms to
    each guest, and one TCP stream through a guest's echo server. A port that vanished (its
    switch restarted) is added again."""

    def __init__(self, lab, vnis):
        self.lab, self.vnis = lab, vnis
        self.lock = threading.Lock()
        self.replies = {}             # (violin, ip) -> [times of replies]
        self.sent = {}                # (violin, ip) -> pings sent
        self.streams = []             # results of finished streams
        self.stop = False
        self.procs = []
        for v in VIOLINS:
            sh("ip netns add %s-p%s" % (lab.tag, v), check=True)
            sh("ip -n %s-p%s link set lo up" % (lab.tag, v), check=True)
            self.attach(v)
        self.keeping = threading.Thread(target=self.keeper, daemon=True)
        self.keeping.start()

    def port(self, v):
        return "%s%s" % (self.lab.tag, v)

    def attach(self, v):
        """The probe's port in its namespace, added on h1's mesh if it is not anywhere."""
        ns, port = "%s-p%s" % (self.lab.tag, v), self.port(v)
        if sh("ip -n %s link show %s" % (ns, port))[0] == 0:
            return True
        if sh("ip -n %s link show %s" % (self.lab.ns("h1"), port))[0] != 0:
            seed = self.seed(v)
            body = {"vni": self.vnis[v], "name": port}
            if seed:
                body["seed"] = "tcp://%s:7701" % ADDR[seed]
            if self.lab.call("h1", "mesh", "add_port", json.dumps(body)) is None:
                return False
        rc = sh("ip -n %s link set %s down && ip -n %s link set %s address %s && ip -n %s link set %s netns %s"
                % (self.lab.ns("h1"), port, self.lab.ns("h1"), port, PROBE_MAC[v], self.lab.ns("h1"), port, ns))[0]
        if rc != 0:
            return False
        sh("ip -n %s addr replace 10.0.0.100/24 dev %s && ip -n %s link set %s up" % (ns, port, ns, port))
        return True

    def seed(self, v):
        """A host other than h1 that runs a VM of the VIOLIN (h1's mesh joins the VIOLIN there)."""
        for host in ["h%d" % i for i in range(2, 10)]:      # the lab's hosts, replacements included
            running = self.lab.running(host) if os.path.exists("%s/%s/libvirt" % (self.lab.run, host)) else None
            if running and any(vm in running for vm in VIOLINS[v]):
                return host
        return ""

    def keeper(self):
        while not self.stop:
            for v in VIOLINS:
                try:
                    self.attach(v)
                except Exception:
                    pass
            time.sleep(1)

    def start(self, seconds, stream_seconds):
        for v, guests in VIOLINS.items():
            for vm, ip in guests.items():
                threading.Thread(target=self.pinger, args=(v, ip, seconds), daemon=True).start()
            head = sorted(guests)[0]
            threading.Thread(target=self.streamer, args=(v, guests[head], stream_seconds), daemon=True).start()

    def pinger(self, v, ip, seconds):
        """ping -O reports each unanswered one; ping ends at an ICMP error (a host unreachable
        while a port was gone), so it is started again until the run ends."""
        end = time.time() + seconds
        record = open(os.path.join(self.lab.run, "ping-%s-%s.log" % (v, ip)), "a")
        while not self.stop and time.time() < end:
            p = subprocess.Popen(["ip", "netns", "exec", "%s-p%s" % (self.lab.tag, v), "ping", "-D", "-O", "-n", "-i", "0.2", ip],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.procs.append(p)
            self.follow(v, ip, p, record)
            p.wait()
            time.sleep(0.5)

    def follow(self, v, ip, p, record):
        base = self.sent.get((v, ip), 0)
        for line in p.stdout:
            record.write(line)
            m = re.match(r"\[(\d+\.\d+)\] (?:64 bytes from .*icmp_seq=(\d+)|no answer yet for icmp_seq=(\d+))", line)
            if not m:
                continue
            with self.lock:
                seq = base + int(m.group(2) or m.group(3))
                self.sent[(v, ip)] = max(self.sent.get((v, ip), 0), seq)
                if m.group(2):
                    self.replies.setdefault((v, ip), []).append(float(m.group(1)))

    def streamer(self, v, ip, seconds):
        end = time.time() + seconds
        while not self.stop and time.time() < end - 5:
            started = time.time()
            rc, out, _ = sh("ip netns exec %s-p%s python3 %s/compose/probe.py stream %s --seconds %d"
                            % (self.lab.tag, v, ROOT, ip, max(5, int(end - time.time()))), timeout=seconds + 120)
            try:
                r = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                r = {"survived": False, "error": "no result"}
            r.update({"violin": v, "ip": ip, "started": started, "ended": time.time()})
            with self.lock:
                self.streams.append(r)
            if not r.get("survived"):
                time.sleep(2)

    def replied(self, v, ip, since, until):
        with self.lock:
            return any(since <= t <= until for t in self.replies.get((v, ip), []))

    def first_reply(self, v, ip, since):
        with self.lock:
            later = [t for t in self.replies.get((v, ip), []) if t >= since]
        return min(later) if later else None

    def totals(self):
        with self.lock:
            sent = sum(self.sent.values())
            received = sum(len(x) for x in self.replies.values())
            return sent, max(0, sent - received), list(self.streams)

    def close(self):
        self.stop = True
        self.keeping.join(timeout=30)        # it must not put a port back after this
        for p in self.procs:
            try:
                p.kill()
            except Exception:
                pass


class Soak:
    def __init__(self, lab, minutes, seed):
        self.lab, self.minutes, self.rng = lab, minutes, random.Random(seed)
        self.seed = seed
        self.lock = threading.RLock()
        self.faults = []              # every fault: kind, detail, node, start, end, heal
        self.violations = []          # (time, invariant, message)
        self.hosts = {"h1": "up", "h2": "up", "h3": "up"}
        self.domain = dict(DOMAIN)
        self.busy = set()             # nodes a fault is acting on now
        self.vm_since = {}            # vm -> when it was last seen running after being nowhere
        self.vm_host = {}             # vm -> the host it was last seen running on
        self.seen_at = {}             # vm -> when it was last seen running (on vm_host)
        self.lost_at = {}             # host -> when it was last lost
        self.two_seen = {}            # vm -> hosts, seen running on two in the last snapshot
        self.none_since = {}          # vm -> since when it runs nowhere
        self.remakes = []             # seconds from a host's loss until a guest lost with it ran again
        self.journal_cache = {}       # (vm, since) -> the migration the journals say it was in
        self.crashes = []             # (time, vm, console file, line): guest kernels that crashed
        self.crash_checked = set()    # crashes whose reboot was judged
        self.console_at = {}          # console file -> bytes read
        self.operator = {"migrations": 0, "refused": 0, "violin_migrations": 0}
        self.stop = False
        self.deadline = 0

    # -- bookkeeping ------------------------------------------------------------------------

    def violate(self, invariant, message, t=None):
        t = t or time.time()
        with self.lock:
            if any(v[1] == invariant and v[2] == message for v in self.violations):
                return
            self.violations.append((t, invariant, message))
            first = sum(1 for v in self.violations if v[1] == invariant) == 1
        log("VIOLATION %s: %s" % (invariant, message))
        if first and invariant in ("pings", "mesh-full"):
            self.diagnose(invariant)

    def diagnose(self, invariant):
        """What the switches and meshes held when an invariant first failed (into the run's files)."""
        out = ["== %s at %s" % (invariant, time.strftime("%H:%M:%S"))]
        for v in VIOLINS:
            vni = self.vnis.get(v)
            out.append("-- VIOLIN %s (VNI %s): the probe's neighbours: %s" % (v, vni, sh("ip -n %s-p%s neigh" % (self.lab.tag, v))[1].strip()))
            for h in self.up_hosts():
                sock = "%s/%s/mesh/switch-%s.sock" % (self.lab.run, h, vni)
                if not os.path.exists(sock):
                    continue
                fdb = sh("ip netns exec %s %s/violin switch fdb --to ipc://%s" % (self.lab.ns(h), self.lab.bin, sock), 10)[1]
                ports = sh("ip netns exec %s %s/violin switch ports --to ipc://%s" % (self.lab.ns(h), self.lab.bin, sock), 10)[1]
                members = self.lab.call(h, "mesh", "members", json.dumps({"vni": vni}), timeout=3)
                out += ["   %s fdb: %s" % (h, " ".join(fdb.split())), "   %s ports: %s" % (h, " ".join(ports.split())),
                        "   %s members: %s" % (h, json.dumps(members))]
        with open(os.path.join(self.lab.run, "diagnosis.txt"), "a") as f:
            f.write("\n".join(out) + "\n")

    def begin(self, kind, detail, nodes):
        f = {"kind": kind, "detail": detail, "nodes": nodes, "start": time.time(), "end": None, "heal": None,
             "judged": False, "allowance": LINK_HEAL if kind in LINK_KINDS else PROCESS_HEAL}
        with self.lock:
            self.faults.append(f)
            self.busy.update(nodes)
        log("fault %s %s" % (kind, detail))
        return f

    def end(self, f):
        with self.lock:
            f["end"] = time.time()
            self.busy.difference_update(f["nodes"])
        log("fault %s %s ended after %.1f s" % (f["kind"], f["detail"], f["end"] - f["start"]))

    def up_hosts(self):
        with self.lock:
            return sorted(h for h, s in self.hosts.items() if s == "up")

    def free(self, nodes):
        with self.lock:
            return not (set(nodes) & self.busy)

    # -- what runs where ----------------------------------------------------------------------

    def snapshot(self):
        """Every host's running domains; the invariants on them: never two, never none
        unless its host was lost."""
        now = time.time()
        with self.lock:
            hosts = [h for h, s in self.hosts.items() if s == "up"]
        seen = {h: self.lab.running(h) for h in hosts}
        where = {}
        for h, names in seen.items():
            for vm in names or ():
                where.setdefault(vm, []).append(h)
        everyone = all(v is not None for v in seen.values())
        for v in VIOLINS.values():
            for vm in v:
                on = sorted(where.get(vm, []))
                if len(on) >= 2:
                    if self.two_seen.get(vm) == on:
                        self.violate("one-copy", "%s runs on %s" % (vm, " and ".join(on)))
                    self.two_seen[vm] = on
                else:
                    self.two_seen.pop(vm, None)
                if on:
                    if vm not in self.vm_since or vm in self.none_since:
                        self.vm_since[vm] = now
                    last = self.vm_host.get(vm)
                    if vm in self.none_since and last in self.lost_at and self.lost_at[last] >= self.none_since[vm] - 60:
                        self.remakes.append(now - self.lost_at[last])
                    self.none_since.pop(vm, None)
                    self.vm_host[vm] = on[0]
                    self.seen_at[vm] = now
                elif everyone:
                    since = self.none_since.setdefault(vm, now)
                    last = self.vm_host.get(vm)
                    # Lost with its host: the host it last ran on was lost since it was last
                    # seen there (a VM that ran on elsewhere meanwhile, unseen nowhere, was not).
                    lost = last in self.lost_at and self.lost_at[last] >= self.seen_at.get(vm, 0) - 3
                    heading = self.heading_to_lost(vm, since)
                    if heading and not lost:
                        last, lost = heading, True       # lost with the destination of its migration
                    if now - since > 60 and not lost:
                        # One violation per stretch of absence (the message names when it began,
                        # the report shows what happened then).
                        self.violate("one-copy", "%s has run nowhere for over 60 s since %s (last on %s, which was not lost)"
                                     % (vm, time.strftime("%H:%M:%S", time.localtime(since)), last), t=since)
                    if lost and now - self.lost_at[last] > REMAKE_LIMIT:
                        # Both VIOLINs are restart: always — a guest lost with its host is made again.
                        self.violate("remade", "%s, lost with %s at %s, ran nowhere %.0f s later"
                                     % (vm, last, time.strftime("%H:%M:%S", time.localtime(self.lost_at[last])), REMAKE_LIMIT))
        return where

    def scan_consoles(self):
        """New console lines of every guest: a kernel crash restarts the guest's boot grace (it
        boots again, in its own QEMU, after panic=5), so its pings are not held against the
        network until it could answer again; the crash itself is reported."""
        now = time.time()
        for path in sorted(glob.glob(os.path.join(self.lab.run, "h*", "console", "*.log"))):
            try:
                with open(path, "rb") as f:
                    f.seek(self.console_at.get(path, 0))
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1
            self.console_at[path] = self.console_at.get(path, 0) + cut
            vm = os.path.basename(path)[:-4]
            for line in data[:cut].decode("utf-8", "replace").splitlines():
                if not GUEST_CRASH.search(line):
                    continue
                with self.lock:
                    if any(c[1] == vm and now - c[0] < 60 for c in self.crashes):
                        continue            # the same crash, told in more lines
                    self.crashes.append((now, vm, path, line.strip()[:160]))
                    if vm in self.vm_since:
                        self.vm_since[vm] = now
                log("guest crash: %s: %s" % (vm, line.strip()[:160]))

    def crashed_recently(self, vm, since):
        with self.lock:
            return any(c[1] == vm and c[0] >= since for c in self.crashes)

    def judge_reboots(self, now):
        """A crashed guest boots again and answers pings within its boot grace (and 30 s more)."""
        for t, vm, path, line in list(self.crashes):
            if (t, vm) in self.crash_checked or now < t + BOOT_GRACE + 30:
                continue
            self.crash_checked.add((t, vm))
            hits = [(v, ip) for v, guests in VIOLINS.items() for g, ip in guests.items() if g == vm]
            for v, ip in hits:
                first = self.probes.first_reply(v, ip, t)
                if first is None or first > t + BOOT_GRACE + 30:
                    self.violate("guest-reboot", "%s's kernel crashed at %s (%s) and it did not answer again within %.0f s"
                                 % (vm, time.strftime("%H:%M:%S", time.localtime(t)), line, BOOT_GRACE + 30), t)

    def heading_to_lost(self, vm, since):
        """The host `vm` was being migrated to when it vanished (at `since`), if that host was
        lost after the migration began and before the VM was missed: a guest in post-copy runs
        at its destination, and goes with it."""
        starts = [x for x in self.events.matching("executor.migration_started") if x[3].get("vm") == vm and x[0] <= since]
        began = to = None
        if starts:
            began, _, _, body = starts[-1]
            to = body.get("to")
            if any(x[3].get("job") == body.get("job") and x[0] < since for x in self.events.matching("executor.migration_failed")):
                to = None
        # The bus may not have carried the start (the control node down, the bus killed): the
        # source executors' journals know every migration they began.
        journal = self.journal_migration(vm, since)
        if journal and (began is None or journal[0] > began):
            began, to = journal
        if to is None:
            return None
        with self.lock:
            lost = self.lost_at.get(to)
        return to if lost is not None and began - 1 <= lost <= since + 2 else None

    def journal_migration(self, vm, since):
        """The latest migration of `vm` that an executor journaled as begun before `since` and
        that had not failed by then: (when it began, its destination), or None. Asked once per
        absence (cached)."""
        key = (vm, since)
        if key in self.journal_cache:
            return self.journal_cache[key]
        def epoch(text):
            try:
                return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
            except (TypeError, ValueError):
                return None
        best = None
        for h in self.up_hosts():
            jobs = self.lab.call(h, "executor", "jobs", json.dumps({"limit": 10000}), timeout=3) or {}
            for j in jobs.get("jobs", []):
                began, updated = epoch(j.get("created_at")), epoch(j.get("updated_at"))
                if j.get("vm") != vm or began is None or began > since:
                    continue
                if j.get("state") in ("failed", "cancelled", "rolled_back") and updated is not None and updated < since - 1:
                    continue
                if best is None or began > best[0]:
                    best = (began, j.get("to"))
        self.journal_cache[key] = best
        return best

    def pingable(self, now):
        """The guests that should answer: running, and long enough to have booted."""
        out = []
        for v, guests in VIOLINS.items():
            for vm, ip in guests.items():
                if vm in self.vm_since and vm not in self.none_since and now - self.vm_since[vm] >= BOOT_GRACE:
                    out.append((v, vm, ip))
        return out

    def mesh_full(self):
        """Every VIOLIN's mesh: each host with a switch of it has every other such host alive
        among its members. None when a mesh does not answer."""
        vni_hosts = {}
        for h in self.up_hosts():
            ports = self.lab.call(h, "mesh", "ports", timeout=3)
            if ports is None:
                return None
            for v in ports.get("violins", []):
                vni_hosts.setdefault(v["vni"], set()).add(h)
        for vni, hosts in vni_hosts.items():
            for h in hosts:
                m = self.lab.call(h, "mesh", "members", json.dumps({"vni": vni}), timeout=3)
                if m is None:
                    return None
                alive = {x["endpoint"] for x in m.get("members", []) if x.get("alive", True)}
                want = {"tcp://%s:7701" % ADDR[o] for o in hosts if o != h}
                if not want <= alive:
                    return False
        return True

    # -- the checker -----------------------------------------------------------------------------

    def checker(self):
        while not self.stop:
            t0 = time.time()
            try:
                self.scan_consoles()
                self.snapshot()
                self.judge()
                self.judge_reboots(time.time())
            except Exception as e:          # a check that could not be made is not a pass
                log("checker: %r" % e)
            time.sleep(max(0.2, 2 - (time.time() - t0)))

    def cluster(self, f):
        """The faults whose windows (start to end plus healing allowance) overlap f's, directly
        or through others: they are judged together, from the last end to the last deadline."""
        now = time.time()
        with self.lock:
            faults = list(self.faults)
        window = lambda g: (g["start"], (g["end"] or now) + g["allowance"])
        group = [f]
        lo, hi = window(f)
        grown = True
        while grown:
            grown = False
            for g in faults:
                if g in group:
                    continue
                a, b = window(g)
                if a <= hi and b >= lo:
                    group.append(g)
                    lo, hi = min(lo, a), max(hi, b)
                    grown = True
        return group

    def judge(self):
        now = time.time()
        with self.lock:
            pending = [f for f in self.faults if f["end"] is not None and not f["judged"]]
        for f in pending:
            group = self.cluster(f)
            if any(g["end"] is None for g in group):
                continue
            last = max(g["end"] for g in group)
            deadline = max(g["end"] + g["allowance"] for g in group)
            lead = max(group, key=lambda g: (g["end"] + g["allowance"], g["end"]))
            if f is not lead and not lead["judged"] and lead in pending:
                continue            # the group is judged once, through its lead
            if "mesh_at" not in lead and now <= last + 2 * MEMBER_TIMEOUT + 3:
                if self.mesh_full():
                    lead["mesh_at"] = max(time.time(), last)
            if now < deadline + JUDGE_AFTER:
                continue
            for g in group:
                g["judged"] = True
                if g is not lead:
                    g["overlapped"] = True
            what = "%s (%s)" % (lead["kind"], lead["detail"]) + ("" if len(group) == 1 else " and %d overlapping faults" % (len(group) - 1))
            if "mesh_at" not in lead:
                self.violate("mesh-full", "after %s ended, a VIOLIN's mesh was not full within %.0f s" % (what, 2 * MEMBER_TIMEOUT), last)
            # A guest whose kernel crashed around then is judged by its reboot (judge_reboots).
            targets = [(v, vm, ip) for v, vm, ip in self.pingable(now)
                       if self.vm_since[vm] + BOOT_GRACE <= last and not self.crashed_recently(vm, last - BOOT_GRACE)]
            for v, vm, ip in targets:
                first = self.probes.first_reply(v, ip, last)
                if first is None or first > deadline:
                    self.violate("pings", "after %s ended, %s (%s in VIOLIN %s) did not answer within %.0f s"
                                 % (what, vm, ip, v, deadline - last), last)
            # Each fault's own time to heal: from its end until every guest answered again (and,
            # for the group's lead, every mesh was full).
            for g in group:
                heal = (lead.get("mesh_at", last) - g["end"]) if g is lead else 0.0
                for v, vm, ip in targets:
                    first = self.probes.first_reply(v, ip, g["end"])
                    if first is not None:
                        heal = max(heal, first - g["end"])
                g["heal"] = max(0.0, heal)

    # -- the operator ------------------------------------------------------------------------------

    def operate(self):
        rng = random.Random(self.seed + 1)
        last_burn = 0
        while not self.stop and time.time() < self.deadline:
            time.sleep(rng.uniform(5, 10))
            if not self.free(["ctl"]):
                continue
            if time.time() - last_burn > 120:
                self.burn()
                last_burn = time.time()
            with self.lock:
                placed = {vm: h for vm, h in self.vm_host.items() if vm not in self.none_since and self.hosts.get(h) == "up"}
            if rng.random() < 0.75:
                vm = rng.choice(sorted(placed)) if placed else None
                targets = [h for h in self.up_hosts() if vm and h != placed[vm]]
                if not vm or not targets:
                    continue
                rc, out, err = self.lab.op("migrate %s --to %s" % (vm, rng.choice(targets)), 40)
                key = "migrations"
            else:
                v = rng.choice(sorted(VIOLINS))
                rc, out, err = self.lab.op("migrate %s --to-domain %s" % (v, rng.choice(["d1", "d2"])), 60)
                key = "violin_migrations"
            with self.lock:
                self.operator[key] += 1
                if rc != 0:
                    self.operator["refused"] += 1

    def burn(self):
        """Load that makes the policy move VMs: two guests on the same host burn their CPU for
        45 s (the paper's policy moves a VM when a host has more high-demand VMs than another
        could take; one burning guest per core makes no move worth it)."""
        with self.lock:
            by_host = {}
            for vm, h in sorted(self.vm_host.items()):
                if vm not in self.none_since and self.hosts.get(h) == "up":
                    by_host.setdefault(h, []).append(vm)
        crowded = [vms for h, vms in sorted(by_host.items()) if len(vms) >= 2]
        if not crowded:
            return
        for vm in crowded[0][:2]:
            v = vm[0]
            sh("ip netns exec %s-p%s python3 %s/compose/probe.py sh %s 'timeout 45 sh -c \"while :; do :; done\" >/dev/null 2>&1 &' --timeout 5"
               % (self.lab.tag, v, ROOT, VIOLINS[v][vm]), 15)
        log("load: %s burn their CPU for 45 s" % " and ".join(crowded[0][:2]))

    # -- faults ----------------------------------------------------------------------------------

    def schedule(self):
        """When each fault comes and of which kind, from the seed: gaps drawn with a mean of
        14 s (one every 20 s at least, on average), kinds dealt from shuffled decks so every
        kind comes about as often."""
        rng = self.rng
        out, t, deck = [], rng.uniform(5, 10), []
        while t < self.minutes * 60 - 20:
            if not deck:
                deck = list(KINDS)
                rng.shuffle(deck)
            out.append((t, deck.pop()))
            t += min(30.0, rng.expovariate(1 / 14.0))
        return out

    def inject(self, plan, started):
        threads = []
        for at, kind in plan:
            while not self.stop and time.time() < started + at:
                time.sleep(0.2)
            if self.stop:
                break
            t = threading.Thread(target=self.fault, args=(kind,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=400)

    def fault(self, kind):
        try:
            if kind in ("kill-bus", "kill-policy"):
                self.kill_control(kind[len("kill-"):])
            elif kind in ("kill-mesh", "kill-monitor", "kill-executor"):
                self.kill_on_host(kind[len("kill-"):])
            else:
                getattr(self, "fault_" + kind.replace("-", "_"))()
        except Exception as e:
            log("fault %s could not be carried out: %r" % (kind, e))

    def pick_host(self, exclude=()):
        with self.lock:
            hosts = [h for h, s in sorted(self.hosts.items()) if s == "up" and h not in self.busy and h not in exclude]
        return self.rng.choice(hosts) if hosts else None

    def kill_service(self, node, service, kind, detail=""):
        f = self.begin(kind, detail or "%s on %s" % (service, node), [node])
        self.lab.lab("kill %s %s %s" % (self.lab.run, node, service))
        rc, _, err = self.lab.lab("start %s %s %s" % (self.lab.run, node, service), 120)
        if rc != 0:
            self.violate("restart", "%s on %s did not answer again after SIGKILL: %s" % (service, node, err.strip()[-300:]))
        self.end(f)

    def kill_control(self, service):
        if self.free(["ctl"]):
            self.kill_service("ctl", service, "kill-" + service)

    def kill_on_host(self, service):
        h = self.pick_host()
        if h:
            self.kill_service(h, service, "kill-" + service)

    def fault_kill_switch(self):
        h = self.pick_host()
        ports = self.lab.call(h, "mesh", "ports") if h else None
        switches = [(v["vni"], v["pid"]) for v in (ports or {}).get("violins", []) if v.get("pid", 0) > 0]
        if not switches:
            return
        vni, pid = self.rng.choice(sorted(switches))
        f = self.begin("kill-switch", "VIOLIN %d's switch on %s" % (vni, h), [h])
        sh("kill -9 %d" % pid)
        back = False
        end = time.time() + 60
        while time.time() < end and not back:
            time.sleep(0.2)
            now = self.lab.call(h, "mesh", "ports", timeout=3) or {}
            back = any(v["vni"] == vni and v.get("pid", 0) > 0 and v["pid"] != pid for v in now.get("violins", []))
        if not back:
            self.violate("restart", "VIOLIN %d's switch on %s was not restarted within 60 s" % (vni, h))
        self.end(f)

    def migration(self, bandwidth, postcopy=False):
        """An operator's migration to act on: (vm, source, destination, job) or None."""
        with self.lock:
            placed = [(vm, h) for vm, h in sorted(self.vm_host.items())
                      if vm not in self.none_since and self.hosts.get(h) == "up" and h not in self.busy]
        if not placed:
            return None
        vm, src = self.rng.choice(placed)
        dst = self.pick_host(exclude=[src])
        if not dst:
            return None
        rc, out, err = self.lab.op("migrate %s --to %s --bandwidth %d%s" % (vm, dst, bandwidth, " --postcopy" if postcopy else ""), 40)
        m = re.search(r"\bjob[ :\"]+(job-[0-9a-f]+)", out + err)
        if rc != 0 or not m:
            return None
        return vm, src, dst, m.group(1)

    def wait_phase(self, src, dst, vm, job, phase, seconds=60):
        end = time.time() + seconds
        while time.time() < end:
            if phase == "cut-over":
                rc, out, _ = sh("virsh -c '%s' domstate %s" % (self.lab.libvirt(dst), vm), 5)
                if rc == 0 and out.strip() == "running":
                    return True
                time.sleep(0.05)
                continue
            j = self.lab.call(src, "executor", "job", json.dumps({"job": job}), timeout=3) or {}
            state = j.get("state", "")
            if state in ("completed", "failed", "cancelled", "rolled_back"):
                return False
            if phase == "preparing" and state in ("preparing", "migrating"):
                return True
            if phase == "migrating" and state == "migrating" and j.get("processed_bytes", 0) > 0:
                return True
            if phase == "postcopy" and state == "postcopy":
                return True
            time.sleep(0.1)
        return False

    def fault_executor_in_migration(self):
        phase = self.rng.choice(["preparing", "migrating", "postcopy", "cut-over"])
        m = self.migration(bandwidth=4 if phase != "cut-over" else 16, postcopy=phase == "postcopy")
        if not m:
            return
        vm, src, dst, job = m
        with self.lock:
            if src in self.busy:
                return
            self.busy.add(src)
        try:
            hit = self.wait_phase(src, dst, vm, job, phase)
        finally:
            with self.lock:
                self.busy.discard(src)
        self.kill_service(src, "executor", "executor-in-migration",
                          "%s's executor (%s to %s, job %s) at %s%s" % (src, vm, dst, job, phase, "" if hit else " (the job had ended)"))

    def fault_libvirtd_in_migration(self):
        m = self.migration(bandwidth=4)
        if not m:
            return
        vm, src, dst, job = m
        side = self.rng.choice(["source", "destination"])
        host = src if side == "source" else dst
        if not self.free([host]):
            return
        hit = self.wait_phase(src, dst, vm, job, "migrating")
        f = self.begin("libvirtd-in-migration", "libvirtd of %s, the %s of %s (job %s)%s" % (host, side, vm, job, "" if hit else ", after the job"),
                       [host])
        rc, _, err = self.lab.lab("libvirtd-restart %s %s" % (self.lab.run, host), 120)
        if rc != 0:
            self.violate("restart", "libvirtd on %s did not come back: %s" % (host, err.strip()[-300:]))
        self.end(f)

    def fault_host_link_down(self):
        h = self.pick_host()
        if not h:
            return
        seconds = self.rng.uniform(3, 10)
        f = self.begin("host-link-down", "%s for %.0f s" % (h, seconds), [h])
        sh("ip -n %s-net link set %s down" % (self.lab.tag, h), check=True)
        time.sleep(seconds)
        sh("ip -n %s-net link set %s up" % (self.lab.tag, h), check=True)
        self.end(f)

    def fault_host_lost(self):
        # h1 holds the probes' ports (the operator's window into the VIOLINs): never lost.
        h = self.pick_host(exclude=["h1"])
        if not h or len(self.up_hosts()) < 3:
            return
        for_good = self.rng.random() < 1 / 3
        away = 60 if for_good else self.rng.uniform(45, 90)
        f = self.begin("host-lost", "%s, %s" % (h, "for good" if for_good else "back after %.0f s" % away), [h])
        with self.lock:
            self.hosts[h] = "lost"
            self.lost_at[h] = time.time()
        self.lab.lab("lose %s %s" % (self.lab.run, h), 60)
        time.sleep(away)
        if for_good:
            with self.lock:
                self.hosts[h] = "gone"
                new = next(("h%d" % i for i in range(4, 10) if "h%d" % i not in self.hosts), None)
            if new:
                # A new machine takes its place in the domain.
                rc, _, err = self.lab.lab("add %s %s %s" % (self.lab.run, new, self.domain[h]), 180)
                with self.lock:
                    self.domain[new] = self.domain[h]
                    self.hosts[new] = "up" if rc == 0 else "gone"
                if rc != 0:
                    self.violate("restart", "a new host %s could not join: %s" % (new, err.strip()[-300:]))
        else:
            rc, _, err = self.lab.lab("revive %s %s" % (self.lab.run, h), 180)
            if rc != 0:
                self.violate("restart", "host %s did not come back: %s" % (h, err.strip()[-300:]))
            with self.lock:
                self.hosts[h] = "up" if rc == 0 else "gone"
        self.end(f)

    def interdomain(self, kind, rule, seconds, helper=None):
        rt = "%s-rt" % self.lab.tag
        if not self.free(["rt"]):
            return
        f = self.begin(kind, "%s for %.0f s" % (rule if not helper else "200 ms each way", seconds), ["rt"])
        p = None
        if helper:
            p = subprocess.Popen(["ip", "netns", "exec", rt, "python3", helper, "--queue", "7", "--ms", "200"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            p.stdout.readline()            # "ready"
        sh("ip netns exec %s iptables -I FORWARD %s" % (rt, rule), check=True)
        time.sleep(seconds)
        sh("ip netns exec %s iptables -D FORWARD %s" % (rt, rule), check=True)
        if p:
            p.terminate()
            p.wait(timeout=10)
        self.end(f)

    def fault_interdomain_loss(self):
        loss = self.rng.uniform(0.2, 0.5)
        self.interdomain("interdomain-loss", "-m statistic --mode random --probability %.2f -j DROP" % loss, self.rng.uniform(10, 30))

    def fault_interdomain_delay(self):
        # No netem in this kernel: an NFQUEUE program holds each packet 200 ms (delay.py).
        self.interdomain("interdomain-delay", "-j NFQUEUE --queue-num 7 --queue-bypass", self.rng.uniform(10, 30),
                         helper=os.path.join(HERE, "delay.py"))

    def fault_control_down(self):
        if not self.free(["ctl"]):
            return
        f = self.begin("control-down", "the control node for 30 s", ["ctl"])
        self.lab.lab("lose %s ctl" % self.lab.run, 60)
        time.sleep(30)
        rc, _, err = self.lab.lab("revive %s ctl" % self.lab.run, 180)
        if rc != 0:
            self.violate("restart", "the control node did not come back: %s" % err.strip()[-300:])
        self.end(f)

    # -- the end -----------------------------------------------------------------------------------

    def settle(self):
        """After the last fault: every job ends, the policy's inventory matches libvirt within
        the reconcile period, pings and meshes are whole."""
        last = max([f["end"] or time.time() for f in self.faults] or [time.time()])
        self.lab.op("policy mode recommend --to tcp://%s:7703" % ADDR["ctl"], 20)
        # Jobs: none left unfinished on any host that is up.
        end = time.time() + 180
        unfinished = {}
        while time.time() < end:
            unfinished = {}
            for h in self.up_hosts():
                jobs = self.lab.call(h, "executor", "jobs", json.dumps({"limit": 10000})) or {"jobs": None}
                if jobs["jobs"] is None:
                    unfinished[h] = ["(the executor does not answer)"]
                    continue
                left = [j["job"] + " " + j["state"] for j in jobs["jobs"] if j["state"] not in ("completed", "failed", "cancelled", "rolled_back")]
                if left:
                    unfinished[h] = left
            if not unfinished:
                break
            time.sleep(2)
        for h, left in unfinished.items():
            self.violate("journal", "jobs not finished on %s 180 s after the last fault: %s" % (h, ", ".join(left[:5])))
        # The inventory: each running VM where libvirt runs it, within the reconcile period.
        start = max(last, time.time() - 1)
        mismatch = []
        while True:
            where = self.snapshot()
            inv = self.lab.call("ctl", "policy", "inventory") or {}
            placed = {vm.get("id"): vm.get("host") for vm in inv.get("vms", [])}
            mismatch = ["%s: policy %s, libvirt %s" % (vm, placed.get(vm), ",".join(hosts)) for vm, hosts in sorted(where.items())
                        if any(vm in g for g in VIOLINS.values()) and (len(hosts) != 1 or placed.get(vm) != hosts[0])]
            if inv and not mismatch:
                break
            if time.time() > start + RECONCILE + 15:
                self.violate("inventory", "the policy's inventory differs from libvirt %.0f s after the last fault: %s"
                             % (time.time() - last, "; ".join(mismatch) or "the policy does not answer"))
                break
            time.sleep(2)
        # Rows: every job the executors announced is still in its source's journal.
        journals = {}
        for h in self.up_hosts():
            jobs = self.lab.call(h, "executor", "jobs", json.dumps({"limit": 10000})) or {}
            journals[h] = {j["job"] for j in jobs.get("jobs", [])}
        for topic in ("executor.migration_started",):
            for _, _, sender, body in self.events.matching(topic):
                src = sender.split("@")[-1]
                if src in journals and body.get("job") not in journals[src]:
                    self.violate("journal", "job %s (%s from %s) is missing from %s's journal" % (body.get("job"), body.get("vm"), src, src))
        decided = {b.get("id") for _, _, _, b in self.events.matching("policy.decided")}
        ledger = self.lab.call("ctl", "policy", "decisions", json.dumps({"limit": 10000})) or {}
        kept = {d.get("id") for d in ledger.get("decisions", [])}
        for d in sorted(x for x in decided if x is not None):
            if ledger and d not in kept:
                self.violate("ledger", "decision %s is missing from the ledger" % d)
        # Pings and meshes, now that nothing acts.
        time.sleep(LINK_HEAL)
        now = time.time()
        for v, vm, ip in self.pingable(now):
            if not self.probes.replied(v, ip, now - LINK_HEAL, now):
                self.violate("pings", "%s (%s in VIOLIN %s) does not answer at the end" % (vm, ip, v))
        if not self.mesh_full():
            self.violate("mesh-full", "a VIOLIN's mesh is not full at the end")

    def clean_up(self):
        """Both VIOLINs destroyed, the lab taken down: nothing of the run may be left."""
        self.probes.close()
        for v in VIOLINS:
            self.lab.call("h1", "mesh", "remove_port", json.dumps({"vni": self.vnis[v], "name": self.probes.port(v)}))
        for v in VIOLINS:
            rc, _, err = self.lab.op("destroy %s --timeout 120" % v, 150)
            if rc != 0:
                self.violate("left-behind", "violin destroy %s failed: %s" % (v, err.strip()[-300:]))
        for h in self.up_hosts():
            left = self.lab.running(h)
            if left:
                self.violate("left-behind", "%s still runs %s after destroy" % (h, ", ".join(sorted(left))))
        # A mesh stops a VIOLIN's switch with its last port; the guests' QEMUs are gone.
        end = time.time() + 30
        while True:
            _, out, _ = sh("pgrep -af 'violin-switch|qemu-system' | grep -F '%s/' | grep -v pgrep" % self.lab.run)
            if not out.strip() or time.time() > end:
                break
            time.sleep(1)
        if out.strip():
            self.violate("left-behind", "switches or QEMUs left after destroy: %s" % out.strip().replace("\n", "; ")[:400])
        self.lab.lab("down %s" % self.lab.run, 180)
        rc, out, _ = sh("pgrep -af '%s/' | grep -v pgrep" % self.lab.run)
        if out.strip():
            self.violate("left-behind", "processes of the run after it ended: %s" % out.strip().replace("\n", "; ")[:400])
        rc, out, _ = sh("ip netns list")
        if self.lab.tag in out:
            self.violate("left-behind", "namespaces of the run after it ended: %s" % " ".join(x.split()[0] for x in out.splitlines() if self.lab.tag in x))

    # -- the report ----------------------------------------------------------------------------------

    def report(self, wall):
        sent, lost, streams = self.probes.totals()
        lines = ["# Chaos soak: seed %d, %g minutes" % (self.seed, self.minutes), "",
                 "%d faults in %.0f s of faults (one every %.1f s); hosts at the end: %s; run %.0f s in all."
                 % (len(self.faults), self.minutes * 60, self.minutes * 60 / max(1, len(self.faults)),
                    ", ".join("%s %s" % (h, s) for h, s in sorted(self.hosts.items())), wall), "",
                 "| fault | injected | overlapping others | heal median (s) | heal p95 (s) | heal max (s) |", "|---|---|---|---|---|---|"]
        for kind in KINDS:
            fs = [f for f in self.faults if f["kind"] == kind]
            heals = sorted(f["heal"] for f in fs if f.get("heal") is not None)
            if heals:
                p95 = heals[min(len(heals) - 1, int(round(0.95 * (len(heals) - 1))))]
                figures = "%.1f | %.1f | %.1f" % (statistics.median(heals), p95, heals[-1])
            else:
                figures = "- | - | -"
            lines.append("| %s | %d | %d | %s |" % (kind, len(fs), sum(1 for f in fs if f.get("overlapped")), figures))
        survived = sum(1 for s in streams if s.get("survived"))
        connected = [s for s in streams if s.get("sent", 0) > 0]
        completed = len(self.events.matching("executor.migration_completed"))
        failed = len(self.events.matching("executor.migration_failed"))
        decided = len(self.events.matching("policy.decided"))
        lines += ["", "Pings count every guest all along, also while it was lost with its host and being made "
                  "again elsewhere (judged only once it had run for a minute).", "",
                  "Heal: from the fault's end until every guest answers pings again (and every mesh is full, for the last "
                  "of a group). Faults whose healing windows overlap are judged together: every guest must answer "
                  "between the group's last end and its last deadline (10 s after a process fault, 30 s after a link fault).", "",
                  "| figure | value |", "|---|---|",
                  "| pings sent / lost | %d / %d (%.2f %%) |" % (sent, lost, 100.0 * lost / max(1, sent)),
                  "| TCP streams survived / connected (connects refused while the guest was down) | %d / %d (%d) |"
                  % (survived, len(connected), len(streams) - len(connected)),
                  "| operator migrations asked (VMs / VIOLINs) / refused | %d / %d / %d |"
                  % (self.operator["migrations"], self.operator["violin_migrations"], self.operator["refused"]),
                  "| migrations completed / failed (events) | %d / %d |" % (completed, failed),
                  "| policy decisions | %d |" % decided,
                  "| guests lost with their host made again / longest from the loss (limit %.0f s) | %d / %s |"
                  % (REMAKE_LIMIT, len(self.remakes), ("%.0f s" % max(self.remakes)) if self.remakes else "-"),
                  "| guest kernels that crashed (each judged by its reboot instead of its pings) | %d |" % len(self.crashes),
                  "| invariant violations | %d |" % len(self.violations), ""]
        if self.crashes:
            lines += ["## Guest kernels that crashed", "",
                      "Read from the guests' consoles. A crashed guest cannot answer pings, whatever the network does: "
                      "it must boot again and answer within %.0f s (invariant guest-reboot)." % (BOOT_GRACE + 30), ""]
            lines += ["- %s %s: %s" % (time.strftime("%H:%M:%S", time.localtime(t)), vm, line) for t, vm, _, line in self.crashes] + [""]
        lines += ["## TCP streams that connected", ""] + ["- VIOLIN %s to %s: %s, %d sent, %d echoed, longest stall %s ms%s"
                                                        % (x["violin"], x["ip"], "survived" if x.get("survived") else "ended", x.get("sent", 0),
                                                           x.get("echoed", 0), x.get("longest_stall_ms", "-"), (": " + x["error"]) if x.get("error") else "")
                                                        for x in connected] + [""]
        lines += ["## Faults", ""] + ["- %s +%.0f s %s: %s%s" % (time.strftime("%H:%M:%S", time.localtime(f["start"])), f["start"] - self.t0,
                                                                     f["kind"], f["detail"], "" if f.get("heal") is None else ", healed in %.1f s" % f["heal"])
                                      for f in self.faults]
        lines += ["", "## Violations", ""]
        if not self.violations:
            lines.append("None.")
        for t, inv, msg in self.violations:
            lines += ["### %s at %s: %s" % (inv, time.strftime("%H:%M:%S", time.localtime(t)), msg), "", "```"]
            lines += self.events.around(t) or ["(no events around it)"]
            lines += ["```", ""]
        return "\n".join(lines) + "\n"

    # -- the run ---------------------------------------------------------------------------------------

    def setup(self):
        log("the lab (compose/lab.sh up %s)" % self.lab.run)
        self.lab.lab("up %s" % self.lab.run, 300, check=True)
        self.lab.tag = open(os.path.join(self.lab.run, "tag")).read().strip()
        self.events = Events(self.lab)
        self.vnis = {}
        for v in VIOLINS:
            rc, out, err = self.lab.op("create -f %s/chaos-%s.yaml --timeout 180" % (HERE, v), 200)
            if rc != 0:
                raise RuntimeError("violin create %s: %s" % (v, err))
            rc, out, err = self.lab.op("show %s --json" % v)
            self.vnis[v] = json.loads(out)["vms"][0]["vni"]
        log("VIOLINs a (VNI %d) and b (VNI %d) made; guests booting" % (self.vnis["a"], self.vnis["b"]))
        self.probes = Probes(self.lab, self.vnis)
        end = time.time() + 240
        waiting = [(v, ip) for v, g in VIOLINS.items() for ip in g.values()]
        while waiting and time.time() < end:
            waiting = [(v, ip) for v, ip in waiting if sh("ip netns exec %s-p%s ping -c 1 -W 1 %s" % (self.lab.tag, v, ip), 5)[0] != 0]
        if waiting:
            raise RuntimeError("guests that never answered: %s" % waiting)
        self.lab.op("policy mode automatic --to tcp://%s:7703" % ADDR["ctl"], 20)
        for _ in range(3):
            self.snapshot()

    def run(self):
        self.t0 = time.time()
        self.deadline = self.t0 + self.minutes * 60
        for vm in (vm for g in VIOLINS.values() for vm in g):
            self.vm_since[vm] = self.t0 - BOOT_GRACE      # booted and answering: judged from the start
        # The streams end before the settling checks begin (the VIOLINs are destroyed after them).
        self.probes.start(self.minutes * 60 + 600, self.minutes * 60 + 30)
        checker = threading.Thread(target=self.checker, daemon=True)
        operator = threading.Thread(target=self.operate, daemon=True)
        checker.start()
        operator.start()
        plan = self.schedule()
        log("%d faults planned over %g minutes" % (len(plan), self.minutes))
        self.inject(plan, self.t0)
        while time.time() < self.deadline:
            time.sleep(1)
        operator.join(timeout=120)
        # The last faults' healing windows pass under the checker's eye.
        last = max([f["end"] or time.time() for f in self.faults] or [time.time()])
        while time.time() < last + LINK_HEAL + 4:
            time.sleep(1)
        self.stop = True
        checker.join(timeout=60)
        self.stop = False
        self.judge()
        self.settle()


def main():
    ap = argparse.ArgumentParser(description="The chaos soak of the local lab (see the module's doc).")
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--report", default="", help="also write the report (Markdown) to this file")
    ap.add_argument("--keep", action="store_true", help="leave the run directory (logs, journals) behind")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("chaos.py: run it as root (namespaces, libvirtd)", file=sys.stderr)
        return 77
    if not 1 <= a.minutes <= 600:
        print("chaos.py: --minutes 1-600", file=sys.stderr)
        return 64
    bin_dir = os.environ.get("VIOLIN_BIN") or sh("cd %s && swift build --show-bin-path" % ROOT, 300, check=True)[1].strip()
    sh("bash %s/compose/lab-libvirt.sh guest %s" % (ROOT, CACHE), 900, check=True)
    run = tempfile.mkdtemp(prefix="violin-chaos.")
    lab = Lab(run, bin_dir)
    soak = Soak(lab, a.minutes, a.seed)
    started = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # the finally below still cleans up
    try:
        soak.setup()
        soak.run()
    except Exception as e:
        soak.violate("harness", "the run could not go on: %r" % e)
    finally:
        try:
            soak.clean_up() if hasattr(soak, "probes") else lab.lab("down %s" % run, 180)
        finally:
            if hasattr(soak, "events"):
                soak.events.close()
            sh("bash %s/compose/lab.sh down %s" % (ROOT, run), 180)
    text = soak.report(time.time() - started) if hasattr(soak, "events") and hasattr(soak, "t0") else \
        "# Chaos soak: seed %d\n\nThe run did not start: %s\n" % (a.seed, soak.violations)
    print(text)
    if a.report:
        with open(a.report, "w") as f:
            f.write(text)
    if a.keep:
        log("the run's files: %s" % run)
    else:
        shutil.rmtree(run, ignore_errors=True)
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(main())

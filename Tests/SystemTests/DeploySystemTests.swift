import Foundation
import TestSupport
import Testing
import VIOLINProtocol

/// Deployment: the compose files, a cluster started from per-node files by the launcher, a host
/// added and a host drained at run time, and a host whose key the control node does not allow.
@Suite(.serialized) struct DeploySystemTests {
    static func json(_ text: String) throws -> JSONValue { try JSONText.parse(Array(text.utf8)) }

    @Test func composeFilesAndTheirNodeFilesAreValid() throws {
        let dir = packageRoot + "/compose/docker"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let composes = files.filter { $0.hasSuffix(".yml") && $0 != "prometheus.yml" }
        #expect(composes == ["control.yml", "host.yml"])
        for f in composes {
            let r = try sh("cd '\(dir)' && docker-compose -f \(f) config -q", timeout: 60)
            #expect(r.status == 0, "\(f): \(r.err)")
        }
        for f in files where f.hasSuffix(".yaml") {
            let r = try run("violin", ["node", "check", "--no-files", "\(dir)/\(f)"])
            #expect(r.status == 0, "\(f): \(r.err)")
        }
        // The Prometheus beside the control node scrapes what the node files say: the committed
        // configuration is the one `violin node prometheus` writes, and Prometheus' own checker
        // takes it (with the token file where it names it).
        let written = try run("violin", ["node", "prometheus", "\(dir)/control.yaml", "\(dir)/host.yaml", "--token-dir", "/etc/prometheus/keys"])
        #expect(written.status == 0, "\(written.err)")
        #expect(written.out.trimmingCharacters(in: .newlines) == (try String(contentsOfFile: "\(dir)/prometheus.yml", encoding: .utf8)).trimmingCharacters(in: .newlines),
                "compose/docker/prometheus.yml is not what violin node prometheus writes")
        let scratch = try Scratch("promconf")
        defer { scratch.cleanup() }
        try "t0ken\n".write(toFile: scratch.file("metrics.token"), atomically: true, encoding: .utf8)
        try written.out.replacingOccurrences(of: "/etc/prometheus/keys", with: scratch.path)
            .write(toFile: scratch.file("prometheus.yml"), atomically: true, encoding: .utf8)
        let checked = try run("/usr/bin/promtool", ["check", "config", scratch.file("prometheus.yml")])
        #expect(checked.status == 0, "\(checked.out) \(checked.err)")
        // The provisioned dashboard is JSON with a query on every panel.
        let dashboard = try Self.json(try String(contentsOfFile: "\(dir)/grafana/dashboards/violin.json", encoding: .utf8))
        let panels = dashboard["panels"]?.items ?? []
        #expect(panels.count >= 10 && panels.allSatisfy { !($0["targets"]?.items.first?["expr"]?.stringValue ?? "").isEmpty })
    }

    /// A node file with an unknown key, a bad address or a missing key file: the node does not
    /// start, and says why (exit 78, the key and the line).
    @Test func badNodeFilesStopTheNodeNamingKeyAndLine() throws {
        let scratch = try Scratch("badnode")
        defer { scratch.cleanup() }
        let cases: [(String, String)] = [
            ("role: host\ndomain: d1\naddress: 10.0.0.2\ncontrol_address: 10.0.0.1\nflavour: mint\n", "'flavour' (\(scratch.file("n.yaml")) line 5)"),
            ("role: control\naddress: 10.0.0.999\n", "'address' (\(scratch.file("n.yaml")) line 2)"),
            ("role: control\naddress: 10.0.0.9\nkey: \(scratch.file("none.key"))\nallowed_keys: \(scratch.file("none.pub"))\n",
             "'key' (\(scratch.file("n.yaml")) line 3)"),
            // Secure by default: no key on an address others reach, and no insecure: true.
            ("role: control\naddress: 10.0.0.9\n", "or insecure: true"),
        ]
        for (text, expected) in cases {
            try text.write(toFile: scratch.file("n.yaml"), atomically: true, encoding: .utf8)
            let r = try run("violin", ["node", "run", scratch.file("n.yaml"), "--bin", binDir])
            #expect(r.status == 78, "\(text): \(r.status) \(r.err)")
            #expect(r.err.contains(expected), "\(r.err) should name \(expected)")
        }
    }

    @Test(.timeLimit(.minutes(6))) func clusterFromNodeFilesGrowsAndDrains() throws {
        // With keys: every link between the nodes is CURVE, the drain's migration included.
        let lab = try LocalLab("cluster", keys: true)
        defer { lab.teardown() }
        let scratch = lab.scratch, run = lab.run
        func violin(_ args: String, timeout: Double = 30) throws -> (status: Int32, out: String, err: String) {
            try lab.violin(args, timeout: timeout)
        }
        func status() throws -> [String: JSONValue] {
            let r = try violin("cluster status --control 10.77.0.100 --json \(try lab.curve("ctl"))")
            try #require(r.status == 0, "cluster status: \(r.err)")
            var byNode: [String: JSONValue] = [:]
            for n in try Self.json(r.out)["nodes"]?.items ?? [] { byNode[n["node"]?.stringValue ?? "?"] = n }
            return byNode
        }
        let first = try status()
        #expect(Set(first.keys) == ["control", "h1", "h2", "h3"])
        for (name, n) in first {
            // The control node runs the bus and the policy; a host its mesh, monitor and executor.
            let services = try #require(n["services"]?.items, "\(name) lists no services: \(n)")
            #expect(services.count == (name == "control" ? 2 : 3), "\(name): \(services)")
            for s in services { #expect(s["healthy"] == .bool(true), "\(name) \(s)") }
        }
        #expect(first["h3"]?["domain"]?.stringValue == "d2")
        #expect(first.values.allSatisfy { $0["insecure"] == false }, "a keyed lab marked insecure: \(first)")

        // A fourth host joins domain d2 at run time.
        let added = try lab.lab("add \(run) h4 d2", timeout: 120)
        try #require(added.status == 0, "add: \(added.err)")
        let second = try status()
        #expect(second["h4"]?["domain"]?.stringValue == "d2", "\(second.keys.sorted())")
        let h4Services = try #require(second["h4"]?["services"]?.items, "h4 lists no services")
        #expect(h4Services.count == 3 && h4Services.allSatisfy { $0["healthy"] == .bool(true) }, "\(h4Services)")

        // It gets a VIOLIN of one VM, from a spec pinned to it; drained later, the VM moves to the
        // other host of d2 and h4 leaves.
        let ctl = try lab.curve("ctl")
        try "name: v\nhome_domain: d2\nhead: d1\nimage: tiny\nvms:\n  - name: d1\n    host: h4\n    ip: 10.0.0.1\n"
            .write(toFile: scratch.file("v.yaml"), atomically: true, encoding: .utf8)
        let created = try violin("create -f \(scratch.file("v.yaml")) --json --timeout 90 --control 10.77.0.100 \(ctl)", timeout: 120)
        try #require(created.status == 0, "create: \(created.err)")
        let vMade = try Self.json(created.out)
        let vVNI = vMade["vni"], d1Made = try #require(vMade["vms"]?.items.first, "\(created.out)")
        #expect(d1Made["host"] == "h4", "\(created.out)")
        // A VIOLIN's spec, planned against this cluster: the executors' own figures, nothing created.
        let planned = try violin("create -f \(packageRoot)/compose/violin-spec.yaml --dry-run --control 10.77.0.100 --json --timeout 30 \(ctl)", timeout: 60)
        try #require(planned.status == 0, "plan: \(planned.err)")
        let plan = try Self.json(planned.out)
        let vms = Dictionary(uniqueKeysWithValues: (plan["vms"]?.items ?? []).map { ($0["name"]?.stringValue ?? "", $0) })
        #expect(vms.count == 6 && plan["vni"] != vVNI, "\(planned.out)")
        #expect(vms["head"]?["domain"] == "d1" && vms["head"]?["host"] != vms["db"]?["host"], "head at home, apart from db: \(planned.out)")
        #expect(vms.values.allSatisfy { ["h1", "h2", "h3", "h4"].contains($0["host"]?.stringValue ?? "") })
        #expect(!vms.values.contains { $0["host"] == "h4" && $0["nic_port"] == d1Made["nic_port"] }, "a NIC port h4's VM uses was given again")
        // The VIOLIN as users see it: listed, and shown VM by VM from the hosts' own answers.
        let listed = try violin("list --control 10.77.0.100 --json \(ctl)")
        try #require(listed.status == 0, "list: \(listed.err)")
        let v = try #require(try Self.json(listed.out)["violins"]?.items.first { $0["name"] == "v" }, "\(listed.out)")
        #expect(v["phase"] == "running" && v["vms_running"] == 1 && v["vms"] == 1 && v["vni"] == .array([vVNI ?? .null]) && v["hosts"] == ["h4"]
                && v["domains"] == ["d2"], "\(v)")
        let shown = try violin("show v --control 10.77.0.100 --json \(ctl)")
        try #require(shown.status == 0, "show: \(shown.err)")
        let d1 = try #require(try Self.json(shown.out)["vms"]?.items.first, "\(shown.out)")
        #expect(d1["name"] == "d1" && d1["host"] == "h4" && d1["state"] == "running" && d1["mac"] == d1Made["mac"]
                && d1["head"] == true, "\(d1)")
        #expect(try violin("show nope --control 10.77.0.100 \(ctl)").status == 1)
        // Its console: a command typed into the guest's shell, its output read back — before a
        // migration, and after it, the console having followed the VM to its new host.
        let console = try ConsoleUser(lab, vm: "d1", curve: ctl)
        defer { console.end() }
        try #require(console.type("echo con-$((6*7))", until: "con-42"), "no answer on the console: \(console.process.stderrText) \(console.process.lines.suffix(8)) \((try? sh("tail -c 600 \(run)/h4/console/d1.log; tail -5 \(run)/h4/executor.log").out) ?? "")")
        // The operator's verbs: the head node may not leave its home domain; within it, d1 goes
        // to h3 and back, waited for with its progress; the jobs are listed where they ran.
        let refused = try violin("migrate d1 --to h1 --control 10.77.0.100 \(ctl)")
        #expect(refused.status == 1 && refused.err.contains("home domain d2"), "\(refused.err)")
        for (to, from) in [("h3", "h4"), ("h4", "h3")] {
            let moved = try violin("migrate d1 --to \(to) --wait 120 --control 10.77.0.100 \(ctl)", timeout: 150)
            #expect(moved.status == 0 && moved.out.contains("d1: completed \(from) -> \(to)"), "\(moved.out) \(moved.err)")
            if to == "h3" {
                #expect(try eventually(deadline: 30) { console.process.stderrText.contains("connected to d1 on h3") }, "\(console.process.stderrText)")
                #expect(console.type("echo con-$((7*7))", until: "con-49"), "no answer after the move: \(console.process.stderrText)")
            }
        }
        #expect(console.detach() == 0, "\(console.process.stderrText)")
        // The policy follows (the executor's migration_completed): d1 is on h4 again before the drain.
        #expect(try eventually(deadline: 20) {
            let r = try violin("show v --json --control 10.77.0.100 \(ctl)")
            return (try? Self.json(r.out))?["vms"]?.items.first?["host"] == "h4"
        }, "the inventory did not follow d1 back to h4")
        // Stopped and started again on its host (libvirt's definition kept by the executor).
        let stopped = try violin("stop d1 --control 10.77.0.100 \(ctl)", timeout: 60)
        #expect(stopped.status == 0 && stopped.out.contains("stopped on h4"), "\(stopped.out) \(stopped.err)")
        let whileStopped = try Self.json(try violin("show v --json --control 10.77.0.100 \(ctl)").out)
        #expect(whileStopped["vms"]?.items.first?["state"] == "stopped" && whileStopped["phase"] == "running", "\(whileStopped)")
        let started = try violin("start d1 --control 10.77.0.100 \(ctl)", timeout: 60)
        #expect(started.status == 0 && started.out.contains("started on h4"), "\(started.out) \(started.err)")
        #expect(try Self.json(try violin("show v --json --control 10.77.0.100 \(ctl)").out)["vms"]?.items.first?["state"] == "running")
        let jobs = try violin("jobs --json --control 10.77.0.100 \(ctl)")
        let d1Jobs = (try Self.json(jobs.out)["jobs"]?.items ?? []).filter { $0["vm"] == "d1" }
        #expect(d1Jobs.count == 2 && d1Jobs.allSatisfy { $0["state"] == "completed" }, "\(jobs.out)")
        // show says per VM its address and vCPUs (from the spec) and its last migration; list the VIOLIN's age.
        let shownAgain = try #require(try Self.json(try violin("show v --json --control 10.77.0.100 \(ctl)").out)["vms"]?.items.first)
        #expect(shownAgain["ip"] == "10.0.0.1" && shownAgain["vcpus"] == 1
                && (shownAgain["last_migration"]?.stringValue ?? "").hasPrefix("h3 -> h4 completed"), "\(shownAgain)")
        let listedAgain = try Self.json(try violin("list --json --control 10.77.0.100 \(ctl)").out)["violins"]?.items.first { $0["name"] == "v" }
        #expect(listedAgain?["created_at"]?.stringValue?.isEmpty == false, "\(String(describing: listedAgain))")
        #expect(try violin("cancel job-none --control 10.77.0.100 \(ctl)").status == 1)

        // A VIOLIN from a spec: spread over d1's hosts from the image store, listed, destroyed.
        try "name: env1\nhome_domain: d1\nimage: tiny\nmemory_mb: 128\nplacement: spread\nuplink: nat\nvms:\n  - name: e1\n  - name: e2\n"
            .write(toFile: scratch.file("env1.yaml"), atomically: true, encoding: .utf8)
        let made = try violin("create -f \(scratch.file("env1.yaml")) --json --timeout 90 --control 10.77.0.100 \(ctl)", timeout: 120)
        try #require(made.status == 0, "create: \(made.err)")
        let env = try Self.json(made.out)
        let envHosts: Set<String> = Set((env["vms"]?.items ?? []).compactMap { $0["host"]?.stringValue })
        #expect(env["phase"] == "running" && envHosts == ["h1", "h2"], "\(made.out)")
        // Its head e1 has an uplink: a second NIC on its host's NAT network (DHCP), through which it
        // reaches out — here, the network's gateway on its host.
        let head = try ConsoleUser(lab, vm: "e1", curve: ctl)
        defer { head.end() }
        #expect(head.type("ping -c 1 -W 2 192.168.150.1", until: "1 packets received"), "no uplink: \(head.process.lines.suffix(6))")
        #expect(head.detach() == 0)
        let envRow = try Self.json(try violin("list --json --control 10.77.0.100 \(ctl)").out)["violins"]?.items.first { $0["name"] == "env1" }
        #expect(envRow?["phase"] == "running" && envRow?["vms_running"] == 2, "\(String(describing: envRow))")
        // Applied: e2 goes, e3 comes (spread: to the home domain's host with fewest of its VMs).
        try "name: env1\nhome_domain: d1\nimage: tiny\nmemory_mb: 128\nplacement: spread\nuplink: nat\nvms:\n  - name: e1\n  - name: e3\n"
            .write(toFile: scratch.file("env1.yaml"), atomically: true, encoding: .utf8)
        let applied = try violin("apply -f \(scratch.file("env1.yaml")) --json --timeout 90 --control 10.77.0.100 \(ctl)", timeout: 120)
        try #require(applied.status == 0, "apply: \(applied.err)")
        let change = try Self.json(applied.out)
        #expect(change["removed"] == ["e2"] && change["added"]?.items.map { $0["name"] } == ["e3"] && change["vni"] == env["vni"], "\(applied.out)")
        let afterApply = try Self.json(try violin("show env1 --json --control 10.77.0.100 \(ctl)").out)["vms"]?.items ?? []
        #expect(Set(afterApply.compactMap { $0["name"]?.stringValue }) == ["e1", "e3"] && afterApply.allSatisfy { $0["state"] == "running" },
                "\(afterApply)")
        try "name: env1\nhome_domain: d2\nimage: tiny\nvms:\n  - name: e1\n".write(toFile: scratch.file("moved.yaml"), atomically: true, encoding: .utf8)
        let refusedApply = try violin("apply -f \(scratch.file("moved.yaml")) --control 10.77.0.100 \(ctl)", timeout: 60)
        #expect(refusedApply.status == 1 && refusedApply.err.contains("home_domain") && refusedApply.err.contains("cannot change in place"), "\(refusedApply.err)")
        try "name: huge\nhome_domain: d1\nimage: tiny\nmemory_mb: 60000\nvms:\n  - name: g1\n".write(toFile: scratch.file("huge.yaml"), atomically: true, encoding: .utf8)
        let huge = try violin("create -f \(scratch.file("huge.yaml")) --timeout 30 --control 10.77.0.100 \(ctl)", timeout: 60)
        #expect(huge.status == 1 && huge.err.contains("does not fit") && huge.err.contains("MiB"), "\(huge.err)")
        // A creation that fails halfway: hx1 is made on h1, then h2 refuses hx2 (a domain of that
        // name runs there behind VIOLIN's back). hx1 is destroyed again; the error says why.
        func virsh(_ host: String, _ args: String) throws -> (status: Int32, out: String, err: String) {
            try sh("virsh -c 'qemu+unix:///system?socket=\(run)/\(host)/libvirt/sock/libvirt-sock' \(args)")
        }
        try "<domain type='qemu'><name>hx2</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type><kernel>\(LocalLab.guestCache)/vmlinuz</kernel></os></domain>"
            .write(toFile: scratch.file("hx2.xml"), atomically: true, encoding: .utf8)
        try #require(try virsh("h2", "create \(scratch.file("hx2.xml"))").status == 0)
        defer { _ = try? virsh("h2", "destroy hx2") }
        try "name: half\nhome_domain: d1\nimage: tiny\nvms:\n  - name: hx1\n    host: h1\n  - name: hx2\n    host: h2\n"
            .write(toFile: scratch.file("half.yaml"), atomically: true, encoding: .utf8)
        let half = try violin("create -f \(scratch.file("half.yaml")) --control 10.77.0.100 \(ctl)", timeout: 150)
        #expect(half.status == 1 && half.err.contains("hx2 on h2") && half.err.contains("destroyed"), "\(half.err)")
        #expect(try virsh("h1", "list --all --name").out.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").allSatisfy { $0 != "hx1" },
                "hx1 was left on h1")
        #expect(try violin("show half --control 10.77.0.100 \(ctl)").status == 1, "a failed creation was entered")
        let gone = try violin("destroy env1 --timeout 90 --control 10.77.0.100 \(ctl)", timeout: 120)
        #expect(gone.status == 0 && gone.out.contains("e1") && gone.out.contains("e3"), "\(gone.out) \(gone.err)")
        #expect(try violin("show env1 --control 10.77.0.100 \(ctl)").status == 1)
        var left: [String] = []
        for node in try status().values { left += (node["vms"]?.items ?? []).compactMap { $0["name"]?.stringValue } }
        #expect(!left.contains("e1") && !left.contains("e2") && !left.contains("e3") && !left.contains("g1"), "left on the hosts: \(left)")
        let drained = try violin("cluster drain h4 --control 10.77.0.100 --wait 120 \(try lab.curve("ctl"))", timeout: 150)
        // A client without a key gets nothing from a host.
        #expect(try violin("ping --to tcp://10.77.0.1:7704 --timeout 1").status == 2)
        #expect(drained.status == 0, "drain: \(drained.out) \(drained.err)")
        #expect(drained.out.contains("d1 -> h3"), "\(drained.out)")
        let third = try status()
        #expect(third["h4"] == nil, "h4 is still in the inventory")
        #expect((third["h3"]?["vms"]?.items ?? []).contains { $0["name"]?.stringValue == "d1" }, "\(third["h3"] ?? .null)")

        // Revocation: h2's key leaves the key table (the lab's nodes share one). The bus drops
        // h2's events from its next one on, and h2 takes no VM; accepted again, it is back.
        let ctlKeys = try lab.curve("ctl")
        func usable(_ host: String) throws -> Bool? {
            let r = try violin("call tcp://10.77.0.100:7703 host '{\"id\":\"\(host)\"}' \(ctlKeys)")
            return (try? Self.json(r.out))?["usable"]?.boolValue
        }
        func refusedEvents() -> Int {
            metricsCounter((try? violin("metrics --to tcp://10.77.0.100:7700 \(ctlKeys)"))?.out ?? "", "bus_events_refused") ?? -1
        }
        #expect(try usable("h2") == true)
        // The keyed lab's libvirt migrates over TLS (its small CA; QEMU's stream too, forced).
        let record = try Self.json(try violin("call tcp://10.77.0.100:7703 host '{\"id\":\"h2\"}' \(ctlKeys)").out)
        #expect(record["migration_uri"] == "qemu+tls://10.77.0.2/system", "\(record)")
        let qemuConf = (try? String(contentsOfFile: "\(run)/h2/libvirt/etc/qemu.conf", encoding: .utf8)) ?? ""
        #expect(qemuConf.contains("migrate_tls_force = 1"), "\(qemuConf)")
        let keyList = try violin("keys list --control 10.77.0.100 \(ctlKeys)")
        #expect(keyList.status == 0 && keyList.out.contains("host:h2"), "\(keyList.out) \(keyList.err)")
        let before = refusedEvents()
        let revoked = try violin("keys revoke \(run)/keys/h2.pub --control 10.77.0.100 \(ctlKeys)")
        #expect(revoked.status == 0, "\(revoked.err)")
        #expect(try usable("h2") == false, "a revoked host still takes VMs")
        #expect(eventually(deadline: 30) { refusedEvents() > before }, "the bus still forwards the revoked host's events")
        let again = try violin("keys accept \(run)/keys/h2.pub --role host:h2 --control 10.77.0.100 \(ctlKeys)")
        #expect(again.status == 0, "\(again.err)")
        #expect(try usable("h2") == true)
        let audit = try violin("policy decisions --audit --to tcp://10.77.0.100:7703 \(ctlKeys)")
        #expect(audit.out.contains("revoke_key") && audit.out.contains("asked by operator"), "\(audit.out)")
    }

    /// Control node with CURVE: a host whose key is not allowed gets nothing and the refusal is an
    /// event; an allowed host joins as usual.
    @Test(.timeLimit(.minutes(3))) func hostWithAnUnknownKeyIsRefusedAndReported() throws {
        let scratch = try Scratch("keys")
        let ns = "vk" + String(UUID().uuidString.lowercased().prefix(6))
        var nodes: [Spawned] = []
        defer {
            nodes.forEach { $0.destroy() }
            // The nodes' services too: everything in the namespace goes.
            _ = try? sh("for p in $(ip netns pids \(ns)); do kill -9 $p; done; ip netns del \(ns)")
            scratch.cleanup()
        }
        try #require(try sh("ip netns add \(ns) && ip -n \(ns) link set lo up").status == 0)
        for (name, role) in [("control", "control"), ("good", "host:good"), ("rogue", "host:rogue"), ("admin", "operator")] {
            #expect(try run("violin", ["keygen", "--out", scratch.file(name), "--role", role]).status == 0)
        }
        // The control node's key table: the good host's key and the operator's (a directory of .pub
        // files with their roles).
        try FileManager.default.createDirectory(atPath: scratch.file("allowed"), withIntermediateDirectories: true)
        for name in ["good", "admin"] {
            try FileManager.default.copyItem(atPath: scratch.file("\(name).pub"), toPath: scratch.file("allowed/\(name).pub"))
        }
        // The hosts have no key table of their own: they keep it from the control node's
        // accepted keys (the operator's among them), starting with the control node's key.
        func write(_ name: String, _ text: String) throws -> String {
            let path = scratch.file("\(name).yaml")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let control = try write("control", """
            role: control
            node: control
            address: 127.0.0.2
            evaluate_interval: 60
            data_dir: \(scratch.file("control"))
            key: \(scratch.file("control.key"))
            allowed_keys: \(scratch.file("allowed"))
            """)
        func host(_ name: String, _ address: String, registerWait: Int = 120) throws -> String {
            try write(name, """
                role: host
                node: \(name)
                domain: d1
                address: \(address)
                control_address: 127.0.0.2
                libvirt_uri: test:///default
                data_dir: \(scratch.file(name))
                key: \(scratch.file("\(name).key"))
                control_public_key: \(scratch.file("control.pub"))
                register_wait: \(registerWait)
                """)
        }
        func node(_ file: String) throws -> Spawned {
            let p = try Spawned("/usr/sbin/ip", ["netns", "exec", ns, "\(binDir)/violin", "node", "run", file, "--bin", binDir])
            nodes.append(p)
            return p
        }
        let ctl = try node(control)
        #expect(ctl.waitForLine(timeout: 60) { $0.contains(" running: ") } != nil, "control: \(ctl.stderrText)")
        // Events of the CURVE bus, watched with an allowed key.
        let watch = try Spawned("/usr/sbin/ip", ["netns", "exec", ns, "\(binDir)/violin", "watch", "--bus", "tcp://127.0.0.2:7711",
                                                 "--curve-key", scratch.file("admin.key"), "--server-key", scratch.file("control.pub"),
                                                 "bus.auth_refused", "policy.auth_refused", "--timeout", "60"])
        nodes.append(watch)
        // (At least the watcher's: "at least", since what else subscribes is not this test's.)
        let subscribed = eventually(deadline: 10) {
            let out = (try? sh("ip netns exec \(ns) '\(binDir)/violin' metrics --to tcp://127.0.0.2:7700 --curve-key \(scratch.file("admin.key")) --server-key \(scratch.file("control.pub"))").out) ?? ""
            return (metricsCounter(out, "bus_subscriptions_forwarded") ?? 0) >= 1
        }
        try #require(subscribed, "the watcher's subscription never reached the bus")
        // (An unknown key gets no answer at all: the rogue gives up after its register_wait.)
        let rogue = try node(try host("rogue", "127.0.0.3", registerWait: 5))
        let rogueExit = rogue.waitExit(timeout: 60)
        #expect(rogueExit != nil && rogueExit != 0, "the rogue host ran (exit \(rogueExit.map(String.init) ?? "none: still running after 60 s"))")
        #expect(rogue.stderrText.contains("cannot register"), "\(rogue.stderrText)")
        let refused = watch.waitForLine(timeout: 30) { $0.contains("auth_refused") }
        #expect(refused != nil, "no auth_refused event")
        // Enrolment: the rogue's first contact left its key pending on the control node; the
        // operator rejects it, and it is listed as rejected, not pending.
        let adminCLI = "--control 127.0.0.2 --curve-key \(scratch.file("admin.key")) --server-key \(scratch.file("control.pub"))"
        let rogueKey = try KeyFilesForTest.publicKey(scratch.file("rogue.pub"))
        let pending = try sh("ip netns exec \(ns) '\(binDir)/violin' keys list \(adminCLI)")
        #expect(pending.status == 0 && pending.out.contains("pending   \(rogueKey)"), "\(pending.out) \(pending.err)")
        #expect(pending.out.contains("accepted") && pending.out.contains("host:good"), "\(pending.out)")
        #expect(try sh("ip netns exec \(ns) '\(binDir)/violin' keys reject \(scratch.file("rogue.pub")) \(adminCLI)").status == 0)
        let rejected = try sh("ip netns exec \(ns) '\(binDir)/violin' keys list \(adminCLI)")
        #expect(rejected.out.contains("rejected  \(rogueKey)") && !rejected.out.contains("pending   \(rogueKey)"), "\(rejected.out)")
        // A host key may not list keys (operator and domain admins only): forbidden.
        let asHost = try sh("ip netns exec \(ns) '\(binDir)/violin' keys list --control 127.0.0.2 --curve-key \(scratch.file("good.key")) --server-key \(scratch.file("control.pub"))")
        #expect(asHost.status == 1 && asHost.err.contains("forbidden"), "\(asHost.err)")
        // The rest of the cluster is unaffected: an allowed host joins — one that starts while
        // the control node does not answer (its policy's port dropped) waits for it.
        try #require(try sh("ip netns exec \(ns) iptables -I INPUT -p tcp --dport 7703 -j DROP").status == 0)
        let good = try node(try host("good", "127.0.0.4"))
        let waited = eventually(deadline: 60) { good.stderrText.contains("waiting for the control node") }
        _ = try sh("ip netns exec \(ns) iptables -D INPUT -p tcp --dport 7703 -j DROP")
        #expect(waited, "the host did not wait for the control node: \(good.stderrText)")
        #expect(good.waitForLine(timeout: 60) { $0.contains(" running: ") } != nil, "good host: \(good.stderrText)")
        let inv = try sh("ip netns exec \(ns) '\(binDir)/violin' call tcp://127.0.0.2:7703 inventory --curve-key \(scratch.file("admin.key")) --server-key \(scratch.file("control.pub"))")
        #expect(inv.out.contains("\"good\"") && !inv.out.contains("\"rogue\""), "\(inv.out) \(inv.err)")
        // The host's own services serve over CURVE too: the cluster's status reaches them with
        // the operator's key, which the host learnt from the control node (host_keys_request);
        // a client without a key gets nothing.
        let table = (try? String(contentsOfFile: scratch.file("good/keys.table"), encoding: .utf8)) ?? ""
        #expect(table.contains(try KeyFilesForTest.publicKey(scratch.file("admin.pub")) + " operator"), "the host's key table: \(table)")
        let status = try sh("ip netns exec \(ns) '\(binDir)/violin' cluster status --control 127.0.0.2 --json --curve-key \(scratch.file("admin.key")) --server-key \(scratch.file("control.pub"))")
        #expect(status.status == 0, "\(status.err)")
        let listed: [JSONValue] = (try? Self.json(status.out))?["nodes"]?.items ?? []
        let goodNode = listed.first { $0["node"]?.stringValue == "good" }
        let services: [JSONValue] = goodNode?["services"]?.items ?? []
        #expect(services.count == 3 && services.allSatisfy { $0["healthy"] == .bool(true) }, "\(status.out)")
        let plain = try sh("ip netns exec \(ns) '\(binDir)/violin' ping --to tcp://127.0.0.4:7704 --timeout 1")
        #expect(plain.status == 2, "a plain client got an answer from a CURVE host: \(plain.out)")
    }
}

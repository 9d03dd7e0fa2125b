import Foundation
import TestSupport
import Testing
import VIOLINProtocol

/// Live migration on real libvirt and QEMU (TCG), with the services as real processes in
/// network namespaces (compose/lab.sh: a control node and three hosts in two domains).
@Suite(.serialized) struct MigrationSystemTests {
    static let cache = LocalLab.guestCache

    static func json(_ text: String) throws -> JSONValue {
        try JSONText.parse(Array(text.utf8))
    }

    /// The local demo's whole scenario, judged from the services and the kernel's tools, not
    /// from what the demo prints: the demo runs with --keep, then the test asks the executors
    /// for their jobs and VMs, the switches for their tables, the policy for its ledger, reads
    /// ping's own summary, and pings in each VIOLIN itself; then stops the demo and checks that
    /// nothing it made is left.
    @Test(.timeLimit(.minutes(15))) func demoScenario() throws {
        let scratch = try Scratch("demo")
        defer { scratch.cleanup() }
        let dir = scratch.file("run")
        let demo = try Spawned("/bin/bash", ["\(packageRoot)/compose/local-demo.sh", "--json", "--keep"],
                               environment: ["VIOLIN_BIN": binDir, "VIOLIN_DEMO_DIR": dir])
        var tag = ""
        defer {
            demo.signal(SIGINT)
            if demo.waitExit(timeout: 120) == nil { demo.destroy() }
            if !tag.isEmpty {
                let left = (try? sh("ip netns list | grep -c '^\(tag)-' || true").out) ?? ""
                #expect(left.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the demo left namespaces \(tag)-*")
            }
        }
        let up = eventually(deadline: 840) { demo.stderrText.contains("everything keeps running") || !demo.isRunning }
        try #require(up && demo.isRunning, "the demo did not get to its end: \(demo.stderrText.suffix(3000))")
        tag = try String(contentsOfFile: dir + "/tag", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(!tag.isEmpty)
        let address = ["h1": "10.77.0.1", "h2": "10.77.0.2", "h3": "10.77.0.3"]
        // The demo's lab is keyed: the operator's key, and each node's public key.
        func keys(_ node: String) -> String { "--curve-key \(dir)/keys/admin.key --server-key \(dir)/keys/\(node).pub" }
        func call(_ endpoint: String, _ type: String, _ body: String = "{}") throws -> JSONValue {
            let node = address.first { endpoint.contains($0.value + ":") }?.key ?? "ctl"
            let r = try sh("ip netns exec \(tag)-ctl '\(binDir)/violin' call \(endpoint) \(type) '\(body)' \(keys(node))")
            try #require(r.status == 0, "\(type) at \(endpoint): \(r.err)")
            return try Self.json(r.out)
        }
        func executor(_ h: String) -> String { "tcp://\(address[h]!):7704" }

        // The figures the demo measured while its VIOLINs ran (they are destroyed at its end).
        let result = try Self.json(try String(contentsOfFile: dir + "/result.json", encoding: .utf8))
        // Isolation: the same address answers in each VIOLIN, with that VIOLIN's own guest (the
        // policy gave both the same MACs); an address only B has does not answer in A; no
        // switch of one VIOLIN learned a MAC that is not its own, before or after the migrations.
        let isolation = try #require(result["isolation"], "\(result)")
        #expect(isolation["a_pings_received"] == 3 && isolation["b_pings_received"] == 3, "\(isolation)")
        #expect(isolation["a_to_b_only_address_received"] == 0, "\(isolation)")
        #expect(isolation["mac_of_10.0.0.2_in_a"] == "52:54:00:00:00:02" && isolation["mac_of_10.0.0.2_in_b"] == "52:54:00:00:00:02", "\(isolation)")
        #expect(isolation["foreign_macs_before"] == 0 && isolation["foreign_macs_after"] == 0, "\(isolation)")
        // ... counted over tables that were read (a failed read would learn nothing, not leak nothing).
        #expect((isolation["macs_learned_before"]?.intValue ?? 0) > 0 && (isolation["macs_learned_after"]?.intValue ?? 0) > 0, "\(isolation)")
        #expect(result["violin_b_after"]?["h2"] == ["b1"] && result["violin_b_after"]?["h3"] == ["a2", "b2", "b3"], "\(result)")
        // The lab runs keyed, so no node is marked insecure; without the key nothing answers.
        let nodes = try Self.json(try sh("ip netns exec \(tag)-ctl '\(binDir)/violin' cluster status --control 10.77.0.100 --json \(keys("ctl"))").out)["nodes"]?.items ?? []
        #expect(nodes.count == 4 && nodes.allSatisfy { $0["insecure"] == false }, "\(nodes)")
        let open = try sh("ip netns exec \(tag)-ctl '\(binDir)/violin' ping --to tcp://10.77.0.100:7703 --timeout 1")
        #expect(open.status == 2, "the policy answered a client without a key")
        // `violin destroy` left nothing: no libvirt domain and no switch on any host (seen here too).
        #expect(result["after_destroy"]?["libvirt_domains"] == 0 && result["after_destroy"]?["switches"] == 0, "\(result)")
        for h in ["h1", "h2", "h3"] {
            let domains = try sh("virsh -c 'qemu+unix:///system?socket=\(dir)/\(h)/libvirt/sock/libvirt-sock' list --all --name")
            #expect(domains.status == 0 && domains.out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(h): \(domains.out) \(domains.err)")
            #expect(try call("tcp://\(address[h]!):7701", "ports")["violins"]?.items.isEmpty == true, "\(h) still runs a switch")
        }

        // The operator's migrations, as h2's executor journaled them: a2 alone (m1), then
        // VIOLIN B but its head b1 (m2), all to h3, completed.
        let jobs = try call(executor("h2"), "jobs")["jobs"]?.items ?? []
        #expect(Set(jobs.compactMap { $0["vm"]?.stringValue }) == ["a2", "b2", "b3"], "\(jobs)")
        for j in jobs {
            #expect(j["state"] == "completed" && j["from"] == "h2" && j["to"] == "h3", "\(j)")
            print("migration \(j["vm"]?.stringValue ?? "?"): elapsed \(j["elapsed_ms"]?.intValue ?? -1) ms, downtime \(j["downtime_ms"]?.intValue ?? -1) ms, blackout \(j["blackout_ms"]?.intValue ?? -1) ms")
        }
        // Under the 10 ms ping, a VM is silent for the hypervisor's downtime plus the time a
        // TCG guest takes to speak again on a busy machine: at most 500 ms more, here.
        for (label, vm) in [("m1", "a2"), ("m2", "b2")] {
            let text = try String(contentsOfFile: "\(dir)/\(label).ping", encoding: .utf8)
            let summary = try #require(text.split(separator: "\n").first { $0.contains("packets transmitted") }, "\(label): \(text)")
            let numbers = summary.split(separator: " ").compactMap { Int($0) }
            try #require(numbers.count >= 2, "\(summary)")
            let lost = numbers[0] - numbers[1]
            let downtime = try #require(jobs.first { $0["vm"]?.stringValue == vm }?["downtime_ms"]?.numberValue, "no downtime for \(vm)")
            #expect(numbers[0] > 1000, "\(label): the ping ran \(numbers[0]) times")
            #expect(Double(lost) <= (downtime + 500) / 10, "\(label) (\(vm)): \(lost) of \(numbers[0]) pings lost, downtime \(downtime) ms")
            print("\(label) \(vm): \(lost) of \(numbers[0]) pings lost, downtime \(downtime) ms")
        }
        // The TCP streams through a2 (m1) and b3 (m2) survived.
        for label in ["m1", "m2"] {
            let stream = try Self.json(try String(contentsOfFile: "\(dir)/\(label).tcp", encoding: .utf8))
            #expect(stream["survived"] == .bool(true), "\(label): \(stream)")
        }

        // The policy, in automatic mode, moved load off h3 without an operator: its ledger
        // has commands sent, and h3's executor ran them to completion.
        let ledger = try call("tcp://10.77.0.100:7703", "decisions", #"{"limit":50}"#)["decisions"]?.items ?? []
        #expect(ledger.contains { $0["outcome"] == "sent" && $0["mode"] == "automatic" }, "the policy sent nothing: \(ledger)")
        let byPolicy = (try call(executor("h3"), "jobs")["jobs"]?.items ?? []).filter { $0["from"] == "h3" }
        #expect(!byPolicy.isEmpty && byPolicy.allSatisfy { $0["state"] == "completed" }, "jobs from h3: \(byPolicy)")
        #expect(byPolicy.allSatisfy { ["h1", "h2"].contains($0["to"]?.stringValue ?? "") }, "back to domain d1: \(byPolicy)")
        // Levers first: a balloon, a network cap and a CPU weight in the ledger, the first of
        // them before the policy's first migration, and effects measured after them.
        let automatic = ledger.filter { $0["mode"] == "automatic" }
        let kinds = Set(automatic.compactMap { $0["kind"]?.stringValue })
        #expect(kinds.isSuperset(of: ["set_balloon", "set_port_rate", "set_cpu_weight"]) && kinds.contains { $0.hasPrefix("migrate_") },
                "the ledger's kinds: \(kinds)")
        let ids = { (lever: Bool) in automatic.filter { ($0["kind"]?.stringValue?.hasPrefix("set_") ?? false) == lever }.compactMap { $0["id"]?.intValue } }
        #expect((ids(true).min() ?? .max) < (ids(false).min() ?? .min), "a lever before the first migration: \(automatic)")
        #expect(automatic.contains { ($0["kind"]?.stringValue?.hasPrefix("set_") ?? false) && !($0["effect"]?.stringValue ?? "").isEmpty },
                "no lever's effect measured: \(automatic)")
    }

    /// The executor is SIGKILLed while libvirt migrates a VM; restarted, it finds the job in its
    /// journal and ends it: the VM runs in exactly one place, the job is completed or rolled back.
    @Test(.timeLimit(.minutes(5))) func executorKilledMidMigration() throws {
        let lab = try LocalLab("crash")
        defer { lab.teardown() }
        let scratch = lab.scratch, run = lab.run
        func call(_ host: Int, _ type: String, _ body: String) throws -> (status: Int32, out: String, err: String) {
            try lab.violin("call tcp://10.77.0.\(host):7704 \(type) '\(body)' \(lab.keys("h\(host)"))")
        }
        // The executors' events, watched from the control node (topics no other subscriber of
        // the bus has, so the proxy forwards the subscription and its counter shows it).
        func subscriptions() -> Int {
            let out = (try? lab.violin("metrics --to tcp://10.77.0.100:7700 \(lab.keys("ctl"))"))?.out ?? ""
            return metricsCounter(out, "bus_subscriptions_forwarded") ?? -1
        }
        let subscribedBefore = subscriptions()
        let executorEvents = try Spawned("/usr/sbin/ip", ["netns", "exec", lab.controlNamespace, "\(binDir)/violin", "watch",
                                                           "--bus", "tcp://10.77.0.100:7711", "executor.vm_", "executor.migration_", "executor.job_",
                                                           "--timeout", "280"] + lab.keyArgs("ctl"))
        defer { executorEvents.destroy() }
        #expect(subscribedBefore >= 0 && eventually(deadline: 20) { subscriptions() > subscribedBefore }, "the watcher did not subscribe")
        func event(_ topic: String, _ match: @escaping (JSONValue) -> Bool) -> JSONValue? {
            executorEvents.waitForLine(timeout: 60) { line in
                guard let v = try? Self.json(line) else { return false }
                return v["topic"]?.stringValue == topic && match(v["body"] ?? .null)
            }.flatMap { try? Self.json($0) }
        }
        let console = scratch.file("x1.console")
        let created = try call(1, "create_vm", """
            {"name":"x1","vni":77,"mac":"52:54:00:77:00:01","kernel":"\(Self.cache)/vmlinuz","initrd":"\(Self.cache)/initrd.gz",
             "cmdline":"console=ttyS0 quiet violin.ip=10.7.0.1/24","nic_port":21000,"console":"\(console)"}
            """)
        try #require(created.status == 0, "create_vm: \(created.err)")
        #expect(event("executor.vm_created") { $0["vm"] == "x1" && $0["vni"]?.intValue == 77 } != nil, "no executor.vm_created for x1")
        #expect(eventually(deadline: 90) { ((try? String(contentsOfFile: console, encoding: .utf8)) ?? "").contains("VIOLIN-GUEST-UP") })
        // Bad requests leave the VM alone, with a clear error.
        let unknown = try call(1, "migrate", #"{"vm":"nobody","to":"h2"}"#)
        #expect(unknown.status == 1 && unknown.err.contains("not_found"), "\(unknown.err)")
        let unreachable = try call(1, "migrate", #"{"vm":"x1","to":"h9"}"#)
        #expect(unreachable.status == 1 && unreachable.err.contains("not_found"), "a host the inventory does not hold: \(unreachable.err)")
        let badOption = try call(1, "migrate", #"{"vm":"x1","to":"h2","timeout_s":-1}"#)
        #expect(badOption.status == 1 && badOption.err.contains("invalid_body"), "\(badOption.err)")
        // A destination without the memory: h2 offers 2048 MiB and a big VM takes 1990 of it.
        let big = try call(2, "create_vm", """
            {"name":"big","vni":78,"mac":"52:54:00:78:00:01","kernel":"\(Self.cache)/vmlinuz","initrd":"\(Self.cache)/initrd.gz",
             "nic_port":21010,"memory_mb":1990}
            """)
        try #require(big.status == 0, "create_vm big: \(big.err)")
        let full = try call(1, "migrate", #"{"vm":"x1","to":"h2"}"#)
        #expect(full.status == 1 && full.err.contains("conflict") && full.err.contains("MiB free"), "\(full.err)")
        #expect(try call(2, "destroy_vm", #"{"name":"big"}"#).status == 0)
        #expect(event("executor.vm_destroyed") { $0["vm"] == "big" } != nil, "no executor.vm_destroyed for big")
        let jobs = try Self.json(try call(1, "jobs", "{}").out)
        #expect(jobs["jobs"]?.items.isEmpty == true, "a refused migration left a job: \(jobs)")

        // A slow migration (2 MiB/s), so there is time to kill the executor in the middle of it.
        let started = try call(1, "migrate", #"{"vm":"x1","to":"h2","bandwidth_mibps":2}"#)
        try #require(started.status == 0, "migrate: \(started.err)")
        let job = try #require(try Self.json(started.out)["job"]?.stringValue)
        let migrating = eventually(deadline: 60) {
            guard let j = try? Self.json(try call(1, "job", #"{"job":"\#(job)"}"#).out) else { return false }
            return j["state"]?.stringValue == "migrating" && (j["processed_bytes"]?.intValue ?? 0) > 0
        }
        try #require(migrating, "the migration did not get under way")
        // A second migration of a VM already migrating is refused.
        let twice = try call(1, "migrate", #"{"vm":"x1","to":"h2"}"#)
        #expect(twice.status == 1 && twice.err.contains("conflict"), "\(twice.err)")
        // The recovery is announced on the bus: watched from the control node.
        #expect(try lab.lab("kill \(run) h1 executor").status == 0)
        // Its node restarts it; the new executor finds the job in its journal.
        let restarted = try lab.lab("start \(run) h1 executor", timeout: 90)
        try #require(restarted.status == 0, "restart: \(restarted.err)")
        var final: JSONValue = .null
        let ended = eventually(deadline: 120) {
            guard let j = try? Self.json(try call(1, "job", #"{"job":"\#(job)"}"#).out) else { return false }
            final = j
            return ["completed", "rolled_back", "failed"].contains(j["state"]?.stringValue ?? "")
        }
        try #require(ended, "the job was not recovered: \(final)")
        let state = final["state"]?.stringValue
        #expect(state == "completed" || state == "rolled_back", "\(final)")
        // The recovered job ends as the migration would have: its own completed (the policy's
        // inventory follows that) or failed event first, then job_recovered.
        let outcomeTopic = state == "completed" ? "executor.migration_completed" : "executor.migration_failed"
        let outcome = event(outcomeTopic) { $0["job"] == .string(job) }
        #expect(outcome != nil, "no \(outcomeTopic) for the recovered job \(job)")
        if state == "completed" { #expect(outcome?["body"]?["to"] == "h2", "\(String(describing: outcome))") }
        let recovered = try #require(event("executor.job_recovered") { $0["job"] == .string(job) }, "no executor.job_recovered for \(job)")
        #expect(recovered["body"]?["state"]?.stringValue == state && recovered["body"]?["vm"] == "x1", "\(recovered)")
        // Exactly one running copy, where the job's outcome says.
        func running(_ host: String) throws -> Bool {
            try sh("virsh -c 'qemu+unix:///system?socket=\(run)/\(host)/libvirt/sock/libvirt-sock' list --name --state-running")
                .out.split(separator: "\n").contains("x1")
        }
        let onSource = try running("h1"), onDestination = try running("h2")
        #expect(onSource != onDestination, "x1 running on h1: \(onSource), on h2: \(onDestination)")
        #expect(onDestination == (state == "completed"), "job \(state ?? "?") but x1 on h2: \(onDestination)")
        // A completed recovery cut the network over: x1's port is gone from h1's switch.
        let sourcePorts = try lab.violin("call tcp://10.77.0.1:7701 ports '{}' \(lab.keys("h1"))")
        let x1Port = "vm-x1"      // VMSpec.portName
        let onH1 = (try? Self.json(sourcePorts.out))?["violins"]?.items.contains { $0["ports"]?.items.contains(.string(x1Port)) == true }
        #expect(sourcePorts.status == 0 && onH1 == (state != "completed"), "h1's ports after a \(state ?? "?") recovery: \(sourcePorts.out)")
        print("executor killed mid-migration: job ended \(state ?? "?") (\(final["error"]?.stringValue ?? ""))")

        // A migration that cannot finish in time is aborted; one cancelled stops: either way
        // the VM stays where it was, running, and the destination keeps no copy.
        let here = onDestination ? 2 : 1, there = onDestination ? 1 : 2
        func finish(_ job: String) -> JSONValue {
            var last: JSONValue = .null
            let ended = eventually(deadline: 90) {
                guard let j = try? Self.json(try call(here, "job", #"{"job":"\#(job)"}"#).out) else { return false }
                last = j
                return ["completed", "failed", "cancelled", "rolled_back"].contains(j["state"]?.stringValue ?? "")
            }
            if !ended { Issue.record("job \(job) did not end within 90 s: \(last)") }
            return last
        }
        let slow = try call(here, "migrate", #"{"vm":"x1","to":"h\#(there)","bandwidth_mibps":1,"timeout_s":2}"#)
        try #require(slow.status == 0, "\(slow.err)")
        let timedOut = finish(try #require(try Self.json(slow.out)["job"]?.stringValue))
        #expect(timedOut["state"]?.stringValue == "failed" && (timedOut["error"]?.stringValue ?? "").contains("did not converge"), "\(timedOut)")
        let again = try call(here, "migrate", #"{"vm":"x1","to":"h\#(there)","bandwidth_mibps":1}"#)
        let againJob = try #require(try Self.json(again.out)["job"]?.stringValue)
        #expect(eventually(deadline: 30) { (try? Self.json(try call(here, "job", #"{"job":"\#(againJob)"}"#).out))?["state"]?.stringValue == "migrating" })
        #expect(try call(here, "cancel", #"{"job":"\#(againJob)"}"#).status == 0)
        #expect(finish(againJob)["state"]?.stringValue == "cancelled")
        // No copy of any kind at the destination: not paused, not shut off, not defined.
        func anyCopy(_ host: String) throws -> Bool {
            try sh("virsh -c 'qemu+unix:///system?socket=\(run)/\(host)/libvirt/sock/libvirt-sock' list --name --all")
                .out.split(separator: "\n").contains("x1")
        }
        #expect(try running(here == 1 ? "h1" : "h2") && !(try anyCopy(there == 1 ? "h1" : "h2")), "x1 must still run where it was, alone")

        // Hosts that share no storage (each libvirtd has its own /var/lib/libvirt): a VM with a
        // disk migrates with copy_storage; the disk is created at the destination and copied,
        // and the source's copy goes.
        let withDisk = try call(here, "create_vm", """
            {"name":"dk","vni":79,"mac":"52:54:00:79:00:01","kernel":"\(Self.cache)/vmlinuz","initrd":"\(Self.cache)/initrd.gz",
             "nic_port":21020,"disk_mb":16}
            """)
        try #require(withDisk.status == 0, "create_vm with a disk: \(withDisk.err)")
        func volumes(_ host: Int) throws -> String {
            try sh("virsh -c 'qemu+unix:///system?socket=\(run)/h\(host)/libvirt/sock/libvirt-sock' vol-list violin").out
        }
        #expect(try volumes(here).contains("dk.img") && !(try volumes(there).contains("dk.img")))
        let copy = try call(here, "migrate", #"{"vm":"dk","to":"h\#(there)","copy_storage":true}"#)
        try #require(copy.status == 0, "\(copy.err)")
        let copied = finish(try #require(try Self.json(copy.out)["job"]?.stringValue))
        #expect(copied["state"]?.stringValue == "completed", "\(copied)")
        #expect(try volumes(there).contains("dk.img") && !(try volumes(here).contains("dk.img")), "the disk did not move")
    }

    /// The executor runs at most max_migrations (2) migrations at once: a third waits queued,
    /// and a cancel ends each (the queued one too) with the VMs where they were. A guest that
    /// keeps rewriting its memory moves with post-copy allowed; auto-converge moves another.
    @Test(.timeLimit(.minutes(8))) func migrationSlotsCancelAndPostCopy() throws {
        let lab = try LocalLab("slots")
        defer { lab.teardown() }
        let run = lab.run
        func call(_ host: Int, _ type: String, _ body: String) throws -> (status: Int32, out: String, err: String) {
            try lab.violin("call tcp://10.77.0.\(host):7704 \(type) '\(body)' \(lab.keys("h\(host)"))")
        }
        func state(_ host: Int, _ job: String) -> String {
            (try? Self.json(try call(host, "job", #"{"job":"\#(job)"}"#).out))?["state"]?.stringValue ?? "?"
        }
        func names(_ host: Int, all: Bool = false) throws -> Set<String> {
            let r = try sh("virsh -c 'qemu+unix:///system?socket=\(run)/h\(host)/libvirt/sock/libvirt-sock' list --name \(all ? "--all" : "--state-running")")
            return Set(r.out.split(separator: "\n").map(String.init))
        }
        let events = try Spawned("/usr/sbin/ip", ["netns", "exec", lab.controlNamespace, "\(binDir)/violin", "watch",
                                                  "--bus", "tcp://10.77.0.100:7711", "executor.migration_progress", "--timeout", "400"] + lab.keyArgs("ctl"))
        defer { events.destroy() }
        for (i, name) in ["s1", "s2", "s3"].enumerated() {
            let cmdline = name == "s3" ? "console=ttyS0 quiet violin.dirty=1" : "console=ttyS0 quiet"
            let created = try call(1, "create_vm", """
                {"name":"\(name)","vni":80,"mac":"52:54:00:80:00:0\(i + 1)","kernel":"\(Self.cache)/vmlinuz",\
                "initrd":"\(Self.cache)/initrd.gz","cmdline":"\(cmdline)","nic_port":\(21200 + 2 * i),\
                "console":"\(lab.scratch.file("\(name).console"))"}
                """)
            try #require(created.status == 0, "create_vm \(name): \(created.err)")
        }
        // Three at 1 MiB/s: two migrate, the third waits its turn.
        var jobs: [String] = []
        for name in ["s1", "s2", "s3"] {
            let r = try call(1, "migrate", #"{"vm":"\#(name)","to":"h2","bandwidth_mibps":1}"#)
            jobs.append(try #require(try Self.json(r.out)["job"]?.stringValue, "migrate \(name): \(r.err)"))
        }
        var most = 0
        let twoAndOneQueued = eventually(deadline: 60) {
            let states = jobs.map { state(1, $0) }
            most = max(most, states.filter { $0 == "preparing" || $0 == "migrating" }.count)
            return states.filter { $0 == "migrating" }.count == 2 && states.filter { $0 == "queued" }.count == 1
        }
        #expect(twoAndOneQueued, "states: \(jobs.map { state(1, $0) })")
        #expect(most <= 2, "\(most) migrations at once")
        // Cancelled, all three: each ends cancelled, the VMs run on h1 and h2 has no copy.
        for job in jobs { #expect(try call(1, "cancel", #"{"job":"\#(job)"}"#).status == 0) }
        #expect(eventually(deadline: 90) { jobs.allSatisfy { state(1, $0) == "cancelled" } }, "\(jobs.map { state(1, $0) })")
        let onH1 = try names(1), onH2 = try names(2, all: true)
        #expect(onH1 == ["s1", "s2", "s3"] && onH2.isDisjoint(with: ["s1", "s2", "s3"]), "h1: \(onH1), h2: \(onH2)")

        let dirtying = eventually(deadline: 90) {
            ((try? String(contentsOfFile: lab.scratch.file("s3.console"), encoding: .utf8)) ?? "").contains("VIOLIN-DIRTYING")
        }
        try #require(dirtying, "s3 never started rewriting its memory")
        let post = try call(1, "migrate", #"{"vm":"s3","to":"h2","bandwidth_mibps":4,"postcopy":true,"timeout_s":120}"#)
        let postJob = try #require(try Self.json(post.out)["job"]?.stringValue, "\(post.err)")
        #expect(eventually(deadline: 150) { ["completed", "failed", "cancelled"].contains(state(1, postJob)) })
        let postFinal = try call(1, "job", #"{"job":"\#(postJob)"}"#).out
        #expect(state(1, postJob) == "completed", "\(postFinal)")
        // Whether the executor switched to post-copy depends on the guest dirtying memory faster
        // than 4 MiB/s, which a TCG guest on a busy machine does only now and then: printed, not
        // asserted (the option must not keep the migration from completing, which is).
        let switched = events.lines.contains { $0.contains(postJob) && $0.contains(#""phase":"postcopy""#) }
        print("post-copy test: switched to post-copy: \(switched)")
        let s3Here = try names(2).contains("s3"), s3There = try names(1, all: true).contains("s3")
        #expect(s3Here && !s3There, "s3 runs on h2 alone")
        // auto_converge: s2 moves with the option on.
        let auto = try call(1, "migrate", #"{"vm":"s2","to":"h2","auto_converge":true}"#)
        let autoJob = try #require(try Self.json(auto.out)["job"]?.stringValue, "\(auto.err)")
        let autoDone = eventually(deadline: 90) { state(1, autoJob) == "completed" }
        let autoFinal = try call(1, "job", #"{"job":"\#(autoJob)"}"#).out
        #expect(autoDone, "\(autoFinal)")
        let s2Here = try names(2).contains("s2"), s2There = try names(1, all: true).contains("s2")
        #expect(s2Here && !s2There, "s2 runs on h2 alone")
        let badFlag = try call(1, "migrate", #"{"vm":"s1","to":"h2","postcopy":"yes"}"#)
        #expect(badFlag.status == 1 && badFlag.err.contains("invalid_body"), "\(badFlag.err)")
    }

}

import Foundation
import Logging
import TestSupport
import Testing
import PolicyCore
import PolicyService
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// An executor that takes every migrate request and remembers it. `gated`: its replies wait
/// until `open()` (each migrate is on the executor's worker, as the real one's).
final class FakeExecutor: RequestHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var got: [JSONValue] = []
    private let gated: Bool
    private let gate = DispatchSemaphore(value: 0)
    init(gated: Bool = false) { self.gated = gated }
    var migrations: [JSONValue] { lock.withLock { got } }
    var state: JSONValue { [:] }
    func lane(of msgType: String) -> RequestTable.Lane { gated ? .long : .quick }
    /// Lets every held migrate through, now and later.
    func open() { for _ in 0..<64 { gate.signal() } }
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        guard request.header.msgType == "migrate_request" else { return nil }
        let n = lock.withLock { got.append(request.body); return got.count }
        if gated { gate.wait(); gate.signal() }
        return Replies.ok(["job": .string("job-\(n)"), "state": "queued"])
    }
}

@Suite struct PolicyServiceTests {
    /// Domain d1 with hosts a and b (2 cores, 8 GiB each), reached at these executors.
    func registerHosts(_ client: ServiceClient, a: String, b: String) throws {
        _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
        for (id, executor) in [("a", a), ("b", b)] {
            _ = try client.call(PolicyAPI.RegisterHost(id: id, domain: "d1", cores: 2, memoryMB: 8192, executor: executor))
        }
    }

    /// A policy on `db`, rounds on request only, quiet; `configure` changes its options.
    func node(_ db: String, subscribe: String? = nil, _ configure: (inout PolicyServer.Options) -> Void = { _ in }) throws -> PolicyServer {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var o = PolicyServer.Options(database: db)
        o.subscribe = subscribe
        o.interval = 3600
        configure(&o)
        return try PolicyServer(options: o, logger: logger)
    }

    /// Synthetic monitors publish samples of a hot host; the policy recommends a migration,
    /// then in automatic mode sends it to the source host's executor (which gets it);
    /// after a restart its inventory and ledger are intact.
    @Test func recommendsThenCommandsAndSurvivesARestart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/policy.sqlite"
        try withBus { ctx, proxy in
            let policy = try node(db, subscribe: proxy.backendEndpoints[0])
            let runtime = try makeRuntime("policy", bus: proxy.frontendEndpoints[0], handler: policy)
            policy.publish = { runtime.publish($0, $1) }
            try policy.start()
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 5000)
            // An executor endpoint where nothing listens.
            let probe = try ZMQSocket(ctx, .rep)
            try probe.bind("tcp://127.0.0.1:*")
            let deadExecutor = try probe.lastEndpoint()
            probe.close()
            // Host a's executor takes commands (the policy sends a migration to the VM's source).
            let fake = FakeExecutor()
            let executorA = try makeRuntime("executor", handler: fake)
            defer { executorA.stop() }
            _ = try client.call("register_domain", body: ["id": "d1"])
            for (h, executor) in [("a", executorA.endpoints[0]), ("b", deadExecutor)] {
                _ = try client.call("register_host", body: ["id": .string(h), "domain": "d1", "cores": 2, "memory_mb": 8192,
                                                            "executor": .string(executor)])
            }
            let vms: [JSONValue] = (0..<4).map { ["id": .string("vm\($0)"), "memory_mb": 512, "host": "a"] }
            _ = try client.call("create_violin", body: ["id": "e1", "home_domain": "d1", "head": "vm0", "vms": .array(vms)])
            // Bad requests are refused with their codes, and change nothing.
            for (type, body, code) in [("register_host", ["id": "c", "domain": "nope", "cores": 2, "memory_mb": 1] as JSONValue, ErrorCode.notFound),
                                       ("register_domain", ["id": "d1"], .conflict),
                                       ("remove_host", ["id": "a"], .conflict),
                                       ("set_mode", ["mode": "yolo"], .invalidBody),
                                       ("create_violin", ["id": "e2", "home_domain": "d1", "head": "x",
                                                          "vms": [["id": "x", "memory_mb": 99999, "host": "b"]]], .conflict)] {
                #expect(try client.send(type, body: body).body["code"] == .string(code.rawValue), "\(type)")
            }

            let decidedEvents = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: ["policy.decided"])
            defer { decidedEvents.close() }
            // Another host's monitor says host a's VMs are busy: not believed (it speaks for its own).
            let other = try makeRuntime("monitor", instance: "monitor@b", bus: proxy.frontendEndpoints[0])
            defer { other.stop() }
            let busy: JSONValue = ["host": ["cpus": 2], "vms": .array((0..<4).map { ["name": .string("vm\($0)"), "cpu_percent": 97] })]
            #expect(try eventually(deadline: 10) {
                other.publish("sampled", busy)
                return try client.call("metrics")["counters"]?["readings_refused"]?.intValue ?? 0 > 0
            }, "readings about another host's VMs were not refused")
            #expect(try client.call("explain")["hosts"]?.items.first { $0["id"] == "a" }?["high_demand_vms"] == 0)
            // Host a's own monitor: every VM on host a is busy.
            let monitor = try makeRuntime("monitor", instance: "monitor@a", bus: proxy.frontendEndpoints[0])
            defer { monitor.stop() }
            let samples: JSONValue = ["host": ["cpus": 2], "vms": .array((0..<8).map { ["name": .string("vm\($0)"), "cpu_percent": 97] })]
            var explained = false
            let deadline = monotonicMillis() + 10_000
            while !explained && monotonicMillis() < deadline {
                monitor.publish("sampled", samples)
                let e = try client.call("explain")
                if case .array(let hosts)? = e["hosts"], hosts.first(where: { $0["id"] == "a" })?["high_demand_vms"] == 4 { explained = true }
            }
            #expect(explained, "the policy saw the samples")
            // Crossing the threshold started a round at once: its decision is on the bus.
            let auto = try decidedEvents.waitFor(timeoutMs: 5000) { $0.body["kind"] == "migrate_vm" }
            #expect(auto?.body["outcome"] == "recommended", "a round ran when the VMs turned high-demand")

            let recommended = try client.call("evaluate")
            guard case .array(let first)? = recommended["decisions"], let d = first.first else {
                Issue.record("no decision: \(recommended)"); return
            }
            #expect(d["kind"] == "migrate_vm" && d["decision"]?["from"] == "a" && d["decision"]?["to"] == "b")
            #expect(d["outcome"] == "recommended" && (d["reason"]?.stringValue ?? "").contains("deviation"))

            // Four more busy VMs arrive on host a (the first four are in their cooldown now).
            _ = try client.call("create_violin", body: ["id": "e2", "home_domain": "d1", "head": "vm4",
                                                        "vms": .array((4..<8).map { ["id": .string("vm\($0)"), "memory_mb": 512, "host": "a"] })])
            let policyEvents = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0],
                                                   topics: ["policy.mode_changed", "policy.host_draining"])
            defer { policyEvents.close() }
            _ = try client.call("set_mode", body: ["mode": "automatic"])
            let modeChanged = try policyEvents.waitFor(timeoutMs: 5000) { $0.topic == "policy.mode_changed" }
            #expect(modeChanged?.body["mode"] == "automatic", "no policy.mode_changed")
            // Host a's monitor reports the new VMs busy (readings count once the VMs are placed
            // there): crossing the threshold starts a round, which commands migrations.
            var second: [JSONValue] = []
            #expect(try eventually(deadline: 15) {
                monitor.publish("sampled", samples)
                second = (try client.call("decisions", body: ["limit": 20])["decisions"]?.items ?? [])
                    .filter { $0["mode"] == "automatic" && $0["kind"] == "migrate_vm" }
                return !second.isEmpty && second.allSatisfy { $0["outcome"] != "sending" }
            }, "no automatic round after vm4-vm7 turned busy")
            guard let c = second.first else { Issue.record("no command"); return }
            #expect(c["mode"] == "automatic")
            #expect(second.allSatisfy { $0["outcome"] == "sent" }, "host a's executor took the commands: \(second)")
            // What the executor (host a's: the VMs' source) got: each decided VM, to b, with b's
            // executor to send it to.
            let got = fake.migrations
            #expect(got.count == second.count && !got.isEmpty, "\(got.count) migrate requests for \(second.count) decisions")
            #expect(Set(got.compactMap { $0["vm"]?.stringValue }) == Set(second.compactMap { $0["decision"]?["vm"]?.stringValue }))
            #expect(got.allSatisfy { $0["to"] == "b" && $0["to_executor"] == .string(deadExecutor)
                && ["vm4", "vm5", "vm6", "vm7"].contains($0["vm"]?.stringValue ?? "") }, "\(got)")
            // The executor reports the first migration done: the inventory follows it to b.
            let movedVM = try #require(got.first?["vm"]?.stringValue)
            func hostOf(_ vm: String) throws -> String? {
                try client.call("inventory")["vms"]?.items.first { $0["id"]?.stringValue == vm }?["host"]?.stringValue
            }
            // Said by another host's executor, it is not believed (and counted).
            let otherExecutor = try makeRuntime("executor", instance: "executor@b", bus: proxy.frontendEndpoints[0])
            defer { otherExecutor.stop() }
            #expect(try eventually(deadline: 10) {
                otherExecutor.publish("migration_completed", ["job": "job-1", "vm": .string(movedVM), "from": "a", "to": "b"])
                return try client.call("metrics")["counters"]?["events_refused"]?.intValue ?? 0 > 0
            }, "a migration_completed from b about a VM on a was not refused")
            #expect(try hostOf(movedVM) == "a")
            let executorBus = try makeRuntime("executor", instance: "executor@a", bus: proxy.frontendEndpoints[0])
            defer { executorBus.stop() }
            #expect(try eventually(deadline: 10) {
                executorBus.publish("migration_completed", ["job": "job-1", "vm": .string(movedVM), "from": "a", "to": "b"])
                return try hostOf(movedVM) == "b"
            }, "the inventory did not follow \(movedVM) to b")
            // Draining b: its VM is sent back to a through b's executor, which does not answer
            // (the one-second executor timeout); the outcome says so, and the bus hears of it.
            let drain = try client.call("drain_host", body: ["id": "b"])
            let moves = drain["moves"]?.items ?? []
            #expect(moves.count == 1 && moves.first?["vm"] == .string(movedVM) && moves.first?["to"] == "a", "\(drain)")
            #expect((moves.first?["outcome"]?.stringValue ?? "").hasPrefix("failed:"), "\(drain)")
            let draining = try policyEvents.waitFor(timeoutMs: 5000) { $0.topic == "policy.host_draining" }
            #expect(draining?.body["id"] == "b" && draining?.body["moves"]?.items.count == 1, "no policy.host_draining")
            runtime.stop()
            policy.stop()
            client.close()

            // Restarted: the same inventory, ledger and mode.
            let again = try node(db, subscribe: nil)
            let r2 = try makeRuntime("policy", handler: again)
            defer { r2.stop() }
            let c2 = ServiceClient(context: ctx, endpoint: r2.endpoints[0], timeoutMs: 5000)
            defer { c2.close() }
            let inv = try c2.call("inventory")
            #expect(inv["mode"] == "automatic")
            #expect(inv["vms"]?.items.count == 8, "\(inv)")
            let ledger = try c2.call("decisions", body: ["limit": 10])
            if case .array(let list)? = ledger["decisions"] {
                #expect(list.count >= 2)
                #expect(list.contains { $0["outcome"] == "recommended" } && list.contains { $0["outcome"] == "sent" }, "\(list)")
            } else { Issue.record("no ledger") }
            // A VIOLIN destroyed leaves the inventory; a second time it is not found.
            _ = try c2.call("destroy_violin", body: ["id": "e2"])
            #expect(Set(try c2.call("inventory")["vms"]?.items.compactMap { $0["id"]?.stringValue } ?? []) == ["vm0", "vm1", "vm2", "vm3"])
            #expect(try c2.send("destroy_violin", body: ["id": "e2"]).body["code"] == "not_found")
        }
    }

    /// A drain runs on the policy's worker: while the executor holds the drain's migrations at
    /// a gate, the policy still answers `ping` and `inventory`; the drain ends only after the
    /// gate opens, with every move sent.
    @Test func answersPingWhileADrainWaitsForTheExecutor() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try withContext { ctx in
            let policy = try node(dir + "/policy.sqlite") { $0.executorTimeoutMs = 60_000 }   // the gate, not a timeout, ends the wait
            let runtime = try makeRuntime("policy", handler: policy)
            defer { runtime.stop() }
            let gated = FakeExecutor(gated: true)
            let executor = try makeRuntime("executor", handler: gated)
            defer { gated.open(); executor.stop() }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 5000)
            defer { client.close() }
            _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
            _ = try client.call(PolicyAPI.RegisterHost(id: "a", domain: "d1", cores: 2, memoryMB: 8192, executor: executor.endpoints[0]))
            _ = try client.call(PolicyAPI.RegisterHost(id: "b", domain: "d1", cores: 2, memoryMB: 8192))
            _ = try client.call(PolicyAPI.CreateViolin(id: "e1", homeDomain: "d1", head: "vm0",
                                                       vms: (0..<2).map { .init(id: "vm\($0)", memoryMB: 512, host: "a") }))

            let drain = Pending()
            Thread {
                let c = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 60_000)
                defer { c.close() }
                do { drain.finish(.success(try c.call(PolicyAPI.DrainHost(id: "a"), retries: 0).json)) } catch { drain.finish(.failure(error)) }
            }.start()
            try #require(try eventually(deadline: 20) { gated.migrations.count >= 1 }, "the drain never reached the executor")
            #expect(try client.call(AdminAPI.Ping(), retries: 0).service == "policy")
            #expect(try client.call(PolicyAPI.Inventory(), retries: 0).hosts.first { $0.id == "a" }?.draining == true)
            #expect(drain.value == nil, "ping and inventory were answered while the drain waited for the executor")

            gated.open()
            try #require(try eventually(deadline: 30) { drain.value != nil }, "the drain never finished")
            guard case .success(let reply) = drain.value! else { Issue.record("drain failed: \(drain.value!)"); return }
            let moves = try PolicyAPI.DrainHost.Reply.decode(reply).moves
            #expect(moves.count == 2 && moves.allSatisfy { $0.outcome == "sent" }, "\(moves)")
        }
    }

    /// Reconciliation: a VM whose migration the policy never heard of is moved in the inventory;
    /// a VM no VIOLIN owns and, once every host answers, a VM no host runs are reported — each
    /// once, as `policy.drift_detected`.
    @Test func theInventoryFollowsWhatTheHostsRun() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try withBus { ctx, proxy in
            let policy = try node(dir + "/policy.sqlite") { $0.reconcileInterval = 0.2 }
            let runtime = try makeRuntime("policy", bus: proxy.frontendEndpoints[0], handler: policy)
            defer { runtime.stop() }
            policy.publish = { runtime.publish($0, $1) }
            let a = HostExecutor(["vm0"]), b = HostExecutor(["vm1", "stray-1"])
            let ea = try makeRuntime("executor", handler: a), eb = try makeRuntime("executor", handler: b)
            defer { ea.stop(); eb.stop() }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 5000)
            defer { client.close() }
            try registerHosts(client, a: ea.endpoints[0], b: eb.endpoints[0])
            // vm1 is placed on a, but b runs it: its migration_completed was missed.
            _ = try client.call(PolicyAPI.CreateViolin(id: "e1", homeDomain: "d1", head: "vm0",
                                                       vms: ["vm0", "vm1"].map { .init(id: $0, memoryMB: 256, host: "a") }))
            let events = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: [PolicyAPI.DriftDetected.topic])
            defer { events.close() }
            try policy.start()
            defer { policy.stop() }
            var seen: [String: JSONValue] = [:]
            _ = try eventually(deadline: 20) {
                while case .event(let m, _)? = try? events.next(timeoutMs: 100) { seen["\(m.body["kind"]?.stringValue ?? "")/\(m.body["vm"]?.stringValue ?? "")"] = m.body }
                return seen["moved/vm1"] != nil && seen["stray/stray-1"] != nil
            }
            #expect(seen["moved/vm1"]?["host"] == "b" && seen["moved/vm1"]?["inventory_host"] == "a", "\(seen)")
            #expect(seen["stray/stray-1"]?["host"] == "b")
            #expect(try client.call(PolicyAPI.Inventory()).vms.first { $0.id == "vm1" }?.host == "b")
            // While b does not answer, vm1 (placed on b) is not missing: b may still run it.
            b.down = true
            policy.reconcile()
            policy.reconcile()
            while case .event(let m, _)? = try? events.next(timeoutMs: 300) { seen["\(m.body["kind"]?.stringValue ?? "")/\(m.body["vm"]?.stringValue ?? "")"] = m.body }
            #expect(seen["missing/vm1"] == nil, "a silent host's VM was reported missing: \(seen)")
            b.down = false
            // vm0 vanishes from a: with every host answering, it is reported missing — once.
            a.running = []
            _ = try eventually(deadline: 20) {
                while case .event(let m, _)? = try? events.next(timeoutMs: 100) { seen["\(m.body["kind"]?.stringValue ?? "")/\(m.body["vm"]?.stringValue ?? "")"] = m.body }
                return seen["missing/vm0"] != nil
            }
            #expect(seen["missing/vm0"]?["inventory_host"] == "a", "\(seen)")
            let counted = try client.call(AdminAPI.Metrics()).counters["drift_detected"] ?? 0
            // moved/vm1, stray/stray-1, missing/vm0, and stray-1 once more when b answered again.
            #expect(counted == 4, "each drift is published once while it lasts: \(counted)")
        }
    }

    /// A gap in an executor's event seq (events the bus never brought: one may have been a
    /// migration_completed) makes the policy reconcile at once, not at its next period.
    @Test func aGapInAnExecutorsEventsIsCaughtUpAtOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try withBus { ctx, proxy in
            let policy = try node(dir + "/policy.sqlite", subscribe: proxy.backendEndpoints[0]) { $0.reconcileInterval = 3600 }
            let runtime = try makeRuntime("policy", bus: proxy.frontendEndpoints[0], handler: policy)
            defer { runtime.stop() }
            policy.publish = { runtime.publish($0, $1) }
            let a = HostExecutor(["vm1"]), b = HostExecutor([])
            let ea = try makeRuntime("executor", handler: a), eb = try makeRuntime("executor", handler: b)
            defer { ea.stop(); eb.stop() }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 5000)
            defer { client.close() }
            try registerHosts(client, a: ea.endpoints[0], b: eb.endpoints[0])
            _ = try client.call(PolicyAPI.CreateViolin(id: "e1", homeDomain: "d1", head: "vm1", vms: [.init(id: "vm1", memoryMB: 256, host: "a")]))
            try policy.start()
            defer { policy.stop() }
            // The reconcile at start has run (both hosts asked); the next is an hour away.
            #expect(try eventually(deadline: 20) { a.asked >= 1 && b.asked >= 1 })
            // vm1 moves to b and its migration_completed is lost: host a's executor's events
            // arrive with every second seq missing.
            a.running = []
            b.running = ["vm1"]
            let publisher = try ZMQSocket(ctx, .pub)
            defer { publisher.close() }
            try publisher.connect(proxy.frontendEndpoints[0])
            var factory = MessageFactory(sender: "executor@a")
            let caughtUp = try eventually(deadline: 20) {
                _ = try publisher.send(Codec.encode(factory.event("executor.heartbeat", body: ["uptime_s": 1])))
                _ = factory.event("executor.heartbeat", body: [:])         // never sent: a gap
                usleep(100_000)
                return try client.call(PolicyAPI.Inventory()).vms.first { $0.id == "vm1" }?.host == "b"
            }
            #expect(caughtUp, "the inventory did not catch up after a gap in host a's executor's events")
            let missed = try client.call(AdminAPI.Metrics()).counters["events_missed"] ?? 0
            #expect(missed >= 1, "events_missed: \(missed)")
        }
    }

    /// A VIOLIN from its spec: placed on the hosts with room and the image, made there with
    /// its VNI, MACs and ports, entered in the inventory; when one host cannot make its VM,
    /// every VM already made is destroyed and nothing is entered. Destroy undoes a created one.
    @Test func environmentsAreMadeAllOrNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try withContext { ctx in
            let policy = try node(dir + "/policy.sqlite") { $0.reconcileInterval = 0; $0.executorTimeoutMs = 5000 }
            let runtime = try makeRuntime("policy", handler: policy)
            defer { runtime.stop() }
            // What the policy publishes about its creations.
            let events = NSLock()
            var published: [(topic: String, body: JSONValue)] = []
            policy.publish = { topic, body in events.withLock { published.append((topic, body)) } }
            func seen(_ topic: String) -> [JSONValue] { events.withLock { published.filter { $0.topic == topic }.map(\.body) } }
            let a = HostExecutor([]), b = HostExecutor([])
            let ea = try makeRuntime("executor", handler: a), eb = try makeRuntime("executor", handler: b)
            defer { ea.stop(); eb.stop() }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 10_000)
            defer { client.close() }
            try registerHosts(client, a: ea.endpoints[0], b: eb.endpoints[0])
            let spec: JSONValue = ["name": "lab", "home_domain": "d1", "image": "tiny", "memory_mb": "128", "placement": "spread",
                                   "vms": [["name": "x1", "ip": "10.0.0.1"], ["name": "x2"], ["name": "x3"]]]
            // A dry run places and allocates, and makes nothing.
            let planned = try client.call(PolicyAPI.CreateEnvironment(spec: spec, dryRun: true))
            #expect(planned.phase == "planned" && planned.vms.count == 3 && a.created.isEmpty && b.created.isEmpty)

            // b cannot make x2: x1 and x3, wherever they were made, are destroyed; nothing is entered.
            b.refuse = "x2"; a.refuse = "x2"
            do { _ = try client.call(PolicyAPI.CreateEnvironment(spec: spec)); Issue.record("a failed create answered ok") } catch let failure as ServiceClient.Failure {
                guard case .error(let e) = failure else { Issue.record("\(failure)"); return }
                #expect(e.code == .unavailable && e.message.contains("x2") && e.message.contains("destroyed"), "\(e)")
            }
            #expect(a.running.isEmpty && b.running.isEmpty, "left behind: \(a.running) \(b.running)")
            #expect(try client.call(PolicyAPI.Inventory()).violins.isEmpty)
            #expect(seen(PolicyAPI.PhaseChanged.event).map { $0["phase"] } == ["placing", "creating", "failed"], "\(seen(PolicyAPI.PhaseChanged.event))")
            #expect(!seen(PolicyAPI.VMPlaced.event).contains { $0["vm"] == "x2" }, "x2 was never made")
            events.withLock { published.removeAll() }

            a.refuse = ""; b.refuse = ""
            let made = try client.call(PolicyAPI.CreateEnvironment(spec: spec))
            #expect(made.phase == "running" && Set(made.vms.map(\.host)) == ["a", "b"], "spread over both: \(made.vms.map(\.host))")
            let requests = a.created + b.created
            #expect(Set(requests.compactMap { $0["name"]?.stringValue }) == ["x1", "x2", "x3"])
            // Who talks to whom: a host's mesh reports its switch's pair counters; the policy reads
            // the MACs as the VMs it made, the rate from two reports, and believes a host only
            // about frames its own VMs sent.
            do {
                func mac(_ vm: String) -> String { requests.first { $0["name"]?.stringValue == vm }?["mac"]?.stringValue ?? "?" }
                let x1Host = try #require(made.vms.first { $0.name == "x1" }?.host), other = x1Host == "a" ? "b" : "a"
                func report(_ bytes: Int, from host: String, at: Double) {
                    policy.ingestTraffic(["vni": .number(Double(made.vni)), "other": ["frames": 0, "bytes": 0],
                                          "pairs": [["src": .string(mac("x1")), "dst": .string(mac("x2")), "frames": 1, "bytes": .number(Double(bytes))]]],
                                         sender: "mesh@\(host)", atS: at)
                }
                let now = Date().timeIntervalSince1970
                let refusedBefore = try client.call("metrics")["counters"]?["readings_refused"]?.intValue ?? -1
                report(0, from: other, at: now - 20); report(90_000, from: other, at: now - 10)
                report(1_000, from: x1Host, at: now - 10); report(21_000, from: x1Host, at: now)
                let flows = try client.call(PolicyAPI.Traffic(violin: "lab")).flows
                #expect(flows == [.init(violin: "lab", from: "x1", to: "x2", bytesPerS: 2000)], "\(flows)")
                #expect(try client.call("metrics")["counters"]?["readings_refused"]?.intValue == refusedBefore + 2, "host \(other) spoke for x1")
                #expect(try client.send("traffic_request", body: ["violin": "nope"]).body["code"] == .string(ErrorCode.notFound.rawValue))
            }
            // What is coming: hinted VMs count as high-demand at once, while they are idle.
            do {
                func high() throws -> Int { try client.call("explain")["hosts"]?.items.reduce(0) { $0 + ($1["high_demand_vms"]?.intValue ?? 0) } ?? -1 }
                #expect(try high() == 0)
                let hint = try client.call(PolicyAPI.DemandHint(violin: "lab", vms: ["x1", "x2"], seconds: 300))
                #expect(hint.vms == ["x1", "x2"] && hint.until > Date().timeIntervalSince1970 + 290)
                #expect(try high() == 2, "the hinted VMs are not high-demand")
                #expect(try client.send("demand_hint_request", body: ["violin": "lab", "vms": ["x9"], "seconds": 60]).body["code"] == .string(ErrorCode.notFound.rawValue))
                #expect(try client.send("demand_hint_request", body: ["violin": "lab", "vms": [], "seconds": 60]).body["code"] == .string(ErrorCode.invalidBody.rawValue))
                #expect(try client.send("demand_hint_request", body: ["violin": "lab", "vms": ["x1"], "seconds": 0]).body["code"] == .string(ErrorCode.invalidBody.rawValue))
                // A hint of one second ends it.
                _ = try client.call(PolicyAPI.DemandHint(violin: "lab", vms: ["x1", "x2"], seconds: 1))
                #expect(eventually(deadline: 5) { (try? high()) == 0 }, "the ended hint still counts")
            }
            #expect(requests.allSatisfy { $0["image"] == "tiny" && $0["vni"] == .number(Double(made.vni)) && $0["kernel"] == nil && $0["uplink"] == nil })
            #expect(requests.first { $0["name"] == "x1" }?["cmdline"] == "violin.ip=10.0.0.1/24")
            // Each VM is announced where it runs, with the placement's reason; then the VIOLIN runs.
            let placed = seen(PolicyAPI.VMPlaced.event)
            #expect(Set(placed.compactMap { $0["vm"]?.stringValue }) == ["x1", "x2", "x3"] && placed.count == 3, "\(placed)")
            for vm in made.vms {
                #expect(placed.contains { $0["vm"]?.stringValue == vm.name && $0["host"]?.stringValue == vm.host && $0["violin"] == "lab"
                    && $0["domain"] == "d1" && $0["why"]?.stringValue == vm.why }, "\(vm.name): \(placed)")
            }
            #expect(seen(PolicyAPI.PhaseChanged.event).map { $0["phase"] } == ["placing", "creating", "running"])
            // Both creations are in the decision ledger: where each VM went, why, and how it ended.
            let ledger = try client.call(PolicyAPI.Decisions(limit: 10)).decisions.filter { $0["kind"] == "create_environment" }
            #expect(ledger.count == 2 && ledger.contains { $0["outcome"] == "created" }
                    && ledger.contains { ($0["outcome"]?.stringValue ?? "").hasPrefix("failed: ") && ($0["outcome"]?.stringValue ?? "").contains("x2") },
                    "\(ledger)")
            #expect(ledger.allSatisfy { ($0["reason"]?.stringValue ?? "").contains("x1 on ") }, "\(ledger)")
            #expect(requests.filter { $0["name"] != "x1" }.allSatisfy { $0["seed"] != nil }, "the others join through the first's mesh")
            let inv = try client.call(PolicyAPI.Inventory())
            #expect(inv.violins.map(\.id) == ["lab"] && Set(inv.vms.map(\.id)) == ["x1", "x2", "x3"])
            // The same name again: conflict.
            #expect(throws: ServiceClient.Failure.self) { try client.call(PolicyAPI.CreateEnvironment(spec: spec)) }

            // Applied: x2 removed, x4 added in the same VNI with a MAC none of the others has,
            // joining through the head's host; the inventory follows.
            func edited(_ key: String, _ value: JSONValue, of base: JSONValue) -> JSONValue {
                var o = base.objectValue ?? [:]
                o[key] = value
                return .object(o)
            }
            let grown = edited("vms", [["name": "x1", "ip": "10.0.0.1"], ["name": "x3"], ["name": "x4"]], of: spec)
            let applied = try client.call(PolicyAPI.ApplyEnvironment(spec: grown))
            #expect(applied.vni == made.vni && applied.added.map(\.name) == ["x4"] && applied.removed == ["x2"] && applied.left.isEmpty, "\(applied)")
            let macs = made.vms.filter { $0.name != "x2" }.map(\.mac) + applied.added.map(\.mac)
            #expect(Set(macs).count == 3, "a MAC given twice: \(macs)")
            let x4 = (a.created + b.created).first { $0["name"] == "x4" }
            #expect(x4?["vni"] == .number(Double(made.vni)) && x4?["seed"] != nil, "\(String(describing: x4))")
            #expect(!(a.running + b.running).contains("x2") && (a.running + b.running).contains("x4"))
            #expect(Set(try client.call(PolicyAPI.Inventory()).vms.map(\.id)) == ["x1", "x3", "x4"])
            // Anything else that changed is refused, naming it, and nothing is done.
            do { _ = try client.call(PolicyAPI.ApplyEnvironment(spec: edited("memory_mb", "256", of: grown))); Issue.record("a memory change applied") } catch let failure as ServiceClient.Failure {
                guard case .error(let e) = failure else { Issue.record("\(failure)"); return }
                #expect(e.code == .conflict && e.message.contains("x1.memory_mb") && e.message.contains("cannot change in place"), "\(e)")
            }
            #expect(throws: ServiceClient.Failure.self) { try client.call(PolicyAPI.ApplyEnvironment(spec: edited("name", "nobody", of: grown))) }
            #expect(Set(try client.call(PolicyAPI.Inventory()).vms.map(\.id)) == ["x1", "x3", "x4"])

            let destroyed = try client.call(PolicyAPI.DestroyEnvironment(name: "lab"))
            #expect(Set(destroyed.destroyed) == ["x1", "x3", "x4"] && destroyed.left.isEmpty)
            let after = try client.call(PolicyAPI.Inventory())
            #expect(a.running.isEmpty && b.running.isEmpty && after.vms.isEmpty)

            // Destroyed while host b does not answer: b's VMs are left, and go once b answers.
            _ = try client.call(PolicyAPI.CreateEnvironment(spec: spec))
            let onB = Set(b.running)
            b.down = true
            let partial = try client.call(PolicyAPI.DestroyEnvironment(name: "lab"))
            #expect(Set(partial.left) == Set(onB.map { "\($0)@b" }) && !onB.isEmpty && a.running.isEmpty, "\(partial)")
            b.down = false
            policy.reconcile()
            #expect(b.running.isEmpty, "left on b after it answered again: \(b.running)")
            #expect(try policy.store.leftovers().isEmpty)
        }
    }

    /// A policy (rounds and reconciliations on request, hosts lost at once) with three fake
    /// executors a, b and c registered in domain d1, and a client of it.
    func withThreeHosts(_ body: (PolicyServer, [String: HostExecutor], ServiceClient) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try withContext { ctx in
            let policy = try node(dir + "/policy.sqlite") { $0.reconcileInterval = 0; $0.executorTimeoutMs = 2000; $0.hostLostAfter = 0 }
            let runtime = try makeRuntime("policy", handler: policy)
            defer { runtime.stop() }
            let hosts = ["a": HostExecutor([]), "b": HostExecutor([]), "c": HostExecutor([])]
            let runtimes = try hosts.mapValues { try makeRuntime("executor", handler: $0) }
            defer { runtimes.values.forEach { $0.stop() } }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 10_000)
            defer { client.close() }
            _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
            for id in ["a", "b", "c"] {
                _ = try client.call(PolicyAPI.RegisterHost(id: id, domain: "d1", cores: 2, memoryMB: 8192, executor: runtimes[id]!.endpoints[0]))
            }
            try body(policy, hosts, client)
        }
    }

    /// `restart: always`: a VM whose host stops answering is made again on a host that answers,
    /// from its image, with its MAC; the old copy goes once its host answers again. A VIOLIN
    /// without it keeps waiting for its host.
    @Test func lostVMsOfARestartAlwaysVIOLINAreMadeAgain() throws {
        try withThreeHosts { policy, hosts, client in
            let events = NSLock()
            var restarted: [JSONValue] = []
            policy.publish = { topic, body in if topic == PolicyAPI.VMRestarted.event { events.withLock { restarted.append(body) } } }
            // k2 goes to b (spread; never beside k1); p1, of a VIOLIN without restart, too.
            let kept = try client.call(PolicyAPI.CreateEnvironment(spec: [
                "name": "kept", "home_domain": "d1", "image": "tiny", "restart": "always", "placement": "spread", "uplink": "nat",
                "vms": [["name": "k1", "host": "a"], ["name": "k2"]], "anti_affinity": [["k1", "k2"]]]))
            _ = try client.call(PolicyAPI.CreateEnvironment(spec: ["name": "plain", "home_domain": "d1", "image": "tiny", "vms": [["name": "p1", "host": "b"]]]))
            let k2 = try #require(kept.vms.first { $0.name == "k2" })
            try #require(k2.host == "b", "\(kept.vms)")
            // uplink: nat gives the head node, k1, and no other, a NIC on its host's NAT network.
            #expect(hosts["a"]!.created.first { $0["name"] == "k1" }?["uplink"] == true && hosts["b"]!.created.first { $0["name"] == "k2" }?["uplink"] == nil)

            hosts["b"]!.down = true
            policy.reconcile()
            let made = events.withLock { restarted }
            #expect(made.count == 1 && made.first?["vm"] == "k2" && made.first?["from"] == "b" && made.first?["to"] == "c", "\(made)")
            #expect(made.first?["why"]?.stringValue?.contains("memory is gone") == true)
            let again = hosts["c"]!.created.first { $0["name"] == "k2" }
            #expect(again?["mac"]?.stringValue == k2.mac && again?["image"] == "tiny" && again?["vni"] == .number(Double(kept.vni)), "\(String(describing: again))")
            // b is silent, not gone: its copy of k2 and p1 still hold their NIC port pairs, so
            // the new copy gets a pair of its own.
            let heldOnB = hosts["b"]!.created.compactMap { $0["nic_port"]?.intValue }
            let newPort = try #require(again?["nic_port"]?.intValue)
            #expect(heldOnB.count == 2 && !heldOnB.contains { abs($0 - newPort) <= 1 }, "k2 made again on port \(newPort); b holds \(heldOnB)")
            let inv = try client.call(PolicyAPI.Inventory())
            #expect(inv.vms.first { $0.id == "k2" }?.host == "c" && inv.vms.first { $0.id == "p1" }?.host == "b", "\(inv.vms)")
            policy.reconcile()
            #expect(events.withLock { restarted }.count == 1, "restarted twice")

            // b answers again, still running its copy of k2: that copy goes; p1 stays.
            hosts["b"]!.down = false
            policy.reconcile()
            #expect(hosts["b"]!.running == ["p1"], "\(hosts["b"]!.running)")
            #expect(hosts["c"]!.running == ["k2"])
            // One look in which every host answered and none ran k2 (hosts are asked one after
            // another: a migration between two of them can slip through one look): nothing made.
            hosts["c"]!.running = []
            policy.reconcile()
            #expect(events.withLock { restarted }.count == 1, "made again after one look")
            hosts["c"]!.running = ["k2"]
            policy.reconcile()
            #expect(events.withLock { restarted }.count == 1, "made again after one look")
            // c comes back from a power cut before anyone saw it silent: it answers, without k2.
            // Every host answered and none ran k2 in two looks: it is lost too, and made again,
            // and no copy of it is left to destroy (c answered).
            hosts["c"]!.running = []
            policy.reconcile()
            policy.reconcile()
            let leftovers = try policy.store.leftovers()
            #expect(leftovers.isEmpty, "\(leftovers)")
            let again2 = events.withLock { restarted }
            #expect(again2.count == 2 && again2.last?["vm"] == "k2" && again2.last?["from"] == "c", "\(again2)")
            #expect(again2.last?["why"]?.stringValue?.contains("runs it no more") == true, "\(again2)")
            #expect(hosts.values.filter { $0.running.contains("k2") }.count == 1, "k2 is not running in exactly one place")

            // a, where the spec pins k1, is lost: k1 is made again on another host of a's domain
            // (restart: always means elsewhere), never beside k2.
            let k2Host = try #require(try client.call(PolicyAPI.Inventory()).vms.first { $0.id == "k2" }?.host)
            hosts["a"]!.down = true
            policy.reconcile()
            let again3 = events.withLock { restarted }
            #expect(again3.count == 3 && again3.last?["vm"] == "k1" && again3.last?["from"] == "a", "\(again3)")
            let to = again3.last?["to"]?.stringValue
            #expect(to != nil && to != "a" && to != k2Host, "k1 made again on \(to ?? "nothing"), k2 is on \(k2Host)")
            // a stays lost; k1's new host comes back from a power cut without it. a, silent past
            // host_lost_after, holds nothing: k1 counts as missing, and is made again.
            let k1Host = try #require(to)
            hosts[k1Host]!.running.removeAll { $0 == "k1" }
            policy.reconcile()
            policy.reconcile()
            let again4 = events.withLock { restarted }
            #expect(again4.count == 4 && again4.last?["vm"] == "k1" && again4.last?["from"]?.stringValue == k1Host, "\(again4)")
        }
    }

    /// A restart and a destroy of the same VIOLIN take turns: a destroy asked while a restart
    /// of its lost VM is making it waits, then destroys that VM too (before, it read the
    /// inventory while the restart ran, and the VM made again outlived the destroy).
    @Test func aDestroyWaitsForARestartOfItsViolin() throws {
        try withThreeHosts { policy, hosts, client in
            _ = try client.call(PolicyAPI.CreateEnvironment(spec: [
                "name": "k", "home_domain": "d1", "image": "tiny", "restart": "always",
                "vms": [["name": "k1", "host": "a"], ["name": "k2", "host": "b"]]]))
            let gate = DispatchSemaphore(value: 0)
            hosts["a"]!.holdCreates = gate
            hosts["c"]!.holdCreates = gate
            hosts["b"]!.down = true
            // b is lost (host_lost_after 0): the reconciliation makes k2 again on a or c, held there.
            let reconciled = Pending()
            Thread { policy.reconcile(); reconciled.finish(.success(.null)) }.start()
            try #require(try eventually(deadline: 20) { hosts["a"]!.createsAsked + hosts["c"]!.createsAsked >= 1 }, "the restart never made k2")
            let destroyed = Pending()
            Thread { destroyed.finish(Result { try client.call(PolicyAPI.DestroyEnvironment(name: "k")).json }) }.start()
            #expect(try eventually(deadline: 20) { policy.waitingForTurn == 1 }, "the destroy did not wait for the restart: \(String(describing: destroyed.value))")
            gate.signal()
            #expect(try eventually(deadline: 30) { destroyed.value != nil && reconciled.value != nil })
            #expect(hosts["c"]!.running.isEmpty && hosts["a"]!.running.isEmpty, "left: \(hosts.mapValues(\.running))")
        }
    }

    /// A migration the policy never heard of (it was down), to a host that went silent right
    /// after: the source answers without the VM, and its journal says where it went. The VM is
    /// placed there at once, and made again when that host stays silent — not left on the
    /// source until it counts as missing in two looks of a policy that may be restarted between them.
    @Test func aVMFollowsItsSourcesJournalToAHostThatWentSilent() throws {
        try withThreeHosts { policy, hosts, client in
            let events = NSLock()
            var seen: [(String, JSONValue)] = []
            policy.publish = { topic, body in events.withLock { seen.append((topic, body)) } }
            _ = try client.call(PolicyAPI.CreateEnvironment(spec: [
                "name": "k", "home_domain": "d1", "image": "tiny", "restart": "always",
                "vms": [["name": "k1", "host": "a"], ["name": "k2", "host": "b"]]]))
            // b sent k2 to c (the event was lost), then c went silent.
            hosts["b"]!.running = []
            hosts["b"]!.jobs = [.init(job: "job-1", vm: "k2", from: "b", to: "c", state: "completed", error: "", elapsedMs: 900, downtimeMs: 40,
                                      blackoutMs: 90, processedBytes: nil, remainingBytes: nil, rateBps: nil, decisionID: "",
                                      createdAt: "2026-12-07T10:00:00Z", updatedAt: "2026-12-07T10:00:01Z")]
            hosts["c"]!.down = true
            policy.reconcile()
            let moved = events.withLock { seen.first { $0.0 == PolicyAPI.DriftDetected.event } }
            #expect(moved?.1["kind"] == "moved" && moved?.1["host"] == "c" && moved?.1["inventory_host"] == "b"
                    && moved?.1["why"]?.stringValue?.contains("journal") == true, "\(String(describing: moved))")
            #expect(try client.call(PolicyAPI.Inventory()).vms.first { $0.id == "k2" }?.host == "c")
            // c stays silent (host_lost_after 0 here): k2 is made again where it can run.
            policy.reconcile()
            let restarted = events.withLock { seen.filter { $0.0 == PolicyAPI.VMRestarted.event } }
            #expect(restarted.count == 1 && restarted.first?.1["vm"] == "k2" && restarted.first?.1["from"] == "c", "\(restarted)")
            #expect(hosts.values.filter { $0.running.contains("k2") }.count == 1)
        }
    }

    /// A host's silence is counted from when it began, also across a restart of the policy (it is
    /// killed, its node goes down): the restarted policy does not start the count again.
    @Test func aHostsSilenceOutlivesAPolicyRestart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let b = HostExecutor([])
        b.down = true
        let executor = try makeRuntime("executor", handler: b)
        defer { executor.stop() }
        let first = try node(dir + "/policy.sqlite") { $0.reconcileInterval = 0; $0.hostLostAfter = 3600 }
        try first.store.registerDomain("d1")
        try first.store.registerHost(id: "b", domain: "d1", cores: 2, memoryMB: 8192, executor: executor.endpoints[0], monitor: "", key: "")
        first.reconcile()
        let began = try #require(try first.store.silence()["b"])
        first.stop()
        let second = try node(dir + "/policy.sqlite") { $0.reconcileInterval = 0; $0.hostLostAfter = 3600 }
        defer { second.stop() }
        second.reconcile()
        #expect(try second.store.silence()["b"] == began, "counted again from the restart")
        b.down = false
        second.reconcile()
        #expect(try second.store.silence().isEmpty, "it answers: no longer silent")
    }

    /// The MACs a restart must not reuse: as the VMs' hosts report them, or, for a host that does
    /// not answer now, as each VM was made (kept in the inventory); unavailable when neither knows.
    @Test func macsInUseComeFromTheHostsOrFromTheInventory() throws {
        var inv = PolicyStore.Inventory()
        inv.vms = [VM(id: "x1", violin: "x", memoryMB: 128), VM(id: "x2", violin: "x", memoryMB: 128), VM(id: "y1", violin: "y", memoryMB: 128)]
        inv.placement = ["x1": "a", "x2": "b", "y1": "b"]
        inv.macs = ["x1": "52:54:00:00:00:01", "x2": "52:54:00:00:00:02", "y1": ""]
        let both = try PolicyServer.macsInUse("x", inv: inv, answered: ["a": ["x1": "52:54:00:00:00:09"], "b": ["x2": "52:54:00:00:00:02"]])
        #expect(both["x1"]?.mac == "52:54:00:00:00:09" && both["x2"]?.host == "b", "the host's word first: \(both)")
        let silentB = try PolicyServer.macsInUse("x", inv: inv, answered: ["a": ["x1": "52:54:00:00:00:01"]])
        #expect(silentB["x2"]?.mac == "52:54:00:00:00:02", "\(silentB)")
        #expect(throws: ProtocolError.self) { _ = try PolicyServer.macsInUse("y", inv: inv, answered: [:]) }
    }

    /// A lost VM's pin to a silent or unknown host becomes a pin to that host's domain, or none.
    @Test func aLostVMsHostPinIsLoosened() throws {
        let spec = ViolinSpec(name: "v", homeDomain: "d1", head: "v1", vms: [
            .init(name: "v1", memoryMB: 128, vcpus: 1, image: "tiny", host: "a"),
            .init(name: "v2", memoryMB: 128, vcpus: 1, image: "tiny", host: "b"),
            .init(name: "v3", memoryMB: 128, vcpus: 1, image: "tiny", host: "gone")])
        let domains = ["a": "d1", "b": "d2"]
        let u = PolicyServer.unpinned(spec, ["v1", "v3"], from: ["a", "b"], domainOf: domains)
        #expect(u.vms.map { "\($0.host ?? "-")/\($0.domain ?? "-")" } == ["-/d1", "b/-", "-/-"], "only the lost VMs: \(u.vms)")
        let anywhere = PolicyServer.unpinned(spec, ["v1"], from: ["a"], domainOf: domains, anywhere: true)
        #expect(anywhere.vms[0].host == nil && anywhere.vms[0].domain == nil)
        #expect(PolicyServer.unpinned(spec, ["v1"], from: [], domainOf: domains) == spec, "a pin to a host that answers stays")
    }

    /// A policy stopped while it was making a VIOLIN finds the journaled creation when it runs
    /// again: every VM made for it is destroyed (one never made counts as gone), and the
    /// creation is closed as failed.
    @Test func aCreationCutShortIsUndoneOnRestart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-policy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = HostExecutor(["g1", "other"])
        let ea = try makeRuntime("executor", handler: a)
        defer { ea.stop() }
        do {   // what the stopped policy left: a host, and a creation of g1 (made) and g2 (not yet)
            let store = try PolicyStore(path: dir + "/policy.sqlite")
            try store.registerDomain("d1")
            try store.registerHost(id: "a", domain: "d1", cores: 2, memoryMB: 8192, executor: ea.endpoints[0], monitor: "", key: "")
            try store.beginCreation("ghost", vms: ["g1@a", "g2@a"])
        }
        let policy = try node(dir + "/policy.sqlite") { $0.reconcileInterval = 0.2 }
        try policy.start()
        defer { policy.stop() }
        #expect(try eventually(deadline: 20) { (try? policy.store.unfinishedCreations())?.isEmpty == true }, "the creation is still open")
        #expect(a.running == ["other"], "left on the host: \(a.running)")
    }
}

/// What one call in the background ended with; nil while it runs.
final class Pending: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<JSONValue, Error>?
    var value: Result<JSONValue, Error>? { lock.withLock { result } }
    func finish(_ r: Result<JSONValue, Error>) { lock.withLock { result = r } }
}

/// An executor that answers `vms_request` with the VMs it is told it runs, and makes and
/// destroys VMs in that list (all but the one it is told to refuse).
final class HostExecutor: RequestHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var names: [String]
    private var made: [JSONValue] = []
    private var refused = ""
    init(_ names: [String]) { self.names = names }
    var running: [String] { get { lock.withLock { names } } set { lock.withLock { names = newValue } } }
    var created: [JSONValue] { lock.withLock { made } }
    var refuse: String { get { lock.withLock { refused } } set { lock.withLock { refused = newValue } } }
    /// While set, a create waits for it (on the executor's worker) before it makes the VM.
    var holdCreates: DispatchSemaphore? { get { lock.withLock { hold } } set { lock.withLock { hold = newValue } } }
    private var hold: DispatchSemaphore?
    /// Creates received while `holdCreates` was set.
    var createsAsked: Int { lock.withLock { creates } }
    private var creates = 0
    func lane(of msgType: String) -> RequestTable.Lane { msgType == ExecutorAPI.CreateVM.msgType && holdCreates != nil ? .long : .quick }
    /// While down, it answers everything with `unavailable` (a host whose libvirt is gone).
    var down: Bool { get { lock.withLock { isDown } } set { lock.withLock { isDown = newValue } } }
    private var isDown = false
    /// Its journal: the migrations it ran, newest first (`jobs_request`).
    var jobs: [ExecutorAPI.JobReport] { get { lock.withLock { journal } } set { lock.withLock { journal = newValue } } }
    private var journal: [ExecutorAPI.JobReport] = []
    /// How many times it was asked what it runs.
    var asked: Int { lock.withLock { vmsAsked } }
    private var vmsAsked = 0
    var state: JSONValue { [:] }
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        let body = request.body
        if down { throw ProtocolError(.unavailable, "libvirt does not answer") }
        switch request.header.msgType {
        case ExecutorAPI.VMs.msgType:
            lock.withLock { vmsAsked += 1 }
            // The MAC and NIC port each VM was made with (none for one it was handed at start).
            let made = Dictionary(created.compactMap { b in b["name"]?.stringValue.map { ($0, b) } }, uniquingKeysWith: { _, b in b })
            return Replies.ok(ExecutorAPI.VMsReply(host: "fake", vms: running.map {
                .init(name: $0, state: "running", memoryMB: 256, mac: made[$0]?["mac"]?.stringValue, nicPort: made[$0]?["nic_port"]?.intValue)
            }))
        case ExecutorAPI.Jobs.msgType:
            return Replies.ok(ExecutorAPI.JobsReply(jobs: jobs))
        case ExecutorAPI.HostInfo.msgType:
            return Replies.ok(ExecutorAPI.HostInfoReply(host: "fake", migrationURI: "qemu:///fake", mesh: "tcp://127.0.0.1:1", freeMemoryMB: 4096, migrationsRunning: 0))
        case ExecutorAPI.Images.msgType:
            return Replies.ok(ExecutorAPI.ImagesReply(host: "fake", images: [.init(name: "tiny", kind: "kernel")]))
        case ExecutorAPI.CreateVM.msgType:
            let held = lock.withLock { () -> DispatchSemaphore? in
                if hold != nil { creates += 1 }
                return hold
            }
            if let held { held.wait(); held.signal() }
            let name = body["name"]?.stringValue ?? ""
            if name == refuse { throw ProtocolError(.unavailable, "libvirt: no room for \(name)") }
            lock.withLock { names.append(name); made.append(body) }
            return Replies.ok(ExecutorAPI.CreateVMReply(vm: name, uuid: "u", port: .init(name: "vm-" + name, kind: "udp")))
        case ExecutorAPI.DestroyVM.msgType:
            let name = body["name"]?.stringValue ?? ""
            guard lock.withLock({ names.contains(name) }) else { throw ProtocolError(.notFound, "no VM \(name)") }
            lock.withLock { names.removeAll { $0 == name } }
            return Replies.ok(ExecutorAPI.VMReply(vm: name))
        default:
            return nil
        }
    }
}

/// A monitor that takes balloon and CPU-weight requests and remembers them.
final class FakeMonitor: RequestHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var got: [Message] = []
    var requests: [Message] { lock.lock(); defer { lock.unlock() }; return got }
    var state: JSONValue { [:] }
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        lock.lock(); got.append(request); lock.unlock()
        let vm = request.body["vm"] ?? ""
        switch request.header.msgType {
        case "set_balloon_request": return Replies.ok(["vm": vm, "target_mb": request.body["memory_mb"] ?? 0, "memory_mb": request.body["memory_mb"] ?? 0])
        case "set_cpu_weight_request": return Replies.ok(["vm": vm, "weight": request.body["weight"] ?? 0])
        default: return nil
        }
    }
}

@Suite struct PolicyLeverTests {
    /// A policy with levers on (effects awaited `settle` seconds), reading samples from a bus,
    /// rounds on request only; the body gets the bus's context and proxy and the policy's runtime.
    func withLeverPolicy(settle: Double = 60, _ body: (ZMQContext, EventProxy, ServiceRuntime) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-levers-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try withBus { ctx, proxy in
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            var o = PolicyServer.Options(database: dir + "/policy.sqlite")
            o.subscribe = proxy.backendEndpoints[0]
            o.interval = 3600
            o.levers = true
            o.leverSettle = settle
            let policy = try PolicyServer(options: o, logger: logger)
            let runtime = try makeRuntime("policy", bus: proxy.frontendEndpoints[0], handler: policy)
            defer { runtime.stop() }
            policy.publish = { runtime.publish($0, $1) }
            try policy.start()
            defer { policy.stop() }
            try body(ctx, proxy, runtime)
        }
    }

    /// With levers on, in automatic mode: a guest under pressure on a host that cannot give it
    /// memory (little free, no neighbour with memory to spare) is migrated — that guest, not
    /// its neighbour — to the host with room, through its host's executor; the ledger says why.
    @Test func aHostOutOfMemoryMigratesTheShortGuestWhereThereIsRoom() throws {
        try withLeverPolicy { ctx, proxy, runtime in
            let (executorA, executorB) = (FakeExecutor(), FakeExecutor())
            let (monitorA, monitorB) = (FakeMonitor(), FakeMonitor())
            let runtimes = try [executorA, executorB].map { try makeRuntime("executor", handler: $0) }
                + [monitorA, monitorB].map { try makeRuntime("monitor", handler: $0) }
            defer { runtimes.forEach { $0.stop() } }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 5000)
            defer { client.close() }
            _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
            _ = try client.call(PolicyAPI.RegisterHost(id: "a", domain: "d1", cores: 2, memoryMB: 1024, executor: runtimes[0].endpoints[0], monitor: runtimes[2].endpoints[0]))
            _ = try client.call(PolicyAPI.RegisterHost(id: "b", domain: "d1", cores: 2, memoryMB: 4096, executor: runtimes[1].endpoints[0], monitor: runtimes[3].endpoints[0]))
            _ = try client.call("create_violin", body: ["id": "e1", "home_domain": "d1", "head": "vm0",
                                                        "vms": [["id": "vm0", "memory_mb": 512, "host": "a"], ["id": "vm1", "memory_mb": 512, "host": "a"]]])
            _ = try client.call("set_mode", body: ["mode": "automatic"])
            let samplerA = try makeRuntime("monitor", instance: "monitor@a", bus: proxy.frontendEndpoints[0])
            let samplerB = try makeRuntime("monitor", instance: "monitor@b", bus: proxy.frontendEndpoints[0])
            defer { samplerA.stop(); samplerB.stop() }
            func guest(_ name: String, balloon: Int, unused: Int, swapIn: Double) -> JSONValue {
                ["name": .string(name), "cpu_percent": 5, "memory_mb": .number(Double(balloon)), "max_memory_mb": 512,
                 "guest_memory": ["unused_mb": .number(Double(unused)), "available_mb": .number(Double(unused + 4)),
                                  "swap_in_kb_s": .number(swapIn), "swap_out_kb_s": 0, "major_faults_s": 0]]
            }
            // Host a: 40 MB free; vm1 at 256 of 512 MB swaps, vm0 uses all it has. Host b: 3000 MB free.
            var migrated: JSONValue?
            #expect(try eventually(deadline: 10) {
                samplerA.publish("sampled", ["host": ["cpus": 2, "memory_mb": 1024, "free_memory_mb": 40],
                                             "vms": [guest("vm0", balloon: 512, unused: 8, swapIn: 0), guest("vm1", balloon: 256, unused: 2, swapIn: 300)]])
                samplerB.publish("sampled", ["host": ["cpus": 2, "memory_mb": 4096, "free_memory_mb": 3000], "vms": []])
                migrated = try client.call("evaluate")["decisions"]?.items.first { $0["kind"] == "migrate_vm" }
                return migrated != nil
            }, "no migration")
            #expect(migrated?["decision"]?["vm"] == "vm1" && migrated?["decision"]?["to"] == "b" && migrated?["outcome"] == "sent", "\(String(describing: migrated))")
            #expect((migrated?["reason"]?.stringValue ?? "").contains("host a has 40 MB free"), "\(String(describing: migrated))")
            #expect(executorA.migrations.map { $0["vm"]?.stringValue } == ["vm1"] && executorB.migrations.isEmpty, "\(executorA.migrations)")
            #expect(!monitorA.requests.contains { $0.header.msgType == "set_balloon_request" && $0.body["vm"] == "vm0" }, "vm0 had nothing to give")
        }
    }

    /// With levers on, in automatic mode: while a guest swaps, its host's guest that leaves most
    /// of its memory unused is ballooned down through the host's monitor and the short one up; the
    /// ledger has the decision with its reason, what it expects, and — once the lever settled —
    /// its measured effect from the next sample.
    @Test func anIdleGuestIsBallonedDownAndTheEffectIsRecorded() throws {
        try withLeverPolicy(settle: 1) { ctx, proxy, runtime in
            let fake = FakeMonitor()
            let monitorA = try makeRuntime("monitor", handler: fake)
            defer { monitorA.stop() }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 5000)
            defer { client.close() }
            _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
            _ = try client.call(PolicyAPI.RegisterHost(id: "a", domain: "d1", cores: 2, memoryMB: 8192, monitor: monitorA.endpoints[0]))
            _ = try client.call("create_violin", body: ["id": "e1", "home_domain": "d1", "head": "vm0",
                                                        "vms": [["id": "vm0", "memory_mb": 512, "host": "a"], ["id": "vm1", "memory_mb": 512, "host": "a"]]])
            _ = try client.call("set_mode", body: ["mode": "automatic"])
            let sampler = try makeRuntime("monitor", instance: "monitor@a", bus: proxy.frontendEndpoints[0])
            defer { sampler.stop() }
            /// vm0 idle with `balloon` MB, `unused` of them unused; vm1 with `short` MB, swapping if `swapping`.
            func sample(balloon: Int, unused: Int, short: Int, swapping: Bool) -> JSONValue {
                func guest(_ name: String, _ mb: Int, unused: Int, swapIn: Double) -> JSONValue {
                    ["name": .string(name), "cpu_percent": 5, "memory_mb": .number(Double(mb)), "max_memory_mb": 512,
                     "guest_memory": ["unused_mb": .number(Double(unused)), "available_mb": .number(Double(unused + 20)),
                                      "swap_in_kb_s": .number(swapIn), "swap_out_kb_s": 0, "major_faults_s": 0]]
                }
                return ["host": ["cpus": 2, "memory_mb": 1024, "free_memory_mb": 100],
                        "vms": [guest("vm0", balloon, unused: unused, swapIn: 0), guest("vm1", short, unused: 2, swapIn: swapping ? 400 : 0)]]
            }
            // Until the policy has read it: vm1 swaps, so its round balloons vm0 down to 112 used +
            // 102 headroom, and vm1 up by a quarter of its memory with what that frees.
            var decided: JSONValue?
            #expect(try eventually(deadline: 10) {
                sampler.publish("sampled", sample(balloon: 512, unused: 400, short: 256, swapping: true))
                decided = try client.call("evaluate")["decisions"]?.items.first { $0["kind"] == "set_balloon" }
                return decided != nil
            }, "no balloon decision")
            #expect(decided?["decision"]?["target_mb"]?.intValue == 214 && decided?["outcome"] == "sent", "\(String(describing: decided))")
            #expect((decided?["reason"]?.stringValue ?? "").contains("400 of 512 MB unused while host a wants memory"), "\(String(describing: decided))")
            let asked = fake.requests.filter { $0.header.msgType == "set_balloon_request" }.map { "\($0.body["vm"]?.stringValue ?? "?")=\($0.body["memory_mb"]?.intValue ?? 0)" }
            #expect(asked == ["vm0=214", "vm1=384"], "\(asked)")
            // Once it settled, the next round writes what became of it (and asks nothing new).
            #expect(try eventually(deadline: 10) {
                sampler.publish("sampled", sample(balloon: 214, unused: 60, short: 384, swapping: false))
                _ = try client.call("evaluate")
                let rows = try client.call("decisions", body: ["limit": 5])["decisions"]?.items ?? []
                return rows.contains { $0["kind"] == "set_balloon" && ($0["effect"]?.stringValue ?? "").contains("vm0 has 214 MB, 60 unused") }
            }, "the lever's effect was not recorded")
            #expect(fake.requests.filter { $0.header.msgType == "set_balloon_request" }.count == 2, "each ballooned once")
        }
    }
}

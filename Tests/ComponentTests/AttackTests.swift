import ExecutorService
import Foundation
import Hypervisor
import Logging
import PolicyService
import ServiceKit
import TestSupport
import Testing
import VIOLINProtocol
import ZeroMQ

/// Answers what it is told to, and remembers every request (an attacker's executor, or a
/// control node whose inventory the test writes).
final class Scripted: RequestHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var got: [String] = []
    let answer: (Message) -> JSONValue?
    init(_ answer: @escaping (Message) -> JSONValue?) { self.answer = answer }
    var state: JSONValue { [:] }
    var requests: [String] { lock.withLock { got } }
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        lock.withLock { got.append(request.header.msgType) }
        return answer(request)
    }
}

/// The attacks of REVIEW-security.md (commit 8afe8ed), each against the real services over
/// real ZeroMQ: each of these succeeded there and is refused here.
@Suite(.serialized) struct AttackTests {
    /// §3: a fake executor answering `host_info` with the attacker's migration URI and mesh
    /// received the VM's memory. Now the executor takes the destination from the control
    /// node's inventory by host id; the executor the request names is never asked, and a
    /// record whose URI is not qemu+tls/tcp/ssh to the host's address is refused.
    @Test func aMigrationGoesOnlyWhereTheInventorySays() throws {
        try withBus { ctx, proxy in
            let world = InMemoryHypervisor.World()
            let attacker = Scripted { _ in
                Replies.ok(ExecutorAPI.HostInfoReply(host: "h2", migrationURI: "qemu+tcp://10.6.6.6/system", mesh: "tcp://10.6.6.6:7701",
                                                     freeMemoryMB: 1 << 20, migrationsRunning: 0))
            }
            let attackerRuntime = try makeRuntime("executor", handler: attacker)
            defer { attackerRuntime.stop() }
            let h2 = try ExecutorOrchestrationTests.Host("h2", world: world, bus: proxy.frontendEndpoints[0], libvirtURI: "qemu+tcp://127.0.0.1/system")
            defer { h2.stop() }
            let records: [String: PolicyAPI.HostRecordReply] = [
                "h2": .init(id: "h2", domain: "d1", executor: h2.endpoint, mesh: h2.meshRuntime.endpoints[0],
                            migrationURI: "qemu+tcp://127.0.0.1/system", key: "", usable: true),
                "h3": .init(id: "h3", domain: "d1", executor: h2.endpoint, mesh: h2.meshRuntime.endpoints[0],
                            migrationURI: "qemu+ext:///system?command=/bin/sh", key: "", usable: true),
                "h4": .init(id: "h4", domain: "d1", executor: h2.endpoint, mesh: h2.meshRuntime.endpoints[0],
                            migrationURI: "qemu+tcp://127.0.0.1/system", key: "", usable: false, why: "host h4's key is not accepted (revoked?)"),
            ]
            let control = Scripted { m in
                guard m.header.msgType == PolicyAPI.HostRecord.msgType, let id = m.body["id"]?.stringValue else { return nil }
                guard let r = records[id] else { return Replies.error(.notFound, "no host \(id)") }
                return Replies.ok(r)
            }
            let controlRuntime = try makeRuntime("policy", handler: control)
            defer { controlRuntime.stop() }
            let h1 = try ExecutorOrchestrationTests.Host("h1", world: world, bus: proxy.frontendEndpoints[0], control: controlRuntime.endpoints[0])
            defer { h1.stop() }
            let c1 = ServiceClient(context: ctx, endpoint: h1.endpoint, timeoutMs: 10_000)
            defer { c1.close() }
            _ = try c1.call(ExecutorAPI.CreateVM(name: "a1", vni: 101, mac: MACAddress("52:54:00:0a:00:01")!, kernel: "/bin/sh", nicPort: 20001))

            func refusal(_ to: String) -> ProtocolError? {
                var o = ExecutorAPI.MigrationOptions(toExecutor: attackerRuntime.endpoints[0])
                o.to = to
                do { _ = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: o)); return nil } catch {
                    if case .error(let e) = error { return e }
                    return ProtocolError(.internalError, "\(error)")
                }
            }
            #expect(refusal("h3")?.code == .forbidden, "a qemu+ext URI in the inventory")
            #expect(refusal("h4")?.message.contains("not accepted") == true, "a host whose key was revoked")
            #expect(refusal("nowhere")?.code == .notFound)
            var o = ExecutorAPI.MigrationOptions(toExecutor: attackerRuntime.endpoints[0])
            o.to = "h2"
            let started = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: o))
            try #require(world.waitForMigration("a1", timeout: 20))
            world.finish("a1")
            _ = eventually(deadline: 20) { (try? c1.call(ExecutorAPI.Job(job: started.job)))?.state == "completed" }
            #expect(world.state("qemu+tcp://127.0.0.1/system", "a1") == .running, "the VM went to the inventory's host")
            #expect(attacker.requests.isEmpty, "the executor the request named was asked: \(attacker.requests)")
        }
    }

    /// An executor with keys and no control node to take destinations from migrates nowhere.
    @Test func anExecutorWithKeysAndNoControlNodeRefusesMigrations() throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let world = InMemoryHypervisor.World()
        world.addHost("mem://k1")
        var o = ExecutorServer.Options(hostID: "k1", libvirtURI: "mem://k1", migrationURI: "mem://k1", mesh: "tcp://127.0.0.1:1", database: ":memory:")
        o.connect = InMemoryHypervisor.connector(world)
        o.keyPair = try CurveKeyPair.generate()
        o.imageDir = ExecutorOrchestrationTests.imageStore
        let node = try ExecutorServer(options: o, logger: logger)
        defer { node.stop() }
        var m = ExecutorAPI.MigrationOptions(toExecutor: "tcp://127.0.0.1:2")
        m.to = "k2"
        var factory = MessageFactory(sender: "t")
        do {
            _ = try node.handle(factory.request(ExecutorAPI.Migrate.msgType, body: ExecutorAPI.Migrate(vm: "a1", options: m).json))
            Issue.record("migrated without a control node")
        } catch { #expect(error.code == .forbidden && error.message.contains("control"), "\(error)") }
    }

    /// §8: nothing bounded an executor's queue of migrations; `max_jobs` does.
    @Test func anExecutorQueuesAtMostMaxJobsMigrations() throws {
        try withBus { ctx, proxy in
            let world = InMemoryHypervisor.World()
            let h1 = try ExecutorOrchestrationTests.Host("h1", world: world, bus: proxy.frontendEndpoints[0], maxJobs: 1)
            let h2 = try ExecutorOrchestrationTests.Host("h2", world: world, bus: proxy.frontendEndpoints[0])
            defer { h1.stop(); h2.stop() }
            let c1 = ServiceClient(context: ctx, endpoint: h1.endpoint, timeoutMs: 10_000)
            defer { c1.close() }
            for (i, name) in ["a1", "a2"].enumerated() {
                _ = try c1.call(ExecutorAPI.CreateVM(name: name, vni: 101, mac: MACAddress("52:54:00:0a:00:0\(i + 1)")!, kernel: "/bin/sh", nicPort: 20001 + 2 * i))
            }
            let first = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint)))
            try #require(world.waitForMigration("a1", timeout: 20))
            do {
                _ = try c1.call(ExecutorAPI.Migrate(vm: "a2", options: .init(toExecutor: h2.endpoint)))
                Issue.record("a second migration was queued past max_jobs 1")
            } catch {
                guard case ServiceClient.Failure.error(let e) = error else { Issue.record("\(error)"); return }
                #expect(e.code == .conflict && e.message.contains("max_jobs"), "\(e)")
            }
            world.finish("a1")
            #expect(eventually(deadline: 20) { (try? c1.call(ExecutorAPI.Job(job: first.job)))?.state == "completed" })
            // The slot is free again.
            #expect(eventually(deadline: 10) { (try? c1.call(ExecutorAPI.Migrate(vm: "a2", options: .init(toExecutor: h2.endpoint)))) != nil })
            world.finish("a2")
        }
    }

    /// §7: `migrate_violin_request` with a VNI of 2^32 trapped the executor once it had a VM.
    @Test func aVNIOf2To32IsRefusedNotATrap() throws {
        try ExecutorOrchestrationTests().withTwoHosts { _, _, _, c1, _ in
            for vni: Double in [4_294_967_296, 16_777_216, -1, 0, 1e300] {
                do {
                    _ = try c1.call("migrate_violin", body: ["vni": .number(vni), "to_executor": "tcp://127.0.0.1:9", "to": "h2"])
                    Issue.record("vni \(vni) accepted")
                } catch {
                    guard case ServiceClient.Failure.error(let e) = error else { Issue.record("vni \(vni): \(error)"); continue }
                    #expect(e.code == .invalidBody && e.message.hasPrefix("vni"), "\(e)")
                }
            }
            let pong = try? c1.call(AdminAPI.Ping())
            #expect(pong?.status == "ok", "the executor still answers")
        }
    }
}

/// The policy's side: who may register, drain and move what, over CURVE with roles.
@Suite(.serialized) struct PolicyAttackTests {
    struct Keys {
        let server = try! CurveKeyPair.generate()
        let op = try! CurveKeyPair.generate(), h1 = try! CurveKeyPair.generate(), evil = try! CurveKeyPair.generate()
        let admin2 = try! CurveKeyPair.generate()
        var table: KeyTable {
            KeyTable(entries: [.init(key: op.publicKey, roles: [.operator]), .init(key: h1.publicKey, roles: [.host("h1")]),
                               .init(key: evil.publicKey, roles: [.host("evil")]), .init(key: admin2.publicKey, roles: [.domainAdmin("d2")])],
                     ownKey: server.publicKey)
        }
    }

    func withPolicy(_ body: (ZMQContext, Keys, (CurveKeyPair) -> ServiceClient) throws -> Void) throws {
        let keys = Keys()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-attack-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var o = PolicyServer.Options(database: dir + "/p.sqlite")
        o.keyTable = keys.table
        o.keyPair = keys.server
        let policy = try PolicyServer(options: o, logger: logger)
        defer { policy.stop() }
        let runtime = try makeRuntime("policy", instance: "policy@ctl", server: ServerSecurity(keyPair: keys.server), keys: keys.table, handler: policy)
        defer { runtime.stop() }
        try withContext { ctx in
            var clients: [ServiceClient] = []
            defer { clients.forEach { $0.close() } }
            try body(ctx, keys) { pair in
                let c = ServiceClient(context: ctx, endpoint: runtime.endpoints[0],
                                      security: ClientSecurity(keyPair: pair, serverPublicKey: keys.server.publicKey), timeoutMs: 3000)
                clients.append(c)
                return c
            }
        }
    }

    func code(_ f: () throws -> Any) -> ErrorCode? {
        do { _ = try f(); return nil } catch let e as ServiceClient.Failure {
            if case .error(let p) = e { return p.code }
            return .unavailable
        } catch { return .internalError }
    }

    /// §3: `register_host_request` for a fake host with lots of memory, then `drain_host_request`,
    /// sent real VMs to it. Now a host's key registers only itself; drains are for operators
    /// and the host's own domain's admin; links must check.
    @Test func aFakeHostAndADrainAreRefused() throws {
        try withPolicy { _, keys, client in
            let op = client(keys.op), h1 = client(keys.h1), evil = client(keys.evil), admin2 = client(keys.admin2)
            _ = try op.call(PolicyAPI.RegisterDomain(id: "d1"))
            _ = try op.call(PolicyAPI.RegisterDomain(id: "d2"))
            _ = try h1.call(PolicyAPI.RegisterHost(id: "h1", domain: "d1", cores: 2, memoryMB: 4096, executor: "tcp://10.0.0.1:7704",
                                                   mesh: "tcp://10.0.0.1:7701", migrationURI: "qemu+tls://10.0.0.1/system"))
            // The evil host's key may not register another host, nor h1 again under its key.
            #expect(code { try evil.call(PolicyAPI.RegisterHost(id: "big", domain: "d1", cores: 64, memoryMB: 1 << 30)) } == .forbidden)
            #expect(code { try evil.call(PolicyAPI.RegisterHost(id: "h1", domain: "d1", cores: 64, memoryMB: 1 << 30)) } == .forbidden)
            // Itself, with an attacker's migration URI or a program for one: refused.
            for uri in ["qemu+tcp://10.6.6.6/system", "qemu+ext:///system?command=/bin/sh", "qemu+ssh://10.0.0.9/system?keyfile=/root/.ssh/id",
                        "qemu+tls://10.0.0.9/session"] {
                let r = PolicyAPI.RegisterHost(id: "evil", domain: "d1", cores: 64, memoryMB: 1 << 30, executor: "tcp://10.0.0.9:7704",
                                               mesh: "tcp://10.0.0.9:7701", migrationURI: uri)
                #expect(code { try evil.call(r) } == .invalidBody, "\(uri)")
            }
            // Nor can it, or another domain's admin, drain or remove h1.
            #expect(code { try evil.call(PolicyAPI.DrainHost(id: "h1")) } == .forbidden)
            #expect(code { try admin2.call(PolicyAPI.DrainHost(id: "h1")) } == .forbidden)
            #expect(code { try admin2.call(PolicyAPI.RemoveHost(id: "h1")) } == .forbidden)
            #expect(code { try evil.call(PolicyAPI.SetMode(mode: .automatic)) } == .forbidden)
            #expect(code { try evil.call(PolicyAPI.DestroyViolin(id: "x")) } == .forbidden)
            // Demand hints: a host may not send one; another domain's admin not for a VIOLIN of d1.
            _ = try op.call(PolicyAPI.CreateViolin(id: "e1", homeDomain: "d1", head: "v0", vms: [.init(id: "v0", memoryMB: 128, host: "h1")]))
            #expect(code { try evil.call(PolicyAPI.DemandHint(violin: "e1", vms: ["v0"], seconds: 60)) } == .forbidden)
            #expect(code { try admin2.call(PolicyAPI.DemandHint(violin: "e1", vms: ["v0"], seconds: 60)) } == .forbidden)
            #expect(try op.call(PolicyAPI.DemandHint(violin: "e1", vms: ["v0"], seconds: 60)).vms == ["v0"])
            // What a host may read: its own record, to migrate; not the keys.
            #expect(try h1.call(PolicyAPI.HostRecord(id: "h1")).migrationURI == "qemu+tls://10.0.0.1/system")
            #expect(code { try h1.call(PolicyAPI.Keys()) } == .forbidden)
            // The audit trail names who asked.
            let audit = try op.call(PolicyAPI.Decisions(limit: 50, audit: true)).decisions
            #expect(audit.contains { $0["kind"] == "register_host" && ($0["asked_by"]?.stringValue ?? "").hasPrefix("host:h1") }, "\(audit)")
        }
    }

    /// §6: memory_mb near 9×10^15 overflowed the policy's sums (and trapped it at every start).
    /// Every integer is range-checked when read.
    @Test func hugeNumbersAreRefusedWhenRead() throws {
        try withPolicy { _, keys, client in
            let op = client(keys.op)
            _ = try op.call(PolicyAPI.RegisterDomain(id: "d1"))
            for memory in [9e15, 1e300, -1, 1.5] {
                #expect(code { try op.call("register_host", body: ["id": "h9", "domain": "d1", "cores": 2, "memory_mb": .number(memory)]) } == .invalidBody)
            }
            _ = try op.call(PolicyAPI.RegisterHost(id: "h1", domain: "d1", cores: 2, memoryMB: 4096))
            let vm: JSONValue = ["id": "v", "memory_mb": 9e15, "host": "h1"]
            #expect(code { try op.call("create_violin", body: ["id": "x", "home_domain": "d1", "head": "v", "vms": [vm]]) } == .invalidBody)
            #expect(try op.call(PolicyAPI.Evaluate()).decisions.isEmpty, "a round still runs")
        }
    }
}

/// §6: the bus forwarded any event from anyone. Now, over CURVE, an event leaves the bus only
/// when its publisher's key may publish it as its `sender`, and its body reads as its type.
@Suite struct BusAttackTests {
    @Test func forgedEventsStopAtTheBus() throws {
        let bus = try CurveKeyPair.generate(), h1 = try CurveKeyPair.generate(), h2 = try CurveKeyPair.generate(), watcher = try CurveKeyPair.generate()
        let table = KeyTable(entries: [.init(key: h1.publicKey, roles: [.host("h1")]), .init(key: h2.publicKey, roles: [.host("h2")]),
                                       .init(key: watcher.publicKey, roles: [.operator])], ownKey: bus.publicKey)
        let settings = ServiceSettings(service: "bus", instance: "bus@ctl", listen: [], bus: nil, server: ServerSecurity(keyPair: bus), keys: table)
        try withContext { ctx in
            let zap = ZAPHandler(context: ctx, accepts: { table.accepts($0) || $0 == bus.publicKey })
            try zap.start()
            defer { zap.stop() }
            let proxy = try EventProxy(context: ctx, frontend: ["tcp://127.0.0.1:*"], backend: ["tcp://127.0.0.1:*"],
                                       security: ServerSecurity(keyPair: bus), filter: BusFilter.make(settings))
            proxy.start()
            defer { proxy.stop() }
            let sub = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: [""],
                                          security: ClientSecurity(keyPair: watcher, serverPublicKey: bus.publicKey))
            defer { sub.close() }
            func publisher(_ pair: CurveKeyPair) throws -> ZMQSocket {
                let s = try ZMQSocket(ctx, .pub)
                try s.setLinger(ms: 0)
                try s.makeCurveClient(ClientSecurity(keyPair: pair, serverPublicKey: bus.publicKey))
                try s.connect(proxy.frontendEndpoints[0])
                return s
            }
            let p1 = try publisher(h1), p2 = try publisher(h2)
            defer { p1.close(); p2.close() }
            var f1 = MessageFactory(sender: "executor@h1"), forged = MessageFactory(sender: "executor@h1")
            var own2 = MessageFactory(sender: "executor@h2"), asPolicy = MessageFactory(sender: "policy@h2")
            let completed: JSONValue = ["job": "j", "vm": "a1", "from": "h1", "to": "h2"]
            // Until the subscription is through, keep sending a good event; then the forgeries.
            let through = try eventually(deadline: 10) {
                try p1.send(Codec.encode(f1.event("executor.heartbeat", body: ["service": "executor", "instance": "executor@h1", "uptime_s": 1, "requests_handled": 0])))
                if case .event? = try? sub.next(timeoutMs: 100) { return true }
                return false
            }
            try #require(through)
            while case .event? = try? sub.next(timeoutMs: 200) {}
            // h2's key, claiming to be h1's executor; as the policy; a body that is not the type's.
            try p2.send(Codec.encode(forged.event(ExecutorAPI.MigrationCompleted.topic, body: completed)))
            try p2.send(Codec.encode(asPolicy.event("policy.mode_changed", body: ["mode": "automatic"])))
            try p2.send(Codec.encode(own2.event(ExecutorAPI.MigrationCompleted.topic, body: ["vm": 7])))
            // The same event from h2 as itself goes through.
            try p2.send(Codec.encode(own2.event(ExecutorAPI.MigrationCompleted.topic, body: ["job": "j", "vm": "b1", "from": "h2", "to": "h1"])))
            var seen: [(String, String)] = []
            _ = eventually(deadline: 10) {
                while case .event(let m, _)? = try? sub.next(timeoutMs: 100) { seen.append((m.topic ?? "", m.header.sender)) }
                return seen.contains { $0.0 == ExecutorAPI.MigrationCompleted.topic }
            }
            #expect(seen.map(\.1) == ["executor@h2"], "forwarded: \(seen)")
            #expect(proxy.snapshot.refused == 3, "refused \(proxy.snapshot.refused)")
        }
    }
}

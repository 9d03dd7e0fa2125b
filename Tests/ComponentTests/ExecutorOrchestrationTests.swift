import ExecutorCore
import ExecutorService
import Foundation
import Hypervisor
import Logging
import ServiceKit
import TestSupport
import Testing
import VIOLINProtocol
import ZeroMQ

/// A host's mesh, as far as the executor uses it: ports added and removed, MACs announced,
/// port counters. It remembers every request.
final class FakeMesh: RequestHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var got: [(type: String, body: JSONValue)] = []
    /// The VM ports it holds: added, not yet removed.
    private var held: [UInt32: Set<String>] = [:]
    /// The cap its ports report (nil: none).
    var rate: Double?
    var state: JSONValue { [:] }
    func requests(_ type: String) -> [JSONValue] { lock.withLock { got.filter { $0.type == type }.map(\.body) } }

    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        let body = request.body
        lock.withLock { got.append((request.header.msgType, body)) }
        let vni = UInt32(body["vni"]?.intValue ?? 1)
        let name = body["name"]?.stringValue ?? ""
        switch request.header.msgType {
        case MeshAPI.AddPort.msgType:
            lock.withLock { _ = held[vni, default: []].insert(name) }
            return Replies.ok(MeshAPI.AddPortReply(vni: vni, port: .init(name: name, kind: "udp", local: "127.0.0.1:40000", remote: "127.0.0.1:20000")))
        case MeshAPI.Ports.msgType:
            let violins = lock.withLock { held.sorted { $0.key < $1.key } }
                .map { MeshAPI.PortsReply.Violin(vni: $0.key, tunnel: "", switch: "", pid: 0, ports: $0.value.sorted()) }
            return Replies.ok(MeshAPI.PortsReply(violins: violins))
        case MeshAPI.RemovePort.msgType:
            lock.withLock { _ = held[vni]?.remove(name) }
            let last = SwitchAPI.PortCounters(rx: 10, tx: 10, firstRxMs: 1, lastRxMs: Int(Date().timeIntervalSince1970 * 1000))
            return Replies.ok(MeshAPI.RemovePortReply(vni: vni, port: .init(removed: name, last: last)))
        case MeshAPI.Announce.msgType:
            return Replies.ok(MeshAPI.AnnounceReply(vni: vni, announced: .init(mac: body["mac"]?.stringValue ?? "", seq: 1)))
        case MeshAPI.PortStats.msgType:
            let now = Int(Date().timeIntervalSince1970 * 1000) + 5
            return Replies.ok(MeshAPI.PortStatsReply(vni: vni, name: name, counters: .init(rx: 1, tx: 1, firstRxMs: now, lastRxMs: now, rateMbitS: rate)))
        case MeshAPI.SetPortRate.msgType:
            return Replies.ok(MeshAPI.PortRateReply(vni: vni, name: name, mbitS: body["mbit_s"]?.numberValue ?? 0, burstKB: 64))
        default:
            return nil
        }
    }
}

/// The executor's orchestration against the in-memory hypervisor: two executors, two fake
/// meshes, real ZeroMQ between them, migrations driven step by step from the test.
@Suite(.serialized) struct ExecutorOrchestrationTests {
    final class Host {
        let node: ExecutorServer
        let runtime: ServiceRuntime
        let mesh = FakeMesh()
        let meshRuntime: ServiceRuntime
        init(_ id: String, world: InMemoryHypervisor.World, bus: String, consoleIdleTimeout: Double = 30,
             libvirtURI: String? = nil, control: String? = nil, maxJobs: Int = 64, database: String = ":memory:",
             unreachableLimitS: Double? = nil, staleSweepS: Double = 15) throws {
            let uri = libvirtURI ?? "mem://\(id)"
            world.addHost(uri)
            meshRuntime = try makeRuntime("mesh", handler: mesh)
            var o = ExecutorServer.Options(hostID: id, libvirtURI: uri, migrationURI: uri,
                                         mesh: meshRuntime.endpoints[0], database: database)
            o.control = control
            if let unreachableLimitS { o.unreachableLimitS = unreachableLimitS }
            o.maxJobs = maxJobs
            o.staleSweepS = staleSweepS
            o.connect = InMemoryHypervisor.connector(world)
            o.imageDir = ExecutorOrchestrationTests.imageStore
            o.progressInterval = 0.05
            o.consoleIdleTimeout = consoleIdleTimeout
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            node = try ExecutorServer(options: o, logger: logger)
            runtime = try makeRuntime("executor", bus: bus, handler: node)
            let r = runtime
            node.publish = { r.publish($0, $1) }
        }
        var endpoint: String { runtime.endpoints[0] }
        func stop() { runtime.stop(); meshRuntime.stop(); node.stop() }
    }

    /// Two hosts with a VM `a1` on the first; the body gets a client of each executor.
    func withTwoHosts(consoleIdleTimeout: Double = 30, _ body: (InMemoryHypervisor.World, Host, Host, ServiceClient, EventSubscriber) throws -> Void) throws {
        try withBus { ctx, proxy in
            let world = InMemoryHypervisor.World()
            let h1 = try Host("h1", world: world, bus: proxy.frontendEndpoints[0], consoleIdleTimeout: consoleIdleTimeout)
            let h2 = try Host("h2", world: world, bus: proxy.frontendEndpoints[0])
            defer { h1.stop(); h2.stop() }
            let events = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: ["executor.migration_"])
            defer { events.close() }
            let c1 = ServiceClient(context: ctx, endpoint: h1.endpoint, timeoutMs: 10_000)
            defer { c1.close() }
            _ = try c1.call(ExecutorAPI.CreateVM(name: "a1", vni: 101, mac: MACAddress("52:54:00:0a:00:01")!, kernel: "/bin/sh", nicPort: 20001))
            #expect(world.state("mem://h1", "a1") == .running)
            try body(world, h1, h2, c1, events)
        }
    }

    func job(_ c: ServiceClient, _ id: String, until done: @escaping (ExecutorAPI.JobReport) -> Bool) throws -> ExecutorAPI.JobReport? {
        var last: ExecutorAPI.JobReport?
        _ = try eventually(deadline: 20) {
            last = try? c.call(ExecutorAPI.Job(job: id))
            return last.map(done) ?? false
        }
        return last
    }

    /// An image store with one image, `tiny` (its files are not booted by the in-memory hypervisor).
    static let imageStore: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-images-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: dir + "/tiny", withIntermediateDirectories: true)
        try? Data("kernel".utf8).write(to: URL(fileURLWithPath: dir + "/tiny/vmlinuz"))
        try? Data("initrd".utf8).write(to: URL(fileURLWithPath: dir + "/tiny/initrd.gz"))
        try? Data("console=ttyS0 quiet\n".utf8).write(to: URL(fileURLWithPath: dir + "/tiny/cmdline"))
        try? FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        return dir
    }()

    /// VMs from the host's image store, never from a path the request names: the image's
    /// kernel, initrd and command line go into the domain; unknown and path-like names are refused.
    @Test func vmsAreCreatedFromTheImageStore() throws {
        try withTwoHosts { world, _, _, c1, _ in
            #expect(try c1.call(ExecutorAPI.Images()).images == [.init(name: "tiny", kind: "kernel")], "an image without vmlinuz is not one")
            var r = ExecutorAPI.CreateVM(name: "b1", vni: 102, mac: MACAddress("52:54:00:0b:00:01")!, kernel: "", nicPort: 20002)
            r.image = "tiny"
            _ = try c1.call(r)
            let xml = try InMemoryHypervisor(world: world, uri: "mem://h1").xml("b1")
            let store = ExecutorOrchestrationTests.imageStore
            #expect(xml.contains("\(store)/tiny/vmlinuz") && xml.contains("\(store)/tiny/initrd.gz") && xml.contains("console=ttyS0 quiet"), "\(xml)")
            for (image, code) in [("nope", ErrorCode.notFound), ("../tiny", .invalidBody), (".hidden", .invalidBody), ("empty", .notFound)] {
                r.name = "b2"; r.image = image
                do { _ = try c1.call(r); Issue.record("image \(image) accepted") } catch let failure as ServiceClient.Failure {
                    guard case .error(let e) = failure else { Issue.record("\(failure)"); continue }
                    #expect(e.code == code, "image \(image): \(e)")
                }
            }
            var both = r
            both.image = "tiny"; both.kernel = "/bin/sh"
            #expect(throws: ServiceClient.Failure.self) { try c1.call(both) }
        }
    }

    /// An executor restarted while libvirt still migrates a VM (libvirtd drives a peer-to-peer
    /// migration itself) finds the job in its journal and waits for libvirt — past its limit
    /// for an unanswering libvirt, never failing the job meanwhile — and then ends it as the
    /// migration would have: the network cut over, the copy_storage source volume deleted,
    /// executor.migration_completed published (the policy's inventory follows it).
    @Test func aRecoveredJobWaitsForLibvirtAndEndsAsTheMigrationWould() throws {
        try withBus { ctx, proxy in
            let world = InMemoryHypervisor.World()
            let database = FileManager.default.temporaryDirectory.appendingPathComponent("violin-journal-\(UUID().uuidString.prefix(8)).db").path
            defer { try? FileManager.default.removeItem(atPath: database) }
            let h2 = try Host("h2", world: world, bus: proxy.frontendEndpoints[0])
            defer { h2.stop() }
            // The VM and its volume on h1, and libvirt migrating it to h2 with no executor watching.
            world.addHost("mem://h1")
            let source = try InMemoryHypervisor(world: world, uri: "mem://h1")
            _ = try source.create(xml: VMSpec(name: "a1", vni: 101, mac: "52:54:00:0a:00:01", kernel: "/bin/sh", nicPort: 20001).domainXML)
            _ = try source.createVolume(pool: "violin", name: "a1.img", capacityMiB: 8)
            let libvirt = Thread { try? source.migrate("a1", to: "mem://h2", options: MigrationOptions()) }
            libvirt.start()
            try #require(world.waitForMigration("a1", timeout: 20))
            var unfinished = Journal.Job(id: "job-recover1", vm: "a1", fromHost: "h1", toHost: "h2", toExecutor: h2.endpoint)
            unfinished.destinationURI = "mem://h2"
            unfinished.destinationMesh = h2.meshRuntime.endpoints[0]
            unfinished.copyStorage = true
            unfinished.state = .migrating
            try Journal(path: database).save(unfinished)

            let h1 = try Host("h1", world: world, bus: proxy.frontendEndpoints[0], database: database, unreachableLimitS: 0.3)
            defer { h1.stop() }
            let events = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: ["executor."])
            defer { events.close() }
            let c1 = ServiceClient(context: ctx, endpoint: h1.endpoint, timeoutMs: 10_000)
            defer { c1.close() }
            h1.node.recover()
            // Five times the limit: the job is still waiting for libvirt, not failed.
            let watchUntil = Date().addingTimeInterval(1.5)
            while Date() < watchUntil {
                let state = try c1.call(ExecutorAPI.Job(job: "job-recover1")).state
                try #require(state == "migrating", "the job became \(state) while libvirt still migrated")
                world.progress("a1", iteration: 1, processed: 1 << 20, remaining: 1 << 19)
                usleep(100_000)
            }
            world.finish("a1")
            let done = try job(c1, "job-recover1") { $0.state == "completed" }
            #expect(done?.state == "completed", "\(String(describing: done))")
            let completed = try events.waitFor(timeoutMs: 10_000) { $0.header.msgType == ExecutorAPI.MigrationCompleted.topic }
            #expect(completed?.body["vm"] == "a1" && completed?.body["to"] == "h2", "\(String(describing: completed?.body))")
            #expect(try events.waitFor(timeoutMs: 10_000) { $0.header.msgType == ExecutorAPI.JobRecovered.topic } != nil)
            #expect(h2.mesh.requests(MeshAPI.Announce.msgType).count == 1, "the MAC was not announced at the destination")
            let removed = h1.mesh.requests(MeshAPI.RemovePort.msgType)
            #expect(removed.count == 1 && removed.first?["forward_to"] == .string(h2.meshRuntime.endpoints[0]), "the source port was not retired with forwarding: \(removed)")
            #expect(!world.volumes("mem://h1").contains("a1.img"), "the copy_storage source volume is left")
            #expect(world.state("mem://h2", "a1") == .running && world.state("mem://h1", "a1") == .absent)
            libvirt.cancel()
        }
    }

    /// A VM that goes without the executor's knowing (a guest lost in a post-copy, killed
    /// outside it) leaves its port on the mesh: found in two looks in a row, it is removed —
    /// not only in the looks after a start. A running VM's port stays.
    @Test func aStalePortIsRemovedWhenever() throws {
        try withBus { ctx, proxy in
            let world = InMemoryHypervisor.World()
            let h1 = try Host("h1", world: world, bus: proxy.frontendEndpoints[0], staleSweepS: 0.1)
            defer { h1.stop() }
            let c1 = ServiceClient(context: ctx, endpoint: h1.endpoint, timeoutMs: 10_000)
            defer { c1.close() }
            h1.node.recover()
            for (vm, mac) in [("a1", "52:54:00:0a:00:01"), ("a2", "52:54:00:0a:00:02")] {
                _ = try c1.call(ExecutorAPI.CreateVM(name: vm, vni: 101, mac: MACAddress(mac)!, kernel: "/bin/sh", nicPort: 20001))
            }
            // Well after the start's looks: many looks have found nothing stale.
            try #require(try eventually(deadline: 20) { h1.mesh.requests(MeshAPI.Ports.msgType).count >= 6 })
            try InMemoryHypervisor(world: world, uri: "mem://h1").destroy("a1")
            try #require(try eventually(deadline: 20) { !h1.mesh.requests(MeshAPI.RemovePort.msgType).isEmpty }, "a1's port stayed")
            let removed = h1.mesh.requests(MeshAPI.RemovePort.msgType).compactMap { $0["name"]?.stringValue }
            #expect(removed == ["vm-a1"], "\(removed)")
        }
    }

    @Test func aMigrationMovesTheVMAndCutsTheNetworkOver() throws {
        try withTwoHosts { world, h1, h2, c1, events in
            let started = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint)))
            #expect(started.state == "queued")
            try #require(world.waitForMigration("a1", timeout: 20), "libvirt was never asked to migrate")
            #expect(h2.mesh.requests(MeshAPI.AddPort.msgType).count == 1, "the destination's port was prepared first")
            world.progress("a1", iteration: 1, processed: 1 << 20, remaining: 1 << 19)
            #expect(try events.waitFor(timeoutMs: 10_000) { $0.header.msgType == ExecutorAPI.MigrationProgress.topic } != nil)
            world.finish("a1")
            let done = try job(c1, started.job) { $0.state == "completed" }
            #expect(done?.state == "completed" && done?.downtimeMs == 30, "\(String(describing: done))")
            #expect(world.state("mem://h2", "a1") == .running && world.state("mem://h1", "a1") == .absent)
            // The cut-over: announced at the destination, the source port removed with forwarding.
            #expect(h2.mesh.requests(MeshAPI.Announce.msgType).first?["mac"] == "52:54:00:0a:00:01")
            let removed = h1.mesh.requests(MeshAPI.RemovePort.msgType)
            #expect(removed.count == 1 && removed[0]["forward_to"]?.stringValue == h2.meshRuntime.endpoints[0])
            #expect(h2.mesh.requests(MeshAPI.RemovePort.msgType).isEmpty)
            #expect(h2.mesh.requests(MeshAPI.SetPortRate.msgType).isEmpty, "a cap set where the source port had none")
            let completed = try events.waitFor(timeoutMs: 10_000) { $0.header.msgType == ExecutorAPI.MigrationCompleted.topic }
            #expect(completed?.body["to"] == "h2" && completed?.body["vm"] == "a1")
        }
    }

    /// A VM whose port is capped (the network lever) keeps its cap at the destination: the
    /// destination's port gets it as it is prepared, before the VM arrives.
    @Test func aCapGoesWithItsVM() throws {
        try withTwoHosts { world, h1, h2, c1, _ in
            h1.mesh.rate = 20
            let started = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint)))
            try #require(world.waitForMigration("a1", timeout: 20), "libvirt was never asked to migrate")
            let capped = h2.mesh.requests(MeshAPI.SetPortRate.msgType)
            #expect(capped.count == 1 && capped.first?["name"] == "vm-a1" && capped.first?["mbit_s"]?.numberValue == 20, "\(capped)")
            world.finish("a1")
            #expect(try job(c1, started.job) { $0.state == "completed" }?.state == "completed")
        }
    }

    @Test func aFailedMigrationLeavesTheVMAtTheSourceAndTheDestinationClean() throws {
        try withTwoHosts { world, h1, h2, c1, events in
            let started = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint)))
            try #require(world.waitForMigration("a1", timeout: 20))
            world.finish("a1", error: "connection reset")
            let done = try job(c1, started.job) { $0.state == "failed" }
            #expect(done?.error == "libvirt: connection reset")
            #expect(world.state("mem://h1", "a1") == .running && world.state("mem://h2", "a1") == .absent)
            #expect(h2.mesh.requests(MeshAPI.RemovePort.msgType).count == 1, "the destination's prepared port is removed")
            #expect(h1.mesh.requests(MeshAPI.RemovePort.msgType).isEmpty, "the source keeps its port")
            #expect(try events.waitFor(timeoutMs: 10_000) { $0.header.msgType == ExecutorAPI.MigrationFailed.topic } != nil)
        }
    }

    @Test func postCopyIsJournaledAndCannotBeCancelled() throws {
        try withTwoHosts { world, _, h2, c1, _ in
            var o = ExecutorAPI.MigrationOptions(toExecutor: h2.endpoint)
            o.postcopy = true
            let started = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: o))
            try #require(world.waitForMigration("a1", timeout: 20))
            world.progress("a1", iteration: 2, processed: 1 << 20, remaining: 1 << 18)
            let inPostCopy = try job(c1, started.job) { $0.state == "postcopy" }
            #expect(inPostCopy?.state == "postcopy" && world.migration("a1").postcopy)
            #expect(throws: ServiceClient.Failure.self) { try c1.call(ExecutorAPI.Cancel(job: started.job)) }
            world.finish("a1")
            #expect(try job(c1, started.job) { $0.state == "completed" }?.state == "completed")
            #expect(world.state("mem://h2", "a1") == .running)
        }
    }

    @Test func cancelAbortsAPreCopyMigration() throws {
        try withTwoHosts { world, _, h2, c1, _ in
            let started = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint)))
            try #require(world.waitForMigration("a1", timeout: 20))
            #expect(try c1.call(ExecutorAPI.Cancel(job: started.job)).state == "cancelling")
            let done = try job(c1, started.job) { $0.state == "cancelled" }
            #expect(done?.error == "cancelled")
            #expect(world.state("mem://h1", "a1") == .running && world.state("mem://h2", "a1") == .absent)
        }
    }
}

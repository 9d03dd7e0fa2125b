import Foundation
import Logging
import Testing
import Hypervisor
import MonitorService
import ServiceKit
import VIOLINProtocol
import ZeroMQ

@Suite struct MonitorTests {
    /// violin-monitor's logic over real ZeroMQ and libvirt's test driver: samples with deltas
    /// on the bus, balloon and CPU weight through requests, clear errors.
    @Test func samplesAndActionsThroughLibvirt() throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let node = try MonitorServer(interval: 0.1, logger: logger) { try LibvirtHypervisor(uri: "test:///default") }
        try withBus { ctx, proxy in try sampling(node, ctx, proxy, topics: ["monitor."]) { sub, runtime in
            let appeared = try #require(try sub.waitFor(timeoutMs: 5000) { $0.topic == "monitor.vm_appeared" })
            #expect(appeared.body["vm"] == "test")
            // The second sample has a CPU figure computed from CPU-time deltas.
            let sampled = try #require(try sub.waitFor(timeoutMs: 5000) { m in
                guard m.topic == "monitor.sampled", case .array(let vms)? = m.body["vms"] else { return false }
                return vms.contains { $0["cpu_percent"]?.numberValue != nil }
            })
            guard case .array(let vms)? = sampled.body["vms"], let vm = vms.first(where: { $0["name"] == "test" }) else {
                Issue.record("no sample of the test domain"); return
            }
            let cpu = try #require(vm["cpu_percent"]?.numberValue)
            #expect(cpu >= 0 && cpu <= 100)
            #expect((sampled.body["host"]?["cpus"]?.intValue ?? 0) > 0)
            let maxMB = try #require(vm["max_memory_mb"]?.intValue)

            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 3000)
            defer { client.close() }
            let balloon = try client.call("set_balloon_request", body: ["vm": "test", "memory_mb": .number(Double(maxMB / 2))])
            #expect(balloon["target_mb"]?.intValue == maxMB / 2 && balloon["memory_mb"]?.intValue == maxMB / 2)
            // Read back through libvirt, on the sampler's own connection.
            #expect(try sub.waitFor(timeoutMs: 5000) { m in
                guard m.topic == "monitor.sampled", case .array(let vms)? = m.body["vms"] else { return false }
                return vms.contains { $0["name"] == "test" && $0["memory_mb"]?.intValue == maxMB / 2 }
            } != nil)
            // libvirt's test driver keeps a fixed weight of 50: the reply is what libvirt reports.
            let weight = try client.call("set_cpu_weight_request", body: ["vm": "test", "weight": 200])
            #expect(weight["weight"]?.intValue == 50 && weight["vm"] == "test", "\(weight)")
            for (type, body, code) in [("set_balloon_request", ["vm": "nope", "memory_mb": 10] as JSONValue, ErrorCode.notFound),
                                       ("set_cpu_weight_request", ["vm": "nope", "weight": 10], .notFound),
                                       ("set_balloon_request", ["vm": "test", "memory_mb": .number(Double(maxMB * 8))], .invalidBody),
                                       ("set_cpu_weight_request", ["vm": "test", "weight": 0], .invalidBody),
                                       ("set_balloon_request", ["memory_mb": 10], .invalidBody)] {
                let reply = try client.send(type, body: body)
                #expect(reply.body["code"] == .string(code.rawValue), "\(type) \(body)")
            }
            let samples = try client.call("samples_request")
            let latest = try #require(samples["vms"]?.items.first { $0["name"] == "test" }, "\(samples)")
            #expect(latest["memory_mb"]?.intValue == maxMB / 2 && latest["max_memory_mb"]?.intValue == maxMB, "\(latest)")
        } }
    }
}

/// `node` serving and sampling on the bus, with a subscriber of `topics` made before it starts.
func sampling(_ node: MonitorServer, _ ctx: ZMQContext, _ proxy: EventProxy, topics: [String],
              _ body: (EventSubscriber, ServiceRuntime) throws -> Void) throws {
    let sub = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: topics)
    defer { sub.close() }
    let runtime = try makeRuntime("monitor", bus: proxy.frontendEndpoints[0], handler: node)
    defer { runtime.stop() }
    node.publish = { runtime.publish($0, $1) }
    try node.start()
    defer { node.stop() }
    try body(sub, runtime)
}

/// A mesh that answers `ports_request` and `port_stats_request` for VM ports whose counters
/// grow by a fixed step at every read (what the monitor turns into network figures).
final class CountingMesh: RequestHandler, @unchecked Sendable {
    var state: JSONValue { [:] }
    private let lock = NSLock()
    private var reads = 0
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try table.handle(request) }
    private lazy var table: RequestTable = {
        var t = RequestTable()
        t.on(MeshAPI.Ports.self) { _ in
            MeshAPI.PortsReply(violins: [.init(vni: 5, tunnel: "10.0.0.1:4789", switch: "ipc:///x", pid: 1, ports: ["probe", "vm-test"])])
        }
        t.on(MeshAPI.PortStats.self) { [unowned self] r in
            guard r.name == "vm-test" else { throw ProtocolError(.notFound, "only vm-test is read") }
            self.lock.lock()
            self.reads += 1
            let n = self.reads
            self.lock.unlock()
            // The port received (from the VM) 1 MB per read; it sent (to the VM) 20 frames, 3000 bytes.
            return MeshAPI.PortStatsReply(vni: 5, name: r.name, counters: SwitchAPI.PortCounters(
                rx: 10 * n, tx: 20, firstRxMs: 1, lastRxMs: 2, rxBytes: 1_000_000 * n, txBytes: 3000))
        }
        return t
    }()
}

@Suite struct MonitorFiguresTests {
    /// The levers' figures in `monitor.sampled`: the guest's memory from its balloon statistics
    /// (libvirt's test driver reports half its balloon unused and usable), the host's free memory, and the
    /// VM's network from its switch port read through the mesh — the port's rx is what the VM
    /// sent; a port that is no VM's is not read.
    @Test func guestMemoryHostFreeMemoryAndNetwork() throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let node = try MonitorServer(interval: 0.1, logger: logger) {
            let hv = try LibvirtHypervisor(uri: "test:///default")
            hv.readsGuestMemory = true
            return hv
        }
        let fake = CountingMesh()
        try withBus { ctx, proxy in
            let mesh = try makeRuntime("mesh", handler: fake)
            defer { mesh.stop() }
            node.mesh = mesh.endpoints[0]
            try sampling(node, ctx, proxy, topics: ["monitor.sampled"]) { sub, _ in
                let sampled = try #require(try sub.waitFor(timeoutMs: 5000) { m in
                    m.body["vms"]?.items.contains { $0["name"] == "test" && $0["net"]?["tx_mbit_s"]?.numberValue != nil } == true
                })
                let vm = try #require(sampled.body["vms"]?.items.first { $0["name"] == "test" })
                // The test driver reports half the balloon unused and usable (another test may be
                // ballooning the same shared test domain meanwhile: within the balloon, not equal).
                let balloon = try #require(vm["memory_mb"]?.intValue)
                let unused = vm["guest_memory"]?["unused_mb"]?.intValue ?? -1, available = vm["guest_memory"]?["available_mb"]?.intValue ?? -1
                #expect((1...balloon).contains(unused) && (1...balloon).contains(available), "\(vm)")
                #expect(vm["guest_memory"]?["swap_in_kb_s"]?.numberValue == 0, "a rate once there are two readings: \(vm)")
                let net = try #require(vm["net"])
                #expect((net["tx_bytes"]?.intValue ?? 0) >= 2_000_000 && net["rx_bytes"]?.intValue == 3000 && net["rx_packets"]?.intValue == 20, "\(net)")
                #expect((net["tx_mbit_s"]?.numberValue ?? 0) > 0 && net["rx_mbit_s"]?.numberValue == 0, "\(net)")
                #expect((sampled.body["host"]?["free_memory_mb"]?.intValue).map { $0 >= 0 } == true, "\(sampled.body)")
                // The policy's reading of it, range-checked.
                let readings = MonitorAPI.Sampled.leverReadings(sampled.body)
                #expect(readings.first { $0.vm == "test" }?.guest?.unusedMB == unused && readings.first?.net?.txMbitS != nil)
            }
        }
    }

    /// Free memory: the hypervisor's, or what the guests' balloons leave of the memory offered.
    @Test func freeMemoryOfWhatTheHostOffers() {
        let host = HostInfo(cpus: 2, memoryKiB: 8 << 20, model: "x", freeKiB: 6 << 20)
        #expect(MonitorServer.freeMemoryMB(host: host, guestsKiB: 300 << 10, offeredMB: 0) == 6144)
        #expect(MonitorServer.freeMemoryMB(host: host, guestsKiB: 300 << 10, offeredMB: 1024) == 724)
        #expect(MonitorServer.freeMemoryMB(host: host, guestsKiB: 2048 << 10, offeredMB: 1024) == 0)
    }

    /// Numbers out of range in a sample are not read as figures.
    @Test func leverReadingsRefuseNumbersOutOfRange() {
        let body: JSONValue = ["host": ["free_memory_mb": -5], "vms": [
            ["name": "a", "memory_mb": 128, "max_memory_mb": 256, "guest_memory": ["unused_mb": 1e300, "swap_in_kb_s": -1], "net": ["tx_bytes": 1]],
            ["name": "b", "memory_mb": -1, "max_memory_mb": 256],
        ]]
        let r = MonitorAPI.Sampled.leverReadings(body)
        #expect(r.map(\.vm) == ["a"] && r[0].guest?.unusedMB == nil && r[0].guest?.swapInKBPerS == nil && r[0].net == nil)
        #expect(MonitorAPI.Sampled.hostFreeMemoryMB(body) == nil)
    }
}

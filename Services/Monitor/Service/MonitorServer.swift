import Foundation
import Hypervisor
import Logging
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// Metrics collection on one host (PROTOCOL.md §8.3): samples the hypervisor on a period and
/// publishes them; sets balloon targets and CPU weights on request. The sampling thread and
/// the request thread each have their own libvirt connection.
public final class MonitorServer: ServiceLogic, @unchecked Sendable {
    private let requests: Hypervisor
    private let makeSampler: () throws -> Hypervisor
    private let interval: Double
    private let logger: Logger
    /// Where the VMs' network figures come from: the host's mesh (its switch ports), reached with
    /// the node's key pair; empty: none.
    public var mesh = ""
    public var keyPair: CurveKeyPair?
    /// Memory the host offers to VMs, MB (0: what the hypervisor reports): with it, the free
    /// memory published is what is left of it after the guests' balloons.
    public var memoryMB = 0
    private let context = ZMQContext()
    private let lock = NSLockLite()
    private var latest = MonitorAPI.SamplesReply(host: [:], vms: [])
    /// The latest round as read (for the Prometheus exposition): the host's figures and each VM's.
    private var latestRound: (cpus: Int, memoryMB: Int, freeMB: Int?, vms: [VMSample])?
    private let worker = WorkerThread()
    public var publish: (String, JSONValue) -> Void = { _, _ in }

    /// `connect` opens a hypervisor connection; it is called once for requests, once for sampling.
    public init(interval: Double, logger: Logger, connect: @escaping () throws -> Hypervisor) throws {
        requests = try connect()
        makeSampler = connect
        self.interval = interval
        self.logger = logger
    }

    public func start() throws {
        let hv = try makeSampler()
        worker.start(name: "monitor-sample") { [self] in self.sampleLoop(hv) }
    }

    public func stop() {
        worker.stop()
        context.shutdown()
        context.terminate()
    }

    /// Every VM port's counters on this host, by VM name (a port `vm-<name>`), through the mesh;
    /// empty when there is no mesh or it does not answer.
    func portCounters() -> [String: NetCounters] {
        guard !mesh.isEmpty else { return [:] }
        let security = keyPair.map { ClientSecurity(keyPair: $0, serverPublicKey: $0.publicKey) }
        let client = ServiceClient(context: context, endpoint: mesh, security: security, sender: "monitor", timeoutMs: 1000)
        defer { client.close() }
        guard let ports = try? client.call(MeshAPI.Ports(), retries: 0) else { return [:] }
        var out: [String: NetCounters] = [:]
        for v in ports.violins {
            for name in v.ports where name.hasPrefix(MeshAPI.vmPortPrefix) {
                guard let c = try? client.call(MeshAPI.PortStats(vni: v.vni, name: name), retries: 0).counters else { continue }
                // The port's rx is what the VM sent; its tx what the VM got.
                out[String(name.dropFirst(MeshAPI.vmPortPrefix.count))] = NetCounters(
                    txBytes: UInt64(max(0, c.rxBytes ?? 0)), rxBytes: UInt64(max(0, c.txBytes ?? 0)),
                    txPackets: UInt64(max(0, c.rx)), rxPackets: UInt64(max(0, c.tx)))
            }
        }
        return out
    }

    /// Free memory as published: the hypervisor's, or (with `memoryMB`) what the guests leave of
    /// the memory offered, whichever is less.
    public static func freeMemoryMB(host: HostInfo, guestsKiB: UInt64, offeredMB: Int) -> Int? {
        let real = host.freeKiB.map { Int($0 / 1024) }
        guard offeredMB > 0 else { return real }
        let left = max(0, offeredMB - Int(guestsKiB / 1024))
        return real.map { min($0, left) } ?? left
    }

    private func sampleLoop(_ hv: Hypervisor) {
        var sampler = Sampler()
        let waits = VCPUWaitReader()
        var items = [PollItem(fd: worker.waker.readFD)]
        while !worker.isStopping {
            do {
                let host = try hv.host()
                var domains = try hv.domains()
                let vcpu = waits.times(uuids: domains.filter(\.running).map(\.uuid))
                for i in domains.indices { domains[i].vcpuWaitNs = vcpu[domains[i].uuid]?.waitNs; domains[i].vcpuRunNs = vcpu[domains[i].uuid]?.runNs }
                let round = sampler.sample(domains, atNs: UInt64(monotonicMillis()) * 1_000_000, net: portCounters())
                for vm in round.appeared { emit(MonitorAPI.VMAppeared(vm: vm)) }
                for vm in round.disappeared { emit(MonitorAPI.VMDisappeared(vm: vm)) }
                let guests = domains.filter(\.running).reduce(UInt64(0)) { $0 + $1.memoryKiB }
                let sampled = MonitorAPI.Sampled(hostCPUs: host.cpus, hostMemoryMB: memoryMB > 0 ? memoryMB : Int(host.memoryKiB / 1024),
                                                 hostFreeMemoryMB: Self.freeMemoryMB(host: host, guestsKiB: guests, offeredMB: memoryMB),
                                                 vms: round.samples.map(Self.published))
                lock.withLock {
                    latest = MonitorAPI.SamplesReply(sampled)
                    latestRound = (sampled.hostCPUs, sampled.hostMemoryMB, sampled.hostFreeMemoryMB, round.samples)
                }
                emit(sampled)
            } catch {
                logger.warning("sampling failed", metadata: ["error": "\(error)"])
            }
            _ = try? poll(&items, timeoutMs: Int(interval * 1000))
            if items[0].readable { worker.waker.drain() }
        }
    }

    /// One VM's sample as `monitor.sampled` carries it.
    static func published(_ s: VMSample) -> MonitorAPI.VMSample {
        MonitorAPI.VMSample(name: s.name, uuid: s.uuid, cpuPercent: s.cpuPercent, demandPercent: s.demandPercent, vcpus: s.vcpus,
                            memoryMB: Int(s.memoryKiB / 1024), maxMemoryMB: Int(s.maxMemoryKiB / 1024),
                            guest: s.guest.map { g in
                                MonitorAPI.GuestMemory(unusedMB: g.unusedKiB.map { Int($0 / 1024) }, availableMB: g.availableKiB.map { Int($0 / 1024) },
                                                       swapInKBPerS: g.swapInKiBPerS, swapOutKBPerS: g.swapOutKiBPerS,
                                                       majorFaultsPerS: g.majorFaultsPerS)
                            },
                            net: s.net.map { n in
                                MonitorAPI.Net(txBytes: Int(clamping: n.counters.txBytes), rxBytes: Int(clamping: n.counters.rxBytes),
                                               txPackets: Int(clamping: n.counters.txPackets), rxPackets: Int(clamping: n.counters.rxPackets),
                                               txMbitS: n.txMbitS, rxMbitS: n.rxMbitS)
                            })
    }

    public var state: JSONValue { lock.withLock { ["vms": .number(Double(latest.vms.count))] } }

    /// The latest sample as Prometheus series: the host's, and per VM its CPU, memory and network.
    public func collectMetrics(into m: MetricSet) {
        guard let r = lock.withLock({ latestRound }) else { return }
        m.gauge("violin_host_cpus", value: Double(r.cpus), help: "CPUs of the host.")
        m.gauge("violin_host_memory_bytes", value: Double(r.memoryMB) * 1_048_576, help: "Memory the host offers to VMs.")
        if let free = r.freeMB {
            m.gauge("violin_host_memory_free_bytes", value: Double(free) * 1_048_576, help: "Memory the host's VMs leave free.")
        }
        m.gauge("violin_host_vms", value: Double(r.vms.count), help: "VMs running on the host.")
        for vm in r.vms {
            let l = [("vm", vm.name)]
            m.counter("violin_vm_cpu_seconds_total", l, total: Double(vm.cpuTimeNs) / 1e9, help: "CPU time the VM's vCPUs used.")
            if let p = vm.cpuPercent {
                m.gauge("violin_vm_cpu_ratio", l, value: p / 100, help: "Share of its vCPUs the VM used over the last sample interval (0-1).")
            }
            if let p = vm.demandPercent {
                m.gauge("violin_vm_cpu_demand_ratio", l, value: p / 100, help: "Share of its vCPUs the VM used or waited for over the last sample interval (0-1).")
            }
            m.gauge("violin_vm_vcpus", l, value: Double(vm.vcpus), help: "The VM's vCPUs.")
            m.gauge("violin_vm_memory_bytes", l, value: Double(vm.memoryKiB) * 1024, help: "Memory the VM has now (its balloon's target).")
            m.gauge("violin_vm_memory_max_bytes", l, value: Double(vm.maxMemoryKiB) * 1024, help: "The most memory the VM may have.")
            if let avail = vm.guest?.availableKiB {
                m.gauge("violin_vm_memory_available_bytes", l, value: Double(avail) * 1024, help: "Memory the guest says it can still use.")
            }
            if let net = vm.net?.counters {
                m.counter("violin_vm_network_transmit_bytes_total", l, total: Double(net.txBytes), help: "Bytes the VM sent through its switch port.")
                m.counter("violin_vm_network_receive_bytes_total", l, total: Double(net.rxBytes), help: "Bytes the VM received through its switch port.")
            }
        }
    }

    private func failure(_ e: HypervisorError) -> ProtocolError {
        switch e.kind {
        case .notFound: ProtocolError(.notFound, e.message)
        case .invalid: ProtocolError(.invalidBody, e.message)
        case .unsupported, .failed: ProtocolError(.unavailable, e.message)
        }
    }

    /// The requests of PROTOCOL.md §8.3, one handler per type.
    private lazy var table: RequestTable = {
        var t = RequestTable()
        t.on(MonitorAPI.Samples.self) { [unowned self] _ in self.lock.withLock { self.latest } }
        t.on(MonitorAPI.SetBalloon.self) { [unowned self] r in
            do {
                let kib = try self.requests.setMemory(r.vm, kib: UInt64(r.memoryMB) * 1024)
                // The guest's balloon driver gets there over the next moments; samples show it.
                return MonitorAPI.BalloonReply(vm: r.vm, targetMB: r.memoryMB, memoryMB: Int(kib / 1024))
            } catch let e as HypervisorError { throw self.failure(e) }
        }
        t.on(MonitorAPI.SetCPUWeight.self) { [unowned self] r in
            do {
                let now = try self.requests.setCPUWeight(r.vm, UInt64(r.weight))
                return MonitorAPI.CPUWeightReply(vm: r.vm, weight: Int(clamping: now))
            } catch let e as HypervisorError { throw self.failure(e) }
        }
        return t
    }()

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try table.handle(request) }
}

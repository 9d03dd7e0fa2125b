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
    private let lock = NSLockLite()
    private var latest = MonitorAPI.SamplesReply(host: [:], vms: [])
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

    public func stop() { worker.stop() }

    private func sampleLoop(_ hv: Hypervisor) {
        var sampler = Sampler()
        var items = [PollItem(fd: worker.waker.readFD)]
        while !worker.isStopping {
            do {
                let host = try hv.host()
                let round = sampler.sample(try hv.domains(), atNs: UInt64(monotonicMillis()) * 1_000_000)
                for vm in round.appeared { emit(MonitorAPI.VMAppeared(vm: vm)) }
                for vm in round.disappeared { emit(MonitorAPI.VMDisappeared(vm: vm)) }
                let sampled = MonitorAPI.Sampled(hostCPUs: host.cpus, hostMemoryMB: Int(host.memoryKiB / 1024), vms: round.samples.map { s in
                    MonitorAPI.VMSample(name: s.name, uuid: s.uuid, cpuPercent: s.cpuPercent, vcpus: s.vcpus,
                                        memoryMB: Int(s.memoryKiB / 1024), maxMemoryMB: Int(s.maxMemoryKiB / 1024))
                })
                lock.withLock { latest = MonitorAPI.SamplesReply(sampled) }
                emit(sampled)
            } catch {
                logger.warning("sampling failed", metadata: ["error": "\(error)"])
            }
            _ = try? poll(&items, timeoutMs: Int(interval * 1000))
            if items[0].readable { worker.waker.drain() }
        }
    }

    public var state: JSONValue { lock.withLock { ["vms": .number(Double(latest.vms.count))] } }

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

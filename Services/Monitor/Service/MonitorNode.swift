import Foundation
import Hypervisor
import Logging
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// Metrics collection on one host (PROTOCOL.md §8.3): samples the hypervisor on a period and
/// publishes them; sets balloon targets and CPU weights on request. The sampling thread and
/// the request thread each have their own libvirt connection.
public final class MonitorNode: ServiceNode, @unchecked Sendable {
    private let requests: Hypervisor
    private let makeSampler: () throws -> Hypervisor
    private let interval: Double
    private let logger: Logger
    private let lock = NSLockLite()
    private var latest: JSONValue = ["host": [:], "vms": []]
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
                for vm in round.appeared { publish("vm_appeared", ["vm": .string(vm)]) }
                for vm in round.disappeared { publish("vm_disappeared", ["vm": .string(vm)]) }
                let body: JSONValue = [
                    "host": ["cpus": .number(Double(host.cpus)), "memory_mb": .number(Double(host.memoryKiB / 1024))],
                    "vms": .array(round.samples.map { s in
                        ["name": .string(s.name), "uuid": .string(s.uuid),
                         "cpu_percent": s.cpuPercent.map { .number(($0 * 10).rounded() / 10) } ?? .null,
                         "vcpus": .number(Double(s.vcpus)), "memory_mb": .number(Double(s.memoryKiB / 1024)),
                         "max_memory_mb": .number(Double(s.maxMemoryKiB / 1024))]
                    }),
                ]
                lock.withLock { latest = body }
                publish("sampled", body)
            } catch {
                logger.warning("sampling failed", metadata: ["error": "\(error)"])
            }
            _ = try? poll(&items, timeoutMs: Int(interval * 1000))
            if items[0].readable { worker.waker.drain() }
        }
    }

    public var state: JSONValue { lock.withLock { ["vms": .number(Double((latest["vms"].flatMap { if case .array(let a) = $0 { a.count } else { nil } }) ?? 0))] } }

    private func failure(_ e: HypervisorError) -> ProtocolError {
        switch e.kind {
        case .notFound: ProtocolError(.notFound, e.message)
        case .invalid: ProtocolError(.invalidBody, e.message)
        case .unsupported, .failed: ProtocolError(.unavailable, e.message)
        }
    }

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        let b = request.body
        switch request.header.msgType {
        case "samples_request":
            return Replies.ok(lock.withLock { latest.objectValue ?? [:] })
        case "set_balloon_request":
            guard let vm = b["vm"]?.stringValue, !vm.isEmpty else { throw ProtocolError(.invalidBody, "vm (a name) is required") }
            guard let mb = b["memory_mb"]?.intValue, mb > 0, mb < 1 << 30 else {
                throw ProtocolError(.invalidBody, "memory_mb must be a positive integer")
            }
            do {
                let kib = try requests.setMemory(vm, kib: UInt64(mb) * 1024)
                // The guest's balloon driver gets there over the next moments; samples show it.
                return Replies.ok(["vm": .string(vm), "target_mb": .number(Double(mb)), "memory_mb": .number(Double(kib / 1024))])
            } catch { throw failure(error) }
        case "set_cpu_weight_request":
            guard let vm = b["vm"]?.stringValue, !vm.isEmpty else { throw ProtocolError(.invalidBody, "vm (a name) is required") }
            guard let w = b["weight"]?.intValue, (1...10_000).contains(w) else {
                throw ProtocolError(.invalidBody, "weight must be an integer 1-10000")
            }
            do {
                let now = try requests.setCPUWeight(vm, UInt64(w))
                return Replies.ok(["vm": .string(vm), "weight": .number(Double(now))])
            } catch { throw failure(error) }
        default:
            return nil
        }
    }
}

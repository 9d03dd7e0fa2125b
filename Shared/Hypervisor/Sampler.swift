/// Turns successive hypervisor readings into per-VM CPU use. Pure.
public struct VMSample: Equatable, Sendable {
    public let name: String
    public let uuid: String
    /// CPU use in % of the VM's vCPUs over the last interval; nil on the first reading.
    public let cpuPercent: Double?
    public let vcpus: Int
    public let memoryKiB: UInt64
    public let maxMemoryKiB: UInt64
}

public struct Sampler: Sendable {
    private var last: [String: (cpuNs: UInt64, atNs: UInt64)] = [:]

    public init() {}

    public struct Round: Equatable, Sendable {
        public let samples: [VMSample]
        public let appeared: [String]
        public let disappeared: [String]
    }

    /// One reading of every domain at monotonic time `atNs`.
    public mutating func sample(_ domains: [DomainStats], atNs: UInt64) -> Round {
        var next: [String: (cpuNs: UInt64, atNs: UInt64)] = [:]
        var samples: [VMSample] = []
        var appeared: [String] = []
        for d in domains where d.running {
            var cpu: Double?
            if let prev = last[d.uuid], atNs > prev.atNs, d.cpuTimeNs >= prev.cpuNs {
                let used = Double(d.cpuTimeNs - prev.cpuNs), wall = Double(atNs - prev.atNs) * Double(max(1, d.vcpus))
                cpu = min(100, max(0, used / wall * 100))
            } else if last[d.uuid] == nil {
                appeared.append(d.name)
            }
            next[d.uuid] = (d.cpuTimeNs, atNs)
            samples.append(VMSample(name: d.name, uuid: d.uuid, cpuPercent: cpu, vcpus: d.vcpus, memoryKiB: d.memoryKiB,
                                    maxMemoryKiB: d.maxMemoryKiB))
        }
        let gone = last.keys.filter { next[$0] == nil }
        let goneNames = domainsNamed(gone)
        last = next
        names = Dictionary(uniqueKeysWithValues: domains.filter(\.running).map { ($0.uuid, $0.name) })
        return Round(samples: samples, appeared: appeared.sorted(), disappeared: goneNames)
    }

    private var names: [String: String] = [:]
    private func domainsNamed(_ uuids: [String]) -> [String] { uuids.map { names[$0] ?? $0 }.sorted() }
}

/// Turns successive hypervisor readings into per-VM CPU use, guest memory pressure and
/// network rates. Pure.
public struct VMSample: Equatable, Sendable {
    public let name: String
    public let uuid: String
    /// CPU use in % of the VM's vCPUs over the last interval; nil on the first reading.
    public let cpuPercent: Double?
    /// CPU demand in % of its vCPUs over the last interval: the time they ran plus the time they
    /// waited for a CPU (what it would have used on an idle host); nil on the first reading or
    /// without the vCPUs' wait.
    public var demandPercent: Double? = nil
    public let vcpus: Int
    public let memoryKiB: UInt64
    public let maxMemoryKiB: UInt64
    /// The guest's memory, with its swap and fault rates over the last interval (nil without a
    /// balloon driver's statistics).
    public var guest: GuestFigures? = nil
    /// Its network, through its switch port (nil when the port was not read).
    public var net: NetFigures? = nil
    /// CPU time its vCPUs used since it started, as the hypervisor counts it.
    public var cpuTimeNs: UInt64 = 0
}

public struct GuestFigures: Equatable, Sendable {
    public var unusedKiB: UInt64?
    public var availableKiB: UInt64?
    /// Per second over the last interval; nil on the first reading.
    public var swapInKiBPerS: Double?
    public var swapOutKiBPerS: Double?
    public var majorFaultsPerS: Double?
}

/// A VM's switch port counters: from the VM's side (`tx`: what it sent; `rx`: what it got).
public struct NetCounters: Equatable, Sendable {
    public var txBytes: UInt64, rxBytes: UInt64, txPackets: UInt64, rxPackets: UInt64
    public init(txBytes: UInt64, rxBytes: UInt64, txPackets: UInt64, rxPackets: UInt64) {
        self.txBytes = txBytes; self.rxBytes = rxBytes; self.txPackets = txPackets; self.rxPackets = rxPackets
    }
}

public struct NetFigures: Equatable, Sendable {
    public var counters: NetCounters
    /// Mbit/s each way over the last interval; nil on the first reading (or after a counter
    /// went back: a new port, after a migration or a switch restart).
    public var txMbitS: Double?
    public var rxMbitS: Double?
}

public struct Sampler: Sendable {
    /// What the vCPUs ran plus what they waited for a CPU, % of the vCPUs: from the vCPU
    /// threads' own run time where known, else the process's CPU use; nil without a wait reading
    /// (or one that went back: a new process after a migration).
    private static func demand(_ d: DomainStats, _ prev: Last?, cpuPercent cpu: Double?, atNs: UInt64) -> Double? {
        guard let prev, atNs > prev.atNs, let w = d.vcpuWaitNs, let pw = prev.waitNs, w >= pw else { return nil }
        let wall = Double(atNs - prev.atNs) * Double(max(1, d.vcpus))
        if let r = d.vcpuRunNs, let pr = prev.runNs, r >= pr { return min(100, Double(r - pr + w - pw) / wall * 100) }
        guard let cpu else { return nil }
        return min(100, cpu + Double(w - pw) / wall * 100)
    }


    private struct Last: Sendable {
        var cpuNs: UInt64, atNs: UInt64
        var waitNs: UInt64?
        var runNs: UInt64?
        var guest: GuestMemoryStats?
        var net: NetCounters?
    }
    private var last: [String: Last] = [:]

    public init() {}

    public struct Round: Equatable, Sendable {
        public let samples: [VMSample]
        public let appeared: [String]
        public let disappeared: [String]
    }

    /// A counter's rate per second since the last reading; nil without one, or when the counter
    /// went back.
    static func rate(_ now: UInt64?, _ before: UInt64?, seconds: Double) -> Double? {
        guard let now, let before, now >= before, seconds > 0 else { return nil }
        return Double(now - before) / seconds
    }

    /// One reading of every domain at monotonic time `atNs`; `net`: each VM's port counters by
    /// VM name, where known.
    public mutating func sample(_ domains: [DomainStats], atNs: UInt64, net: [String: NetCounters] = [:]) -> Round {
        var next: [String: Last] = [:]
        var samples: [VMSample] = []
        var appeared: [String] = []
        for d in domains where d.running {
            var cpu: Double?
            let prev = last[d.uuid]
            let seconds = prev.map { atNs > $0.atNs ? Double(atNs - $0.atNs) / 1e9 : 0 } ?? 0
            if let prev, atNs > prev.atNs, d.cpuTimeNs >= prev.cpuNs {
                let used = Double(d.cpuTimeNs - prev.cpuNs), wall = Double(atNs - prev.atNs) * Double(max(1, d.vcpus))
                cpu = min(100, max(0, used / wall * 100))
            } else if prev == nil {
                appeared.append(d.name)
            }
            next[d.uuid] = Last(cpuNs: d.cpuTimeNs, atNs: atNs, waitNs: d.vcpuWaitNs, runNs: d.vcpuRunNs, guest: d.guest, net: net[d.name])
            var s = VMSample(name: d.name, uuid: d.uuid, cpuPercent: cpu, vcpus: d.vcpus, memoryKiB: d.memoryKiB,
                             maxMemoryKiB: d.maxMemoryKiB)
            s.demandPercent = Self.demand(d, prev, cpuPercent: cpu, atNs: atNs)
            s.cpuTimeNs = d.cpuTimeNs
            if let g = d.guest {
                s.guest = GuestFigures(unusedKiB: g.unusedKiB, availableKiB: g.availableKiB,
                                       swapInKiBPerS: Self.rate(g.swapInKiB, prev?.guest?.swapInKiB, seconds: seconds),
                                       swapOutKiBPerS: Self.rate(g.swapOutKiB, prev?.guest?.swapOutKiB, seconds: seconds),
                                       majorFaultsPerS: Self.rate(g.majorFaults, prev?.guest?.majorFaults, seconds: seconds))
            }
            if let c = net[d.name] {
                s.net = NetFigures(counters: c,
                                   txMbitS: Self.rate(c.txBytes, prev?.net?.txBytes, seconds: seconds).map { $0 * 8 / 1e6 },
                                   rxMbitS: Self.rate(c.rxBytes, prev?.net?.rxBytes, seconds: seconds).map { $0 * 8 / 1e6 })
            }
            samples.append(s)
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

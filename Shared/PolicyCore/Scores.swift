/// Smoothed CPU use (percent of a VM's vCPUs) above which a VM is high-demand (paper §2.2.2):
/// the one threshold the policies, the scores and the service's "round now" trigger share.
public let highDemandThreshold = 75.0

/// Host scores as the paper defines them, with planned moves applied incrementally so a policy
/// can ask "what would the deviation be if…" in O(1).
public struct Scores: Sendable {
    public let highThreshold: Double
    public private(set) var high: [HostID: Int] = [:]
    public private(set) var load: [HostID: Double] = [:]        // sum of CPU use, in cores
    public private(set) var memoryUsed: [HostID: Int] = [:]
    public private(set) var placement: [VMID: HostID]
    private let cores: [HostID: Int]
    private var sum = 0.0, sumSquares = 0.0
    private let count: Double

    public init(_ state: ClusterState, highThreshold: Double = highDemandThreshold) {
        self.highThreshold = highThreshold
        placement = state.placement
        cores = state.hosts.mapValues(\.cores)
        count = Double(max(1, state.hosts.count))
        for id in state.hosts.keys { high[id] = 0; load[id] = 0; memoryUsed[id] = 0 }
        // In a fixed order, so float sums (and so every tie-break) are the same in every process.
        for (vm, host) in state.placement.sorted(by: { $0.key < $1.key }) {
            guard let v = state.vms[vm], high[host] != nil else { continue }
            let c = state.cpu[vm] ?? 0
            if c > highThreshold { high[host]! += 1 }
            load[host]! += c / 100
            memoryUsed[host]! += v.memoryMB
        }
        for id in state.hosts.keys.sorted() { let s = score(id); sum += s; sumSquares += s * s }
    }

    /// High-demand VMs per core.
    @inline(__always)
    public func score(_ host: HostID) -> Double { Double(high[host] ?? 0) / Double(max(1, cores[host] ?? 1)) }

    /// Population standard deviation of the host scores.
    public var deviation: Double { Self.deviation(sum: sum, squares: sumSquares, n: count) }

    static func deviation(sum: Double, squares: Double, n: Double) -> Double {
        let mean = sum / n
        return (max(0, squares / n - mean * mean)).squareRoot()
    }

    /// The deviation if `highVMs` high-demand VMs went from `a` to `b`.
    public func deviation(moving highVMs: Int, from a: HostID, to b: HostID) -> Double {
        guard highVMs != 0, a != b else { return deviation }
        let ca = Double(max(1, cores[a] ?? 1)), cb = Double(max(1, cores[b] ?? 1))
        let sa = score(a), sb = score(b)
        let na = sa - Double(highVMs) / ca, nb = sb + Double(highVMs) / cb
        let s = sum - sa - sb + na + nb
        let q = sumSquares - sa * sa - sb * sb + na * na + nb * nb
        return Self.deviation(sum: s, squares: q, n: count)
    }

    /// Applies a planned move.
    public mutating func move(_ vm: VMID, to b: HostID, state: ClusterState) {
        guard let a = placement[vm], a != b, let v = state.vms[vm] else { return }
        let c = state.cpu[vm] ?? 0
        let isHigh = c > highThreshold
        let sa = score(a), sb = score(b)
        if isHigh { high[a]! -= 1; high[b]! += 1 }
        let na = score(a), nb = score(b)
        sum += na - sa + nb - sb
        sumSquares += na * na - sa * sa + nb * nb - sb * sb
        load[a]! -= c / 100
        load[b]! += c / 100
        memoryUsed[a]! -= v.memoryMB
        memoryUsed[b]! += v.memoryMB
        placement[vm] = b
    }

    public func freeMemory(_ host: HostID, state: ClusterState) -> Int {
        (state.hosts[host]?.memoryMB ?? 0) - (memoryUsed[host] ?? 0)
    }
}

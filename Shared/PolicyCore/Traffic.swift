/// The traffic matrix the policy keeps: bytes per second between the VMs of each VIOLIN, from
/// the switches' cumulative pair counters (`mesh.traffic`). Pure: the caller says who sent what
/// and when, and which VM each MAC is.
public struct TrafficMatrix: Sendable {
    /// One direction between two VMs, smoothed.
    public struct Flow: Equatable, Sendable {
        public var from: String, to: String
        public var bytesPerS: Double
        public init(from: String, to: String, bytesPerS: Double) { self.from = from; self.to = to; self.bytesPerS = bytesPerS }
    }

    private struct Key: Hashable { var host: String, src: String, dst: String }
    private struct Last { var bytes: Int; var atS: Double }
    /// The last cumulative reading per (reporting host, source MAC, destination MAC).
    private var last: [Key: Last] = [:]
    /// Smoothed rate per (from VM, to VM).
    private var rates: [Pair: Double] = [:]
    private var heardAt: [Pair: Double] = [:]
    private struct Pair: Hashable { var from: String, to: String }
    /// Weight of the newest rate in the smoothed one.
    public let alpha: Double
    /// A flow not reported for this long is forgotten (its VMs stopped talking, or went).
    public let forgetAfterS: Double

    public init(alpha: Double = 0.5, forgetAfterS: Double = 60) {
        self.alpha = alpha; self.forgetAfterS = forgetAfterS
    }

    /// One report of `host`'s switch at time `atS`: cumulative (src MAC, dst MAC, bytes).
    /// `vm(mac)` names the VM behind a MAC (nil: not a VM, e.g. an operator's probe), and
    /// `placement(vm)` its host: a host speaks only for frames its own VMs sent, so a pair whose
    /// source VM is not on `host` is refused and counted in the result.
    @discardableResult
    public mutating func ingest(host: String, pairs: [(src: String, dst: String, bytes: Int)], atS: Double,
                                vm: (String) -> String?, placement: (String) -> String?) -> (used: Int, refused: Int) {
        var used = 0, refused = 0
        for p in pairs {
            guard let from = vm(p.src), let to = vm(p.dst), from != to else { continue }
            guard placement(from) == host else { refused += 1; continue }
            let key = Key(host: host, src: p.src, dst: p.dst)
            defer { last[key] = Last(bytes: p.bytes, atS: atS) }
            // The first reading, a counter that went back (a new switch), or no time passed: a baseline.
            guard let before = last[key], p.bytes >= before.bytes, atS > before.atS else { continue }
            let rate = Double(p.bytes - before.bytes) / (atS - before.atS)
            let pair = Pair(from: from, to: to)
            rates[pair] = rates[pair].map { alpha * rate + (1 - alpha) * $0 } ?? rate
            heardAt[pair] = atS
            used += 1
        }
        return (used, refused)
    }

    /// Flows heard within `forgetAfterS` of `nowS`, heaviest first; those older are dropped.
    public mutating func flows(nowS: Double) -> [Flow] {
        for (pair, at) in heardAt where nowS - at > forgetAfterS { heardAt[pair] = nil; rates[pair] = nil }
        last = last.filter { nowS - $0.value.atS <= forgetAfterS }
        return rates.map { Flow(from: $0.key.from, to: $0.key.to, bytesPerS: $0.value) }
            .sorted { ($0.bytesPerS, $1.from, $1.to) > ($1.bytesPerS, $0.from, $0.to) }
    }

    /// Bytes per second between `a` and `b`, both ways.
    public func between(_ a: String, _ b: String) -> Double {
        (rates[Pair(from: a, to: b)] ?? 0) + (rates[Pair(from: b, to: a)] ?? 0)
    }
}

/// The adaptation manager's view of the world and its decisions, as plain values (paper §2.2).
/// Nothing here executes anything: a policy reads a `ClusterState` and returns `Decision`s.

public typealias HostID = String
public typealias VMID = String
public typealias ViolinID = String
public typealias DomainID = String

public struct Host: Equatable, Sendable {
    public let id: HostID
    public let domain: DomainID
    public let cores: Int
    public let memoryMB: Int
    public init(id: HostID, domain: DomainID, cores: Int, memoryMB: Int) {
        self.id = id; self.domain = domain; self.cores = cores; self.memoryMB = memoryMB
    }
}

public struct VM: Equatable, Sendable {
    public let id: VMID
    public let violin: ViolinID
    public let memoryMB: Int
    /// Pages dirtied per second while it runs, in MB/s: what makes a live migration long.
    public let dirtyRateMBps: Double
    public init(id: VMID, violin: ViolinID, memoryMB: Int, dirtyRateMBps: Double = 20) {
        self.id = id; self.violin = violin; self.memoryMB = memoryMB; self.dirtyRateMBps = dirtyRateMBps
    }
}

public struct Violin: Equatable, Sendable {
    public let id: ViolinID
    public let homeDomain: DomainID
    /// The head node: the user's entry point; it never leaves the home domain.
    public let head: VMID
    public init(id: ViolinID, homeDomain: DomainID, head: VMID) {
        self.id = id; self.homeDomain = homeDomain; self.head = head
    }
}

/// Bandwidth for live migration, MB/s, inside a domain and between domains.
public struct Network: Equatable, Sendable {
    public var intraDomainMBps: Double
    public var interDomainMBps: Double
    public init(intraDomainMBps: Double = 100, interDomainMBps: Double = 25) {
        self.intraDomainMBps = intraDomainMBps; self.interDomainMBps = interDomainMBps
    }
}

/// Everything a policy sees at one decision round.
public struct ClusterState: Sendable {
    public var hosts: [HostID: Host]
    public var vms: [VMID: VM]
    public var violins: [ViolinID: Violin]
    public var placement: [VMID: HostID]
    /// Smoothed CPU use of each VM, 0-100 % of its vCPU.
    public var cpu: [VMID: Double]
    public var network: Network
    /// VMs migrating right now (they are not moved again until done).
    public var migrating: Set<VMID>
    /// The time each VM last finished a migration (seconds), for the cooldown.
    public var lastMigrated: [VMID: Double]
    public var now: Double
    /// Optional: per VIOLIN, its batch queue (what a queue-aware policy may use).
    public var queues: [ViolinID: QueueInfo]
    /// Optional: what the fine-grain levers read (guest memory, free memory, network) and what
    /// they have set.
    public var levers = LeverState()
    /// Optional: bytes per second between VMs (both ways summed), from the switches' pair
    /// counters (`TrafficMatrix`); symmetric, a VM absent talks to no one.
    public var traffic: [VMID: [VMID: Double]] = [:]
    /// VMs hinted busy (`expect`) that were idle when hinted: no job of theirs runs yet, so
    /// moving one stalls nobody.
    public var expected: Set<VMID> = []

    public init(hosts: [Host], vms: [VM], violins: [Violin], placement: [VMID: HostID], cpu: [VMID: Double] = [:],
                network: Network = Network(), migrating: Set<VMID> = [], lastMigrated: [VMID: Double] = [:],
                now: Double = 0, queues: [ViolinID: QueueInfo] = [:]) {
        self.hosts = Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, $0) })
        self.vms = Dictionary(uniqueKeysWithValues: vms.map { ($0.id, $0) })
        self.violins = Dictionary(uniqueKeysWithValues: violins.map { ($0.id, $0) })
        self.placement = placement
        self.cpu = cpu
        self.network = network
        self.migrating = migrating
        self.lastMigrated = lastMigrated
        self.now = now
        self.queues = queues
    }
}

extension ClusterState {
    /// Whether `vm` may be moved now: not migrating, and its last migration older than `cooldown`.
    public func canMove(_ vm: VMID, cooldown: Double) -> Bool {
        if migrating.contains(vm) { return false }
        if let t = lastMigrated[vm], now - t < cooldown { return false }
        return true
    }
}

/// What a VIOLIN's batch scheduler knows: jobs waiting and the nodes they need.
public struct QueueInfo: Equatable, Sendable {
    public var waitingNodes: Int
    public var runningNodes: Int
    public init(waitingNodes: Int, runningNodes: Int) { self.waitingNodes = waitingNodes; self.runningNodes = runningNodes }
}

public enum Decision: Equatable, Sendable {
    case migrateVM(vm: VMID, from: HostID, to: HostID, estimatedSeconds: Double, reason: String)
    case migrateViolin(violin: ViolinID, to: DomainID, placement: [VMID: HostID], estimatedSeconds: Double, reason: String)
    case setCPUWeight(vm: VMID, weight: Int, reason: String)
    case setBalloon(vm: VMID, targetMB: Int, reason: String)
    /// A cap on what the VM sends through its switch port, Mbit/s; 0 lifts it.
    case setPortRate(vm: VMID, mbitS: Double, reason: String)

    public var reason: String {
        switch self {
        case .migrateVM(_, _, _, _, let r), .migrateViolin(_, _, _, _, let r), .setCPUWeight(_, _, let r), .setBalloon(_, _, let r),
             .setPortRate(_, _, let r): r
        }
    }

    /// The VMs this decision moves, with their destinations.
    /// The same decision with another reason.
    public func withReason(_ r: String) -> Decision {
        switch self {
        case .migrateVM(let vm, let from, let to, let s, _): .migrateVM(vm: vm, from: from, to: to, estimatedSeconds: s, reason: r)
        case .migrateViolin(let v, let to, let p, let s, _): .migrateViolin(violin: v, to: to, placement: p, estimatedSeconds: s, reason: r)
        case .setCPUWeight(let vm, let w, _): .setCPUWeight(vm: vm, weight: w, reason: r)
        case .setBalloon(let vm, let mb, _): .setBalloon(vm: vm, targetMB: mb, reason: r)
        case .setPortRate(let vm, let rate, _): .setPortRate(vm: vm, mbitS: rate, reason: r)
        }
    }

    public var moves: [(VMID, HostID)] {
        switch self {
        case .migrateVM(let vm, _, let to, _, _): [(vm, to)]
        case .migrateViolin(_, _, let p, _, _): p.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        default: []
        }
    }
}

/// A policy: pure, deterministic for the same state.
public protocol AdaptationPolicy: Sendable {
    var name: String { get }
    func decide(_ state: ClusterState) -> [Decision]
}

/// Exponentially weighted moving average of each VM's CPU use, so a spike does not move VMs.
public struct DemandSmoother: Sendable {
    /// The newest sample's weight that the service and the simulator use unless told otherwise.
    public static let defaultWeight = 0.3
    public let weight: Double   // of the newest sample
    public private(set) var averages: [VMID: Double] = [:]
    public init(weight: Double = defaultWeight) { self.weight = min(1, max(0.01, weight)) }
    public mutating func add(_ vm: VMID, cpu: Double) {
        let x = min(100, max(0, cpu))
        averages[vm] = averages[vm].map { $0 + weight * (x - $0) } ?? x
    }
    public mutating func forget(_ vm: VMID) { averages[vm] = nil }
}

/// Live migration time (pre-copy): rounds copy what the previous round dirtied, until it is
/// small; a VM dirtying faster than the link does not converge and takes long.
public enum MigrationCost {
    public static func seconds(memoryMB: Int, dirtyRateMBps: Double, bandwidthMBps: Double) -> Double {
        let b = max(bandwidthMBps, 0.001)
        var toSend = Double(memoryMB)
        var total = 0.0
        for _ in 0..<30 {
            let t = toSend / b
            total += t
            toSend = dirtyRateMBps * t
            if toSend < 8 { break }   // stop-and-copy of what is left
        }
        return total + toSend / b
    }

    public static func seconds(of vm: VM, from a: Host, to b: Host, network: Network) -> Double {
        seconds(memoryMB: vm.memoryMB, dirtyRateMBps: vm.dirtyRateMBps,
                bandwidthMBps: a.domain == b.domain ? network.intraDomainMBps : network.interDomainMBps)
    }
}

extension ClusterState {
    /// Sets the traffic between VMs from directed flows (bytes/s), summing both directions.
    public mutating func setTraffic(_ flows: [(from: VMID, to: VMID, bytesPerS: Double)]) {
        traffic = [:]
        for f in flows where f.from != f.to && f.bytesPerS > 0 {
            traffic[f.from, default: [:]][f.to, default: 0] += f.bytesPerS
            traffic[f.to, default: [:]][f.from, default: 0] += f.bytesPerS
        }
    }
}

extension ClusterState {
    /// VMs their VIOLIN's owner said will be busy (`demand_hint_request`), with their VIOLIN:
    /// each demands its whole vCPU from now, and its VIOLIN counts as having work waiting — so
    /// a policy moves ahead of the load instead of after it.
    public mutating func expect(_ busy: [VMID: ViolinID]) {
        for (vm, violin) in busy.sorted(by: { $0.key < $1.key }) where placement[vm] != nil {
            if (cpu[vm] ?? 0) <= highDemandThreshold { expected.insert(vm) }
            cpu[vm] = max(cpu[vm] ?? 0, 100)
            var q = queues[violin] ?? QueueInfo(waitingNodes: 0, runningNodes: 0)
            q.waitingNodes += 1
            queues[violin] = q
        }
    }
}

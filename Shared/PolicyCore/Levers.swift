/// Fine-grain adaptation (paper §1, §2.2: "memory ballooning and weighted CPU scheduling"),
/// tried before anything moves. Levers in order of cost:
/// 1. CPU weight: on a contended host where high-demand VMs share the cores with VMs that are
///    not, the high-demand ones get twice the default weight, so they get the larger share of
///    what the cores can give (no one goes below the default);
/// 2. memory: where a host wants memory (a guest of it under pressure), unused guest
///    memory is ballooned away (never below a floor); a guest under pressure gets memory back;
///    a host that cannot cover the demand sends the VM to a host that can (a memory-driven
///    migration);
/// 3. network: a VM that saturates a host's link that other VIOLINs share is capped at their
///    fair share on its switch port; the cap is lifted once the link has room;
/// 4. migration of a VM or a whole VIOLIN, by the inner policy — but not off a host a lever
///    that relieves it (a weight that covers the busy VMs' demand, a balloon that grows, a cap)
///    acted on within `settleSeconds`: the lever's effect is awaited first. A hold is not renewed
///    for two more settling times after it ends, so a host whose levers keep changing (demand
///    swinging about a threshold) still gets its migration.
/// Pure: every figure comes in `ClusterState.levers`; every decision says what it expects.

/// A guest's memory as its balloon driver reports it; rates over the last interval.
public struct GuestMemory: Equatable, Sendable {
    /// The balloon's size now (what the guest has) and the most it may have.
    public var balloonMB: Int
    public var maxMB: Int
    /// Memory the guest does not use at all, and what it could use without swapping.
    public var unusedMB: Int?
    public var availableMB: Int?
    /// Pages swapped in and major page faults per second.
    public var swapInPerS: Double
    public var majorFaultsPerS: Double
    public init(balloonMB: Int, maxMB: Int, unusedMB: Int? = nil, availableMB: Int? = nil, swapInPerS: Double = 0,
                majorFaultsPerS: Double = 0) {
        self.balloonMB = balloonMB; self.maxMB = maxMB; self.unusedMB = unusedMB; self.availableMB = availableMB
        self.swapInPerS = swapInPerS; self.majorFaultsPerS = majorFaultsPerS
    }
}

/// What the levers read and what is in force.
public struct LeverState: Equatable, Sendable {
    public var memory: [VMID: GuestMemory] = [:]
    /// Memory each host has free, MB.
    public var hostFreeMB: [HostID: Int] = [:]
    /// What each VM sends into its VIOLIN, Mbit/s.
    public var sendMbps: [VMID: Double] = [:]
    /// Each host's link to the other hosts, Mbit/s (absent: the network lever leaves it alone).
    public var linkMbps: [HostID: Double] = [:]
    /// CPU weights and network caps (Mbit/s) in force; absent: the default weight, no cap.
    public var weights: [VMID: Int] = [:]
    public var caps: [VMID: Double] = [:]
    /// When a lever last acted on each VM, and when a hold of each host (a lever that relieves
    /// it, see `LeversFirstPolicy.holdingHosts`) began (seconds).
    public var leverAt: [VMID: Double] = [:]
    public var heldAt: [HostID: Double] = [:]
    public init() {}
}

public struct LeversFirstPolicy: AdaptationPolicy {
    public var inner: any AdaptationPolicy
    public var name: String { "levers+" + inner.name }
    /// How long a lever's effect is awaited before the same VM gets another lever, or its host
    /// a migration off it.
    public var settleSeconds = 60.0
    /// A VM whose smoothed CPU use (% of a vCPU) is above this is high-demand.
    public var highThreshold = highDemandThreshold
    /// A host is contended when its demand reaches this share of its cores.
    public var contention = 0.9
    public static let defaultWeight = 1024
    /// A high-demand VM's weight on a contended host it shares with VMs that are not.
    public var boostWeight = 2048
    /// A balloon never goes below max(floorMB, floorShare of the VM's memory).
    public var floorMB = 64
    public var floorShare = 0.25
    /// Left above what a guest uses when its balloon shrinks; the share of unused memory that
    /// makes a balloon shrink.
    public var headroomShare = 0.2
    public var unusedShare = 0.4
    /// Pressure: any swapping in, more major faults per second than this, or less available
    /// than `availableShare` of the balloon.
    public var faultsPerS = 20.0
    public var availableShare = 0.1
    /// Memory a host keeps for itself, MB.
    public var hostReserveMB = 64
    /// A link is saturated at this share of its capacity; caps are lifted below `relaxShare`.
    public var saturated = 0.85
    public var relaxShare = 0.5

    public init(inner: any AdaptationPolicy) { self.inner = inner }

    public func decide(_ state: ClusterState) -> [Decision] {
        let weights = cpuWeights(state)
        var out = weights.decisions + memory(state) + network(state)
        // Hosts a relieving lever just acted on, or acts on now: their migrations wait for its effect.
        var settling = Set(state.levers.heldAt.filter { state.now - $0.value < settleSeconds }.keys)
        settling.formUnion(holding(out, state, covered: weights.covered).filter { mayHold($0, state) })
        let moved = Set(out.flatMap { $0.moves.map(\.0) })
        for d in inner.decide(state) where d.moves.allSatisfy({ vm, _ in !moved.contains(vm) && !settling.contains(state.placement[vm] ?? "") }) {
            out.append(d)
        }
        return out
    }

    /// The hosts of the levers among `decisions` that relieve what a migration off the host
    /// would: a CPU weight that gives the busy VMs of a host their whole demand, a balloon that
    /// grows, a cap. (Shrinking an idle balloon, lifting a cap or going back to the default
    /// weight relieve nothing: the host's migrations go on.)
    /// Only hosts that may be held again (`mayHold`): the caller records the hold's start.
    public func holdingHosts(_ decisions: [Decision], _ state: ClusterState) -> Set<HostID> {
        holding(decisions, state, covered: cpuWeights(state).covered).filter { mayHold($0, state) }
    }

    /// A host may be held unless its last hold began within three settling times: one held,
    /// two in which its migrations go whatever its levers do.
    func mayHold(_ host: HostID, _ state: ClusterState) -> Bool {
        state.levers.heldAt[host].map { state.now - $0 >= 3 * settleSeconds } ?? true
    }

    func holding(_ decisions: [Decision], _ state: ClusterState, covered: Set<HostID>) -> Set<HostID> {
        var hosts = Set<HostID>()
        for d in decisions {
            guard let vm = d.leverVM, let h = state.placement[vm] else { continue }
            switch d {
            case .setCPUWeight(_, let w, _): if w > Self.defaultWeight && covered.contains(h) { hosts.insert(h) }
            case .setBalloon(_, let mb, _): if mb > (state.levers.memory[vm]?.balloonMB ?? Int.max) { hosts.insert(h) }
            case .setPortRate(_, let mbit, _): if mbit > 0 { hosts.insert(h) }
            default: break
            }
        }
        return hosts
    }

    func vmsOn(_ state: ClusterState) -> [HostID: [VMID]] {
        var on: [HostID: [VMID]] = [:]
        for (vm, h) in state.placement.sorted(by: { $0.key < $1.key }) where state.vms[vm] != nil { on[h, default: []].append(vm) }
        return on
    }

    func settled(_ vm: VMID, _ state: ClusterState) -> Bool {
        !state.migrating.contains(vm) && (state.levers.leverAt[vm].map { state.now - $0 >= settleSeconds } ?? true)
    }

    // MARK: CPU weight

    /// On a contended host with more VMs than cores, high-demand VMs beside VMs that are not get
    /// `boostWeight`; elsewhere weights go back to the default. `covered`: the hosts where the
    /// boost gives every high-demand VM (nearly) its whole demand.
    func cpuWeights(_ state: ClusterState) -> (decisions: [Decision], covered: Set<HostID>) {
        var out: [Decision] = []
        var covered = Set<HostID>()
        for (hostID, vms) in vmsOn(state).sorted(by: { $0.key < $1.key }) {
            guard let host = state.hosts[hostID] else { continue }
            let demand = vms.map { (state.cpu[$0] ?? 0) / 100 }
            let load = demand.reduce(0, +)
            let contended = vms.count > host.cores && load >= contention * Double(host.cores)
            // Only where high-demand VMs share the host with others that are not: those get the
            // boost. Never less than the default for anyone — a VM whose work just started (its
            // smoothed demand still rising) must not be starved, nor one held down by its own
            // low weight read back as low demand.
            let mixed = contended && vms.contains { (state.cpu[$0] ?? 0) > highThreshold }
                && vms.contains { (state.cpu[$0] ?? 0) <= highThreshold }
            let weights = vms.map { vm -> Int in
                mixed && (state.cpu[vm] ?? 0) > highThreshold ? boostWeight : Self.defaultWeight
            }
            let shares = Self.fairShares(demand: demand, weights: weights, cores: Double(host.cores))
            if mixed && vms.indices.allSatisfy({ weights[$0] == Self.defaultWeight || shares[$0] >= 0.95 * demand[$0] }) { covered.insert(hostID) }
            for (i, vm) in vms.enumerated() where settled(vm, state) {
                let now = state.levers.weights[vm] ?? Self.defaultWeight
                guard weights[i] != now else { continue }
                let share = shares[i]
                let why = weights[i] > Self.defaultWeight
                    ? "host \(hostID) is contended (demand \(fmt(load, 1)) on \(host.cores) cores); \(vm) is high-demand (\(whole(demand[i] * 100)) %) beside VMs that are not"
                    : "host \(hostID) (demand \(fmt(load, 1)) on \(host.cores) cores) no longer needs \(vm) weighed up (\(whole(demand[i] * 100)) %)"
                out.append(.setCPUWeight(vm: vm, weight: weights[i], reason: why + ": weight \(weights[i]) (expects \(whole(share * 100)) % of a core)"))
            }
        }
        return (out, covered)
    }

    /// Each VM's share of `cores` in cores, proportional to its weight and never more than its
    /// demand: what one VM does not take goes to the others (as the kernel's fair scheduler).
    static func fairShares(demand: [Double], weights: [Int], cores: Double) -> [Double] {
        var share = [Double](repeating: 0, count: demand.count)
        var open = Set(demand.indices.filter { demand[$0] > 0 })
        var left = cores
        while !open.isEmpty && left > 1e-9 {
            let total = open.reduce(0.0) { $0 + Double(weights[$1]) }
            let capped = open.filter { share[$0] + left * Double(weights[$0]) / total >= demand[$0] }
            if capped.isEmpty {
                for i in open { share[i] += left * Double(weights[i]) / total }
                break
            }
            for i in capped { left -= demand[i] - share[i]; share[i] = demand[i] }
            open.subtract(capped)
        }
        return share
    }

    // MARK: Memory

    func pressure(_ m: GuestMemory) -> String? {
        if m.swapInPerS > 0 { return "swaps in \(whole(m.swapInPerS)) pages/s" }
        if m.majorFaultsPerS > faultsPerS { return "takes \(whole(m.majorFaultsPerS)) major faults/s" }
        if let a = m.availableMB, Double(a) < availableShare * Double(m.balloonMB) { return "has \(a) MB available of \(m.balloonMB)" }
        return nil
    }

    /// Where memory is wanted — a guest of the host under pressure — balloons shrink where it
    /// lies unused (first, so what they free counts); then
    /// guests under pressure get memory back, or go to a host that has it. Where no one wants
    /// it, unused memory stays where it is: a job starting in an idle VM finds it there.
    func memory(_ state: ClusterState) -> [Decision] {
        var out: [Decision] = []
        var free = state.levers.hostFreeMB
        let guests = state.levers.memory.sorted(by: { $0.key < $1.key }).filter { settled($0.key, state) && state.vms[$0.key] != nil }
        var wanted = Set<HostID>()
        for (vm, m) in guests where pressure(m) != nil { if let h = state.placement[vm] { wanted.insert(h) } }
        for (vm, m) in guests where pressure(m) == nil {
            guard let hostID = state.placement[vm], wanted.contains(hostID), let unused = m.unusedMB,
                  Double(unused) > unusedShare * Double(m.balloonMB) else { continue }
            let floor = max(floorMB, Int(floorShare * Double(m.maxMB)))
            let target = max(floor, m.balloonMB - unused + Int(headroomShare * Double(m.balloonMB)))
            guard target < m.balloonMB - 16 else { continue }
            free[hostID] = free[hostID].map { $0 + m.balloonMB - target }
            out.append(.setBalloon(vm: vm, targetMB: target, reason: "\(vm) leaves \(unused) of \(m.balloonMB) MB unused while host \(hostID) wants memory: balloon \(m.balloonMB) → \(target) MB (floor \(floor); expects \(m.balloonMB - target) MB more free on \(hostID))"))
        }
        for (vm, m) in guests {
            guard let why = pressure(m), let hostID = state.placement[vm] else { continue }
            let want = min(m.maxMB, m.balloonMB + max(m.maxMB / 4, 32))
            guard want > m.balloonMB else { continue }
            let need = want - m.balloonMB
            let hostFree = free[hostID] ?? Int.max
            if hostFree - hostReserveMB >= need {
                free[hostID] = hostFree == Int.max ? nil : hostFree - need
                out.append(.setBalloon(vm: vm, targetMB: want, reason: "\(vm) \(why): balloon \(m.balloonMB) → \(want) MB (host \(hostID) has \(hostFree == Int.max ? "room" : "\(hostFree) MB free"); expects the pressure to end)"))
            } else if let (to, seconds) = roomFor(vm, m, state, free) {
                free[to] = (free[to] ?? 0) - m.maxMB
                out.append(.migrateVM(vm: vm, from: hostID, to: to, estimatedSeconds: seconds,
                                      reason: "\(vm) \(why) and host \(hostID) has \(hostFree) MB free, \(need) MB short: to \(to), which has \(free[to]! + m.maxMB) MB (expects the pressure to end there)"))
            }
        }
        return out
    }

    /// A host with room for all of the VM's memory: of its VIOLIN's home domain for a head
    /// node, of its own domain first otherwise; the one with the most free memory.
    func roomFor(_ vm: VMID, _ m: GuestMemory, _ state: ClusterState, _ free: [HostID: Int]) -> (HostID, Double)? {
        guard let v = state.vms[vm], let fromID = state.placement[vm], let from = state.hosts[fromID] else { return nil }
        let isHead = state.violins[v.violin]?.head == vm
        let candidates = state.hosts.values.filter { h in
            h.id != fromID && (free[h.id] ?? 0) - hostReserveMB >= m.maxMB
                && (!isHead || h.domain == state.violins[v.violin]?.homeDomain)
        }
        guard let best = candidates.max(by: { a, b in
            let ka = (a.domain == from.domain ? 1 : 0, free[a.id] ?? 0, b.id), kb = (b.domain == from.domain ? 1 : 0, free[b.id] ?? 0, a.id)
            return ka < kb
        }) else { return nil }
        return (best.id, MigrationCost.seconds(of: v, from: from, to: best, network: state.network))
    }

    // MARK: Network

    /// A host whose VMs fill its link, shared by two VIOLINs or more: each VM above the fair
    /// share (the link over the VIOLINs sending) is capped at it. With room again, caps go.
    func network(_ state: ClusterState) -> [Decision] {
        var out: [Decision] = []
        for (hostID, vms) in vmsOn(state).sorted(by: { $0.key < $1.key }) {
            guard let link = state.levers.linkMbps[hostID], link > 0 else { continue }
            let sending = vms.filter { (state.levers.sendMbps[$0] ?? 0) >= 1 }
            let total = vms.reduce(0) { $0 + (state.levers.sendMbps[$1] ?? 0) }
            let violins = Set(sending.compactMap { state.vms[$0]?.violin })
            if total >= saturated * link && violins.count >= 2 {
                let fair = (link / Double(violins.count)).rounded(.down)
                for vm in sending where settled(vm, state) {
                    let rate = state.levers.sendMbps[vm] ?? 0
                    guard rate > fair, state.levers.caps[vm].map({ $0 > fair * 1.05 }) ?? true else { continue }
                    out.append(.setPortRate(vm: vm, mbitS: fair, reason: "\(vm) sends \(whole(rate)) of the \(whole(total)) Mbit/s host \(hostID)'s link carries (\(whole(link)) Mbit/s), shared by \(violins.count) VIOLINs: capped at \(whole(fair)) Mbit/s (expects the others \(whole(rate - fair)) Mbit/s more)"))
                }
            } else if total < relaxShare * link {
                for vm in vms where state.levers.caps[vm] != nil && settled(vm, state) {
                    out.append(.setPortRate(vm: vm, mbitS: 0, reason: "host \(hostID)'s link carries \(whole(total)) of \(whole(link)) Mbit/s: \(vm)'s cap is lifted"))
                }
            }
        }
        return out
    }
}

/// A number rounded to a whole one, for reasons.
func whole(_ x: Double) -> String { x.isFinite && abs(x) < 1e15 ? String(Int(x.rounded())) : String(x) }

extension Decision {
    /// The VM a lever (weight, balloon, cap) acts on; nil for a migration.
    public var leverVM: VMID? {
        switch self {
        case .setCPUWeight(let vm, _, _), .setBalloon(let vm, _, _), .setPortRate(let vm, _, _): vm
        default: nil
        }
    }
}

/// Our policy: weighs what a migration buys against what it costs (after VMware DRS's
/// cost-benefit rule), on the load that the paper's score throws away.
///
/// - Load, not labels: a host's contention is its CPU demand beyond its cores (sum of smoothed
///   use), so two half-busy VMs count as one busy one and a 74 % VM is not invisible.
/// - A move is worth it when the contention it removes, times how long the work is expected to
///   keep running (longer when the VIOLIN's batch queue has jobs waiting — the paper's own future
///   work), exceeds the migration's cost (its pre-copy time, plus a fixed price for the network
///   to relearn) by a margin. Same-domain destinations are tried first; a VM may also go to
///   another domain on its own, except the head node, which stays home.
/// - Fewer, better migrations: a longer cooldown and one move per host per round.
public struct CostBenefitPolicy: AdaptationPolicy {
    public var name: String { "cost-benefit" }
    public var busyThreshold = 50.0
    public var cooldownSeconds = 300.0
    public var maxConcurrent = 4
    /// Expected remaining busy time of a VM's work, seconds; doubled while its queue is not empty.
    public var horizonSeconds = 600.0
    /// Fixed stall of a move (the VM's pause, the virtual network relearning), seconds.
    public var fixedCostSeconds = 10.0
    /// Required benefit / cost ratio.
    public var margin = 1.0
    /// How many sources, destinations and VMs per source one round looks at.
    public var candidateHosts = 16

    public init() {}

    public func decide(_ state: ClusterState) -> [Decision] {
        var scores = Scores(state)
        var budget = maxConcurrent - state.migrating.count
        var decisions: [Decision] = []
        var touched = Set<HostID>()
        var vmsOn: [HostID: [VMID]] = [:]
        for (vm, host) in state.placement where (state.cpu[vm] ?? 0) > busyThreshold { vmsOn[host, default: []].append(vm) }
        let byDomain = Dictionary(grouping: state.hosts.values, by: \.domain)
        while budget > 0 {
            var best: (Decision, Double)?
            // The most contended hosts, and for each the least loaded candidates: the few
            // coolest hosts of its own domain and of the whole infrastructure.
            let sources = state.hosts.values.filter { excess($0.id, scores, state) > 0.25 && !touched.contains($0.id) }
                .sorted { (excess($0.id, scores, state), $1.id) > (excess($1.id, scores, state), $0.id) }.prefix(candidateHosts)
            let coolest = { (hosts: [Host]) in
                hosts.filter { !touched.contains($0.id) }
                    .sorted { (excess($0.id, scores, state), $0.id) < (excess($1.id, scores, state), $1.id) }.prefix(candidateHosts)
            }
            let coolestOverall = Array(coolest(Array(state.hosts.values)))
            for src in sources {
                // Cheapest first: a VM of a narrow job stalls fewer nodes when it moves.
                let width = { (vm: VMID) in state.queues[state.vms[vm]?.violin ?? ""]?.runningNodes ?? 1 }
                let vms = (vmsOn[src.id] ?? []).filter { scores.placement[$0] == src.id && movable($0, state) }
                    .sorted { (width($0), $0) < (width($1), $1) }
                let dsts = Array(coolest(byDomain[src.domain] ?? [])) + coolestOverall.filter { $0.domain != src.domain }
                for vmID in vms.prefix(4 * candidateHosts) {
                    guard let vm = state.vms[vmID], let violin = state.violins[vm.violin] else { continue }
                    let demand = (state.cpu[vmID] ?? 0) / 100
                    let horizon = horizonSeconds * ((state.queues[vm.violin]?.waitingNodes ?? 0) > 0 ? 2 : 1)
                    for dst in dsts where dst.id != src.id {
                        if vmID == violin.head && dst.domain != violin.homeDomain { continue }
                        guard scores.freeMemory(dst.id, state: state) >= vm.memoryMB else { continue }
                        let ls = scores.load[src.id] ?? 0, ld = scores.load[dst.id] ?? 0
                        let cs = Double(src.cores), cd = Double(dst.cores)
                        let before = max(0, ls - cs) + max(0, ld - cd)
                        let after = max(0, ls - demand - cs) + max(0, ld + demand - cd)
                        let gain = before - after                       // cores of contention removed
                        guard gain > 0.25 else { continue }
                        // Each core of contention removed gives back about one core of work per
                        // second to the VMs of the source host, for as long as they stay busy.
                        let benefit = gain * horizon
                        // The move stalls the VM's job (all its nodes) while the VM migrates.
                        let seconds = MigrationCost.seconds(of: vm, from: src, to: dst, network: state.network)
                        let width = Double(max(1, state.queues[vm.violin]?.runningNodes ?? 1))
                        let cost = (seconds / 2 + fixedCostSeconds) * width
                        guard benefit > margin * cost else { continue }
                        let value = benefit - cost - (dst.domain == src.domain ? 0 : 1)
                        if best == nil || value > best!.1 {
                            best = (.migrateVM(vm: vmID, from: src.id, to: dst.id, estimatedSeconds: seconds,
                                               reason: "host \(src.id) demands \(fmt(ls)) cores of \(src.cores); moving \(vmID) "
                                                   + "(\(fmt(demand * 100, 0)) %) to \(dst.id) removes \(fmt(gain)) cores of contention: "
                                                   + "benefit \(fmt(benefit, 0)) core-s > \(fmt(margin, 1)) x cost \(fmt(cost, 0)) core-s"), value)
                        }
                    }
                }
            }
            guard let (d, _) = best else { break }
            decisions.append(d)
            for (vm, to) in d.moves {
                if let from = scores.placement[vm] { touched.insert(from) }
                touched.insert(to)
                scores.move(vm, to: to, state: state)
                vmsOn[to, default: []].append(vm)
            }
            budget -= 1
        }
        return decisions
    }

    func excess(_ host: HostID, _ scores: Scores, _ state: ClusterState) -> Double {
        (scores.load[host] ?? 0) - Double(state.hosts[host]?.cores ?? 0)
    }

    func movable(_ vm: VMID, _ state: ClusterState) -> Bool { state.canMove(vm, cooldown: cooldownSeconds) }
}

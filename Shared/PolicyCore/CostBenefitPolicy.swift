/// Our policy: the paper's candidates, each made only if it pays (after VMware DRS's
/// cost-benefit rule). The paper's rule moves a VM whenever that evens out the count of
/// high-demand VMs per core, also between hosts that are not oversubscribed, where a move buys
/// nothing and costs the job a stall. So every candidate (single VM or whole VIOLIN) is kept
/// only when the delay it removes pays for the delay it causes:
/// - benefit: a host with demand `l` (smoothed CPU use, in cores) on `c` cores stretches each
///   of its busy VMs by `l / c`, so its VMs fall behind at `l * (l / c - 1)` VM-seconds per
///   second (zero when `l <= c`). The drop of that rate over the two hosts, times how long the
///   work is expected to stay busy — twice as long while the VIOLIN's batch queue has jobs
///   waiting, the paper's own future work — is the benefit. Because the rate grows with the
///   square of the load, relieving a badly oversubscribed host onto a slightly oversubscribed
///   one pays, which a plain "demand beyond the cores" measure (zero-sum between two full
///   hosts) misses.
/// - cost: a move stalls the VM's job: half the pre-copy time (from memory, dirty rate and
///   bandwidth) plus the pause and the network's relearning, for every node of the job.
/// - traffic (where the switches measured it, `ClusterState.traffic`): two VMs that exchange
///   `r` bytes/s on different hosts each wait `r / C` of their time on the link between them
///   (`C`: the domain's or the inter-domain bandwidth), on one host nothing. A move's change of
///   that wait over its horizon counts as benefit (a chatty pair brought together) or cost (one
///   split, or sent across domains); and of the high-demand VMs on a host, the one whose move
///   pays best goes — so a chatty pair stays together when a quiet VM's move relieves as much.
public struct CostBenefitPolicy: AdaptationPolicy {
    public var name: String { "cost-benefit" }
    public var cooldownSeconds = 200.0
    public var maxConcurrent = 4
    /// Expected remaining busy time of a VM's work, seconds; doubled while its queue is not empty.
    public var horizonSeconds = 600.0
    /// Fixed stall of a move (the VM's pause, the virtual network relearning), seconds.
    public var fixedCostSeconds = 10.0
    /// Required benefit / cost ratio: 1, a move must pay for itself. Chosen with the simulator
    /// (seeds 1-8, checked on 9-24, see Tests/Benchmarks/results/README.md); 0.5 saves a little
    /// more with more migrations, 0.1 as much with as many migrations as the paper's policy.
    public var margin = 1.0
    /// A VM whose smoothed CPU use (% of a vCPU) is above this is high-demand (the paper's candidates).
    public var highThreshold = highDemandThreshold

    public init() {}

    /// VM-seconds per second by which the busy VMs of a host with demand `load` on `cores`
    /// cores fall behind: each runs `load / cores` times slower than on a core of its own.
    public static func lag(load: Double, cores: Int) -> Double {
        let c = Double(max(1, cores))
        return load > c ? load * (load / c - 1) : 0
    }

    /// The link wait, in VM-seconds per second, of two VMs exchanging `bytesPerS` between hosts
    /// `a` and `b`: each waits `r / C` of its time; on one host, nothing.
    public static func linkWait(_ bytesPerS: Double, _ a: Host?, _ b: Host?, network: Network) -> Double {
        guard let a, let b, a.id != b.id, bytesPerS > 0 else { return 0 }
        let mbps = a.domain == b.domain ? network.intraDomainMBps : network.interDomainMBps
        return 2 * min(1, bytesPerS / max(1, mbps * 1_000_000))
    }

    /// What one move is worth: the CPU benefit, the traffic's change (positive: less waiting on
    /// links) and the migration's cost, all in VM-seconds; `placement` is before the move.
    func value(_ vmID: VMID, to: HostID, _ trial: Scores, _ state: ClusterState) -> (cpu: Double, traffic: Double, cost: Double, moved: Double)? {
        guard let vm = state.vms[vmID], let fromID = trial.placement[vmID], let src = state.hosts[fromID],
              let dst = state.hosts[to] else { return nil }
        let demand = (state.cpu[vmID] ?? 0) / 100
        let ls = trial.load[fromID] ?? 0, ld = trial.load[to] ?? 0
        let before = Self.lag(load: ls, cores: src.cores) + Self.lag(load: ld, cores: dst.cores)
        let after = Self.lag(load: ls - demand, cores: src.cores) + Self.lag(load: ld + demand, cores: dst.cores)
        let horizon = horizonSeconds * ((state.queues[vm.violin]?.waitingNodes ?? 0) > 0 ? 2 : 1)
        var traffic = 0.0, moved = 0.0
        // In a fixed order: the same state gives the same sums, so the same decisions.
        for (peer, r) in (state.traffic[vmID] ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let at = trial.placement[peer].flatMap({ state.hosts[$0] }) else { continue }
            let was = Self.linkWait(r, src, at, network: state.network), will = Self.linkWait(r, dst, at, network: state.network)
            traffic += (was - will) * horizon
            if was != will { moved += r }
        }
        let seconds = MigrationCost.seconds(of: vm, from: src, to: dst, network: state.network)
        // A VM hinted busy but idle yet stalls no job: the copy only risks its job's start.
        let cost = state.expected.contains(vmID) ? seconds / 2
            : (seconds / 2 + fixedCostSeconds) * Double(max(1, state.queues[vm.violin]?.runningNodes ?? 1))
        return ((before - after) * horizon, traffic, cost, moved)
    }

    /// Hosts in `domain` for `members`, those that talk most first, each to the host where most
    /// of its traffic already goes (then the least loaded): memory never overcommitted, a
    /// high-demand VM only where a core is free. nil when one of them fits nowhere.
    static func placeTogether(_ members: [VMID], in domain: DomainID, _ scores: Scores, _ state: ClusterState,
                              highThreshold: Double) -> [VMID: HostID]? {
        let hosts = state.hosts.values.filter { $0.domain == domain }.sorted { $0.id < $1.id }
        let set = Set(members)
        func talk(_ v: VMID) -> Double { (state.traffic[v] ?? [:]).filter { set.contains($0.key) }.values.reduce(0, +) }
        var trial = scores
        var out: [VMID: HostID] = [:]
        for vm in members.sorted(by: { (talk($0), $1) > (talk($1), $0) }) {
            guard let spec = state.vms[vm] else { return nil }
            let isHigh = (state.cpu[vm] ?? 0) > highThreshold
            let fits = hosts.filter { trial.freeMemory($0.id, state: state) >= spec.memoryMB && (!isHigh || trial.high[$0.id, default: 0] < $0.cores) }
            func toward(_ h: HostID) -> Double { (state.traffic[vm] ?? [:]).filter { out[$0.key] == h }.values.reduce(0, +) }
            guard let best = fits.max(by: { (toward($0.id), -trial.score($0.id), $1.id) < (toward($1.id), -trial.score($1.id), $0.id) }) else { return nil }
            out[vm] = best.id
            trial.move(vm, to: best.id, state: state)
        }
        return out
    }

    public func decide(_ state: ClusterState) -> [Decision] {
        var paper = PaperPolicy()
        paper.cooldownSeconds = cooldownSeconds
        paper.maxConcurrent = maxConcurrent
        paper.highThreshold = highThreshold
        var scores = Scores(state, highThreshold: highThreshold)
        var kept: [Decision] = []
        var taken = Set<VMID>()
        for var d in paper.decide(state) {
            // A single VM's move: of the high-demand VMs on its host that may move to the same
            // host, the one whose move pays best (with traffic measured: the one that splits the
            // least chatter; with hints: one hinted busy but idle yet, whose move stalls no job).
            if case .migrateVM(let vm, let from, let to, _, let reason) = d, !state.traffic.isEmpty || !state.expected.isEmpty {
                let alternatives = scores.placement.filter { $0.value == from && (state.cpu[$0.key] ?? 0) > highThreshold }.map(\.key)
                    .filter { $0 == vm || (!taken.contains($0) && state.canMove($0, cooldown: cooldownSeconds)
                        && scores.freeMemory(to, state: state) >= (state.vms[$0]?.memoryMB ?? .max)) }.sorted()
                let net = alternatives.compactMap { v in value(v, to: to, scores, state).map { (v, $0.cpu + $0.traffic - margin * $0.cost) } }
                if let best = net.max(by: { ($0.1, $1.0) < ($1.1, $0.0) }), best.0 != vm,
                   let src = state.hosts[from], let dst = state.hosts[to], let bvm = state.vms[best.0] {
                    d = .migrateVM(vm: best.0, from: from, to: to, estimatedSeconds: MigrationCost.seconds(of: bvm, from: src, to: dst, network: state.network),
                                   reason: reason + "; \(best.0) moves instead of \(vm) (its move pays best: less traffic split, or no job stalled)")
                }
            }
            // A whole VIOLIN's move: its members placed in the new domain so that those that talk
            // most share hosts.
            if case .migrateViolin(let violin, let domain, let placement, let seconds, let reason) = d, !state.traffic.isEmpty,
               let together = Self.placeTogether(Array(placement.keys), in: domain, scores, state, highThreshold: highThreshold),
               together != placement {
                d = .migrateViolin(violin: violin, to: domain, placement: together, estimatedSeconds: seconds,
                                   reason: reason + "; members that talk placed together")
            }
            // A VM an earlier decision of this round took (in place of another) stays put.
            if d.moves.contains(where: { taken.contains($0.0) }) { continue }
            var benefit = 0.0, cost = 0.0, traffic = 0.0, moved = 0.0
            var trial = scores
            for (vmID, to) in d.moves {
                guard let v = value(vmID, to: to, trial, state) else { continue }
                benefit += v.cpu; traffic += v.traffic; cost += v.cost; moved += v.moved
                trial.move(vmID, to: to, state: state)
            }
            if benefit + traffic > margin * cost {
                if !state.traffic.isEmpty { d = d.withReason(d.reason + "; traffic weighed: \(fmt(moved / 1_000_000)) MB/s changes links, "
                    + "worth \(fmt(traffic, 0)) VM-s against \(fmt(benefit, 0)) VM-s of CPU and \(fmt(cost, 0)) VM-s of moving") }
                kept.append(d)
                for (vmID, _) in d.moves { taken.insert(vmID) }
                scores = trial
            }
        }
        return kept
    }
}

/// A policy with the traffic signal taken away (what the same policy decides without the
/// switches' pair counters): for comparisons.
public struct TrafficBlind: AdaptationPolicy {
    public var inner: AdaptationPolicy
    public init(_ inner: AdaptationPolicy) { self.inner = inner }
    public var name: String { inner.name + "-blind" }
    public func decide(_ state: ClusterState) -> [Decision] {
        var s = state
        s.traffic = [:]
        return inner.decide(s)
    }
}

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
    public func decide(_ state: ClusterState) -> [Decision] {
        var paper = PaperPolicy()
        paper.cooldownSeconds = cooldownSeconds
        paper.maxConcurrent = maxConcurrent
        paper.highThreshold = highThreshold
        var scores = Scores(state, highThreshold: highThreshold)
        var kept: [Decision] = []
        for d in paper.decide(state) {
            var benefit = 0.0, cost = 0.0
            var trial = scores
            for (vmID, to) in d.moves {
                guard let vm = state.vms[vmID], let fromID = trial.placement[vmID], let src = state.hosts[fromID],
                      let dst = state.hosts[to] else { continue }
                let demand = (state.cpu[vmID] ?? 0) / 100
                let ls = trial.load[fromID] ?? 0, ld = trial.load[to] ?? 0
                let before = Self.lag(load: ls, cores: src.cores) + Self.lag(load: ld, cores: dst.cores)
                let after = Self.lag(load: ls - demand, cores: src.cores) + Self.lag(load: ld + demand, cores: dst.cores)
                let horizon = horizonSeconds * ((state.queues[vm.violin]?.waitingNodes ?? 0) > 0 ? 2 : 1)
                benefit += (before - after) * horizon
                let width = Double(max(1, state.queues[vm.violin]?.runningNodes ?? 1))
                cost += (MigrationCost.seconds(of: vm, from: src, to: dst, network: state.network) / 2 + fixedCostSeconds) * width
                trial.move(vmID, to: to, state: state)
            }
            if benefit > margin * cost {
                kept.append(d)
                scores = trial
            }
        }
        return kept
    }
}

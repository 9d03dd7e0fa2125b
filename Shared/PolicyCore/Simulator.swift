/// The paper's §4.2 experiment, replayed through a policy. Deterministic for a seed.
///
/// Model (calibrated to the paper's Tables 1-2, documented in the README):
/// - Hosts: Domain 1 = 2 hosts x 8 cores, Domain 2 = 1 host x 8 cores, 16 GB each; VMs of
///   512 MB dirtying 20 MB/s; migration bandwidth 100 MB/s in a domain, 25 MB/s across.
/// - Four VIOLIN clusters, each with a first-come-first-served scheduler (like Torque without
///   backfill). A job asks for n nodes and gets one VM per node; a VIOLIN with fewer VMs than
///   n runs the job on all its VMs, n/k processes each (so it takes n/k times longer).
/// - A busy VM wants one core. A host with demand D on C cores runs each busy VM at
///   C/D of full speed, less 5 % per unit of oversubscription (context switching, cache), so
///   2 VMs/core run at 0.45x. HPL is synchronous: a job advances at its slowest VM's speed.
/// - A live migration costs a running job a stall: half the migration's pre-copy time (the
///   copy competes with the job) plus 10 s per VM of the job moved in that round (the pause,
///   and the virtual network relearning the VM's MAC while MPI's TCP connections back off),
///   at most 140 s. The paper names network re-establishment as the main cost and measured
///   1-2 minutes of extra runtime per whole-environment migration whatever the job's length
///   (Table 2), and about 8 % for one VM on a run of a few minutes (Table 1); the constants
///   are chosen to land there.
/// - Memory (for the fine-grain levers): each VM has a balloon, at first its share of its host's
///   memory (at most its own 512 MB); an idle VM touches 128 MB, a busy one its job's working
///   set. A VM whose working set exceeds its balloon swaps, and runs at (balloon / working
///   set)^3 of its speed (at least 5 %). A balloon changes at once, within the host's free
///   memory; a CPU weight gives a busy VM of a contended host its weighted share of the cores.
public struct Job: Equatable, Sendable {
    public let id: Int
    public let violin: Int
    public let nodes: Int
    public let baseSeconds: Double   // on dedicated cores, one process per node
    public let submit: Double
    /// The working set of each of its VMs while it runs, MB.
    public var memoryMB = 256
    /// What each of its VMs exchanges with the job's other VMs while it runs, MB/s in all
    /// (MPI-like: spread evenly over them); 0: a job that does not communicate.
    public var commMBps = 0.0
}

public struct JobResult: Equatable, Sendable {
    public let job: Job
    public let start: Double
    public let end: Double
    public var runtime: Double { end - start }
    public var submitToCompletion: Double { end - job.submit }
}

public enum Scenario: Equatable, Sendable, CustomStringConvertible {
    case static1, static2, autonomic(String)
    public var description: String {
        switch self {
        case .static1: "static-1vm-per-core"
        case .static2: "static-2vm-per-core"
        case .autonomic(let p): "autonomic-\(p)"
        }
    }
}

public struct SimulationResult: Sendable {
    public let scenario: Scenario
    public let jobs: [JobResult]
    public let migrations: Int
    public let makespan: Double
    /// Fine-grain levers used, by decision kind (`set_cpu_weight`, `set_balloon`, `set_port_rate`).
    public var levers: [String: Int] = [:]
    /// Bytes the jobs' VMs exchanged across domains (the slow link), and between hosts of one domain.
    public var interDomainBytes = 0.0
    public var interHostBytes = 0.0
    public var meanRuntime: Double { jobs.map(\.runtime).reduce(0, +) / Double(max(1, jobs.count)) }
    public var meanSubmitToCompletion: Double { jobs.map(\.submitToCompletion).reduce(0, +) / Double(max(1, jobs.count)) }
}

/// A small deterministic generator (SplitMix64): the simulator's job mixes, the placement
/// benchmark and the placement property tests.
public struct SeededRandom: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    /// A whole number in 0..<n.
    public mutating func next(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
}

public enum Workload {
    /// 65 HPL-like jobs of 1-16 nodes, 30 s to 30 min each, submitted over about two hours.
    public static func paper(seed: UInt64, count: Int = 65) -> [Job] {
        var rng = SeededRandom(seed: seed)
        let sizes = [1, 2, 2, 4, 4, 8, 8, 16]
        var t = 0.0
        var jobs: [Job] = []
        for i in 0..<count {
            let nodes = sizes[Int(rng.next() % UInt64(sizes.count))]
            let base = 30 * pow60(rng.unit())             // log-uniform 30 s .. 30 min
            jobs.append(Job(id: i, violin: Int(rng.next() % 4), nodes: nodes, baseSeconds: base, submit: t))
            t += 60 + 90 * rng.unit()                     // about 2 h of arrivals in all
        }
        return jobs
    }

    /// The §4.2 mix, each job with a working set per VM drawn (from its own generator, so the
    /// jobs are the same as `paper`'s) between `memoryMB.lowerBound` and `memoryMB.upperBound`.
    /// The memory-pressure mix: 300-500 MB, on hosts of 12 GB.
    public static func withMemory(_ jobs: [Job], seed: UInt64, memoryMB: ClosedRange<Int>) -> [Job] {
        var rng = SeededRandom(seed: seed ^ 0x6D65_6D6F_7279)
        return jobs.map { j in
            var j = j
            j.memoryMB = memoryMB.lowerBound + rng.next(memoryMB.count)
            return j
        }
    }

    /// The communication mix: the same jobs, each of 2 nodes or more exchanging 5-40 MB/s per VM
    /// with its fellows (from its own generator, so the jobs are the same as `paper`'s).
    public static func withCommunication(_ jobs: [Job], seed: UInt64) -> [Job] {
        var rng = SeededRandom(seed: seed ^ 0x636F_6D6D)
        return jobs.map { j in
            var j = j
            let r = 5 + 35 * rng.unit()
            if j.nodes > 1 { j.commMBps = r }
            return j
        }
    }

    /// 60^u for u in [0, 1], as exp(u ln 60) by its series (no Foundation).
    static func pow60(_ u: Double) -> Double {
        let x = u * 4.0943445622221
        var term = 1.0, sum = 1.0
        for n in 1..<40 { term *= x / Double(n); sum += term }
        return sum
    }
}

public struct Simulator {
    public var step = 5.0
    public var policyPeriod = 30.0
    public var smoothing = DemandSmoother.defaultWeight
    public var progress: ((String, Double) -> Void)?
    /// Each host's memory, MB (16 GB in §4.2; the memory-pressure mix uses 12 GB).
    public var hostMemoryMB = 16_384
    /// Each VIOLIN's batch scheduler tells the policy what is coming (`demand_hint_request`):
    /// the idle VMs its next queued job will take are hinted busy.
    public var hints = false

    public init() {}

    static let domainOf = ["d1h1": "d1", "d1h2": "d1", "d2h1": "d2"]
    static let idleWorkingSetMB = 128

    func infrastructure() -> [Host] {
        ["d1h1", "d1h2", "d2h1"].map { Host(id: $0, domain: Self.domainOf[$0]!, cores: 8, memoryMB: hostMemoryMB) }
    }

    /// VIOLIN sizes and where their VMs start.
    func layout(_ scenario: Scenario) -> (sizes: [Int], hostOf: [String]) {
        switch scenario {
        case .static1: return ([8, 8, 4, 4], ["d1h1", "d1h2", "d2h1", "d2h1"])
        case .static2: return ([16, 16, 8, 8], ["d1h1", "d1h2", "d2h1", "d2h1"])
        case .autonomic: return ([16, 16, 16, 16], ["d1h1", "d1h2", "d2h1", "d2h1"])
        }
    }

    public func run(_ scenario: Scenario, jobs: [Job], policy: AdaptationPolicy?) -> SimulationResult {
        var run = Run(self, scenario, jobs: jobs)
        let limit = 48 * 3600.0
        while run.results.count < jobs.count && run.now < limit {
            run.startJobs()
            run.advanceJobs(step)
            run.sample()
            run.now += step
            run.finishMigrations()
            if let policy, run.now >= run.nextPolicy {
                run.nextPolicy += policyPeriod
                run.policyRound(policy)
            }
            progress?(scenario.description, Double(run.results.count) / Double(max(1, jobs.count)))
        }
        var result = SimulationResult(scenario: scenario, jobs: run.results.sorted { $0.job.id < $1.job.id },
                                      migrations: run.migrations, makespan: run.now, levers: run.levers)
        result.interDomainBytes = run.interDomainBytes
        result.interHostBytes = run.interHostBytes
        return result
    }

    /// One simulation's state, advanced a step at a time by `run`.
    struct Run {
        struct Running { var job: Job, vms: [VMID], start: Double, done: Double, work: Double, stall: Double }
        let hostByID: [HostID: Host]
        let vmsOf: [[VMID]]
        var state: ClusterState
        var smoother: DemandSmoother
        var queue: [[Job]] = Array(repeating: [], count: 4)
        var running: [Running] = []
        var busy = Set<VMID>()
        var results: [JobResult] = []
        var pending: ArraySlice<Job>
        var migrationsInFlight: [(vm: VMID, to: HostID, ends: Double)] = []
        var migrations = 0
        var levers: [String: Int] = [:]
        var interDomainBytes = 0.0, interHostBytes = 0.0
        /// Each VM's balloon (MB), its job's working set while it runs, and its CPU weight.
        var balloon: [VMID: Int] = [:]
        var workingSet: [VMID: Int] = [:]
        var weight: [VMID: Int] = [:]
        var now = 0.0
        var nextPolicy: Double
        var hints = false
        var hintLeadSeconds = 60.0

        /// Four VIOLINs laid out as the scenario says, every VM idle.
        init(_ sim: Simulator, _ scenario: Scenario, jobs: [Job]) {
            let hosts = sim.infrastructure()
            hostByID = Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, $0) })
            let (sizes, startHost) = sim.layout(scenario)
            var vms: [VM] = [], violins: [Violin] = [], placement: [VMID: HostID] = [:]
            var vmsOf: [[VMID]] = []
            for v in 0..<4 {
                let ids = (0..<sizes[v]).map { "v\(v + 1)-\($0)" }
                vmsOf.append(ids)
                for id in ids {
                    vms.append(VM(id: id, violin: "v\(v + 1)", memoryMB: 512, dirtyRateMBps: 20))
                    placement[id] = startHost[v]
                }
                violins.append(Violin(id: "v\(v + 1)", homeDomain: Simulator.domainOf[startHost[v]]!, head: ids[0]))
            }
            self.vmsOf = vmsOf
            state = ClusterState(hosts: hosts, vms: vms, violins: violins, placement: placement,
                                 network: Network(intraDomainMBps: 100, interDomainMBps: 25))
            smoother = DemandSmoother(weight: sim.smoothing)
            pending = jobs.sorted { ($0.submit, $0.id) < ($1.submit, $1.id) }[...]
            nextPolicy = sim.policyPeriod
            hints = sim.hints
            // Balloons: each VM its share of its host's memory, at most its own.
            var count: [HostID: Int] = [:]
            for (_, h) in placement { count[h, default: 0] += 1 }
            for vm in vms { balloon[vm.id] = min(vm.memoryMB, sim.hostMemoryMB / max(1, count[placement[vm.id]!] ?? 1)) }
        }

        /// Arrivals, then first-come-first-served starts in each VIOLIN.
        mutating func startJobs() {
            while let j = pending.first, j.submit <= now { queue[j.violin].append(j); pending = pending.dropFirst() }
            for v in 0..<4 {
                while let head = queue[v].first {
                    let free = vmsOf[v].filter { !busy.contains($0) }
                    let want = min(head.nodes, vmsOf[v].count)
                    guard free.count >= want else { break }
                    queue[v].removeFirst()
                    let chosen = Array(free.prefix(want))
                    chosen.forEach { busy.insert($0); workingSet[$0] = head.memoryMB }
                    let work = head.baseSeconds * Double(head.nodes) / Double(want)
                    running.append(Running(job: head, vms: chosen, start: now, done: 0, work: work, stall: 0))
                }
            }
        }

        /// The speed of each busy VM: 1 while its host has a core for it; beyond, its weighted
        /// share of the cores (C/D with equal weights), less the overhead of oversubscription;
        /// and slower still while its working set does not fit its balloon.
        func speeds() -> [VMID: Double] {
            var demand: [HostID: Double] = [:], weighted: [HostID: Double] = [:]
            for (vm, host) in state.placement {
                let d = busy.contains(vm) ? 1 : 0.01
                demand[host, default: 0] += d
                weighted[host, default: 0] += d * Double(weight[vm] ?? LeversFirstPolicy.defaultWeight)
            }
            var out: [VMID: Double] = [:]
            for vm in busy {
                guard let hostID = state.placement[vm], let h = hostByID[hostID] else { continue }
                let d = demand[hostID] ?? 0, c = Double(h.cores)
                var speed = 1.0
                if d > c {
                    let share = c * Double(weight[vm] ?? LeversFirstPolicy.defaultWeight) / max(1, weighted[hostID] ?? 1)
                    speed = min(1, share) * max(0.1, 1 - 0.05 * (d / c - 1) * 2)
                }
                let ws = Double(workingSet[vm] ?? Simulator.idleWorkingSetMB), b = Double(balloon[vm] ?? 0)
                if ws > b { let f = b / ws; speed *= max(0.05, f * f * f) }
                out[vm] = speed
            }
            return out
        }

        /// A communicating job's VMs on different hosts wait on the link between them: each VM
        /// spends `r / C` of its time waiting for every fellow elsewhere (`r`: what it sends that
        /// fellow, `C`: the domain's or the inter-domain bandwidth). The job's slowdown is its
        /// worst VM's: it runs `1 / (1 + wait)` as fast. Also adds the bytes that crossed hosts
        /// and domains in `dt`.
        mutating func communication(_ job: Job, _ vms: [VMID], dt: Double) -> Double {
            guard job.commMBps > 0, vms.count > 1 else { return 1 }
            let perPeer = job.commMBps / Double(vms.count - 1)
            var worst = 0.0
            for v in vms {
                guard let hv = state.placement[v].flatMap({ hostByID[$0] }) else { continue }
                var wait = 0.0
                for w in vms where w != v {
                    guard let hw = state.placement[w].flatMap({ hostByID[$0] }), hw.id != hv.id else { continue }
                    let sameDomain = hw.domain == hv.domain
                    wait += perPeer / (sameDomain ? state.network.intraDomainMBps : state.network.interDomainMBps)
                    if sameDomain { interHostBytes += perPeer * 1e6 * dt } else { interDomainBytes += perPeer * 1e6 * dt }
                }
                worst = max(worst, wait)
            }
            return 1 / (1 + worst)
        }

        /// Every running job progresses at its slowest VM's speed (after any stall), slowed by
        /// its communication across hosts; finished ones free their VMs.
        mutating func advanceJobs(_ step: Double) {
            let speed = speeds()
            var finished: [Int] = []
            for i in running.indices {
                var dt = step
                if running[i].stall > 0 { let s = min(dt, running[i].stall); running[i].stall -= s; dt -= s }
                let rate = (running[i].vms.map { speed[$0] ?? 1 }.min() ?? 1) * communication(running[i].job, running[i].vms, dt: dt)
                running[i].done += dt * rate
                if running[i].done >= running[i].work { finished.append(i) }
            }
            for i in finished.reversed() {
                let r = running.remove(at: i)
                r.vms.forEach { busy.remove($0); workingSet[$0] = nil }
                results.append(JobResult(job: r.job, start: r.start, end: now + step))
            }
        }

        mutating func sample() {
            for vm in state.placement.keys { smoother.add(vm, cpu: busy.contains(vm) ? 100 : 1) }
        }

        mutating func finishMigrations() {
            let now = self.now
            var state = self.state
            migrationsInFlight.removeAll { m in
                guard m.ends <= now else { return false }
                state.placement[m.vm] = m.to
                state.migrating.remove(m.vm)
                state.lastMigrated[m.vm] = now
                return true
            }
            self.state = state
        }

        /// The policy's round: its migrations start; each job that loses VMs to one stalls for
        /// the copy and a restart cost.
        /// What the levers read: each guest's memory as its balloon driver would report it, each
        /// host's free memory, the weights in force.
        func leverState() -> LeverState {
            var l = state.levers
            var used: [HostID: Int] = [:]
            for (vm, h) in state.placement {
                let b = balloon[vm] ?? 0, ws = workingSet[vm] ?? Simulator.idleWorkingSetMB
                used[h, default: 0] += b
                let short = max(0, ws - b)
                l.memory[vm] = GuestMemory(balloonMB: b, maxMB: state.vms[vm]?.memoryMB ?? b, unusedMB: max(0, b - ws - 16),
                                           availableMB: max(0, b - ws), swapInPerS: Double(short) * 2, majorFaultsPerS: Double(short))
            }
            l.hostFreeMB = hostByID.mapValues { $0.memoryMB - (used[$0.id] ?? 0) }
            l.weights = weight
            return l
        }

        /// A lever carried out: a balloon within its host's free memory, a weight.
        mutating func apply(_ d: Decision) {
            guard let vm = d.leverVM, let h = state.placement[vm] else { return }
            switch d {
            case .setBalloon(_, let target, _):
                let free = state.levers.hostFreeMB[h] ?? 0, now = balloon[vm] ?? 0
                let b = max(1, min(target, now + max(0, free), state.vms[vm]?.memoryMB ?? target))
                state.levers.hostFreeMB[h] = free - (b - now)
                balloon[vm] = b
                levers["set_balloon", default: 0] += 1
            case .setCPUWeight(_, let w, _):
                weight[vm] = w == LeversFirstPolicy.defaultWeight ? nil : w
                levers["set_cpu_weight", default: 0] += 1
            case .setPortRate:
                levers["set_port_rate", default: 0] += 1
            default: return
            }
            state.levers.leverAt[vm] = now
        }

        /// The batch schedulers' hints: the idle VMs each VIOLIN's next job will take, once the
        /// scheduler expects it to start within `hintLeadSeconds` (its running jobs' remaining
        /// work at full speed frees enough VMs by then), as a scheduler's estimated start time.
        func comingSoon() -> [VMID: ViolinID] {
            var coming: [VMID: ViolinID] = [:]
            for v in 0..<4 {
                guard let next = queue[v].first else { continue }
                let free = vmsOf[v].filter { !busy.contains($0) }
                var short = min(next.nodes, vmsOf[v].count) - free.count
                var start = 0.0
                for r in running.filter({ $0.job.violin == v }).sorted(by: { $0.work - $0.done < $1.work - $1.done }) where short > 0 {
                    short -= r.vms.count
                    start = r.stall + r.work - r.done
                }
                guard short <= 0, start <= hintLeadSeconds else { continue }
                for vm in free.prefix(min(next.nodes, vmsOf[v].count)) { coming[vm] = "v\(v + 1)" }
            }
            return coming
        }

        mutating func policyRound(_ policy: AdaptationPolicy) {
            state.cpu = smoother.averages
            state.now = now
            state.levers = leverState()
            state.queues = Dictionary(uniqueKeysWithValues: (0..<4).map { v in
                ("v\(v + 1)", QueueInfo(waitingNodes: queue[v].map(\.nodes).reduce(0, +),
                                        runningNodes: vmsOf[v].filter { busy.contains($0) }.count)) })
            // Who talks to whom, as the switches would measure it: each running job's VMs.
            var flows: [(from: VMID, to: VMID, bytesPerS: Double)] = []
            for r in running where r.job.commMBps > 0 && r.vms.count > 1 {
                let perPeer = r.job.commMBps * 1e6 / Double(r.vms.count - 1)
                for v in r.vms { for w in r.vms where w != v { flows.append((v, w, perPeer)) } }
            }
            state.setTraffic(flows)
            // The batch schedulers' hints: the idle VMs each VIOLIN's next job will take.
            if hints { state.expect(comingSoon()) }
            var copy: [Int: Double] = [:], movedVMs: [Int: Int] = [:]   // per running job
            let decisions = policy.decide(state)
            if let lf = policy as? LeversFirstPolicy {
                for h in lf.holdingHosts(decisions, state) { state.levers.heldAt[h] = now }
            }
            for d in decisions {
                apply(d)
                for (vm, to) in d.moves {
                    guard let from = state.placement[vm], let a = hostByID[from], let b = hostByID[to],
                          let spec = state.vms[vm] else { continue }
                    let seconds = MigrationCost.seconds(of: spec, from: a, to: b, network: state.network)
                    migrationsInFlight.append((vm, to, now + seconds))
                    state.migrating.insert(vm)
                    migrations += 1
                    if let i = running.firstIndex(where: { $0.vms.contains(vm) }) {
                        copy[i] = max(copy[i] ?? 0, seconds / 2)
                        movedVMs[i, default: 0] += 1
                    }
                }
            }
            for (i, k) in movedVMs {
                running[i].stall += (copy[i] ?? 0) + min(140, 10 * Double(k))
            }
        }
    }
}


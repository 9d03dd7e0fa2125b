import Testing
@testable import PolicyCore

/// A small infrastructure: domain d1 with hosts a, b, c (4 cores), domain d2 with host x (4 cores).
func world(_ place: [(String, String, Double)], violins: [Violin]? = nil, memoryMB: Int = 8192, vmMB: Int = 512,
           migrating: Set<VMID> = [], lastMigrated: [VMID: Double] = [:], now: Double = 1000) -> ClusterState {
    let hosts = [Host(id: "a", domain: "d1", cores: 4, memoryMB: memoryMB), Host(id: "b", domain: "d1", cores: 4, memoryMB: memoryMB),
                 Host(id: "c", domain: "d1", cores: 4, memoryMB: memoryMB), Host(id: "x", domain: "d2", cores: 4, memoryMB: memoryMB)]
    let vms = place.map { VM(id: $0.0, violin: String($0.0.prefix(2)), memoryMB: vmMB) }
    let vs = violins ?? Set(place.map { String($0.0.prefix(2)) }).sorted().map { v in
        Violin(id: v, homeDomain: "d1", head: place.first { $0.0.hasPrefix(v) }!.0) }
    return ClusterState(hosts: hosts, vms: vms, violins: vs,
                        placement: Dictionary(uniqueKeysWithValues: place.map { ($0.0, $0.1) }),
                        cpu: Dictionary(uniqueKeysWithValues: place.map { ($0.0, $0.2) }),
                        migrating: migrating, lastMigrated: lastMigrated, now: now)
}

/// n VMs named <violin>-<i> on `host` at `cpu` %.
func many(_ violin: String, _ n: Int, on host: String, cpu: Double, from: Int = 0) -> [(String, String, Double)] {
    (from..<(from + n)).map { ("\(violin)-\($0)", host, cpu) }
}

@Suite struct PaperPolicyTests {
    let policy = PaperPolicy()

    @Test func thresholdsAndScore() {
        let s = Scores(world([("e1-0", "a", 75.0), ("e1-1", "a", 75.1), ("e1-2", "a", 99), ("e1-3", "b", 24)]))
        #expect(s.high["a"] == 2, "above 75 % is high demand; 75 % is not")
        #expect(s.score("a") == 0.5 && s.score("b") == 0)
        var smoother = DemandSmoother(weight: 0.5)
        smoother.add("v", cpu: 100)
        smoother.add("v", cpu: 0)
        #expect(smoother.averages["v"] == 50, "one idle sample halves it: no over-reaction")
    }

    @Test func migratesOnlyWhenTheDeviationDrops() {
        // Balanced: 2 high-demand VMs on each of a, b, c and x: nothing to gain.
        let balanced = world(many("e1", 2, on: "a", cpu: 90) + many("e1", 2, on: "b", cpu: 90, from: 2)
                             + many("e1", 2, on: "c", cpu: 90, from: 4) + many("e1", 2, on: "x", cpu: 90, from: 6))
        #expect(policy.decide(balanced).isEmpty)
        // Low-demand VMs never move, however many.
        #expect(policy.decide(world(many("e1", 12, on: "a", cpu: 20))).isEmpty)
    }

    @Test func leastLoadedHostOfTheDomainFirst() {
        let s = world(many("e1", 6, on: "a", cpu: 90) + many("e1", 1, on: "b", cpu: 90, from: 6) + many("e2", 4, on: "x", cpu: 90))
        let d = policy.decide(s)
        #expect(!d.isEmpty)
        guard case .migrateVM(_, let from, let to, _, let reason)? = d.first else { Issue.record("\(d)"); return }
        #expect(from == "a" && to == "c", "c (score 0) before b (score 0.25); never x, another domain")
        #expect(reason.contains("deviation"))
        for decision in d { for (_, to) in decision.moves { #expect(to != "x") } }
    }

    @Test func escalatesWholeViolinsWhenTheDomainIsFull() {
        // Every host of d1 has 5 high-demand VMs on 4 cores (no single move helps); x in d2 is idle.
        var place: [(String, String, Double)] = []
        for (i, h) in ["a", "b", "c"].enumerated() { place += many("e\(i + 1)", 5, on: h, cpu: 95) }
        let state = world(place)
        let d = policy.decide(state)
        let violinMoves = d.compactMap { if case .migrateViolin(let v, let to, let p, _, _) = $0 { (v, to, p) } else { nil } }
        #expect(!violinMoves.isEmpty, "\(d)")
        if let (v, to, p) = violinMoves.first {
            #expect(to == "d2")
            let head = state.violins[v]!.head
            #expect(p[head] == nil, "the head node stays in its home domain")
            #expect(p.count == 4 && p.values.allSatisfy { $0 == "x" })
        }
    }

    @Test func headNodeNeverLeavesHome() {
        // Domain d1 is full (every host above one high-demand VM per core) and x in d2 is idle:
        // the policy moves a whole VIOLIN out. e1's head, e1-0, is high-demand on a like the
        // rest of e1: the VIOLIN goes, the head stays in d1.
        var place = many("e1", 5, on: "a", cpu: 95)
        for (i, h) in ["b", "c"].enumerated() { place += many("e9", 5, on: h, cpu: 95, from: 10 * i) }
        let s = world(place, violins: [Violin(id: "e1", homeDomain: "d1", head: "e1-0"),
                                       Violin(id: "e9", homeDomain: "d1", head: "e9-0")])
        let d = policy.decide(s)
        let moves = d.flatMap(\.moves)
        #expect(moves.contains { $0.0.hasPrefix("e1-") && $0.1 == "x" }, "e1 moved to d2: \(d)")
        #expect(!moves.isEmpty && moves.allSatisfy { $0.0 != "e1-0" || s.hosts[$0.1]!.domain == "d1" }, "\(d)")
    }

    @Test func memoryIsNeverOvercommitted() {
        // a is hot; b is full of memory and c has room for exactly one 1 GB VM; x is in another
        // domain. Exactly one VM moves, to c.
        let s = world(many("e1", 6, on: "a", cpu: 95) + many("e2", 8, on: "b", cpu: 10) + many("e3", 7, on: "c", cpu: 10),
                      memoryMB: 8192, vmMB: 1024)
        let d = policy.decide(s)
        #expect(d.flatMap(\.moves).map(\.1) == ["c"], "one VM to c, none to the full b: \(d)")
        var model = Oracle(s)
        for decision in d { model.apply(decision) }
        #expect(model.hosts.keys.allSatisfy { model.freeMemoryMB($0) >= 0 })
    }

    @Test func cooldownAndConcurrency() {
        let busy = many("e1", 8, on: "a", cpu: 95)
        let recent = Dictionary(uniqueKeysWithValues: busy.map { ($0.0, 950.0) })
        #expect(policy.decide(world(busy, lastMigrated: recent, now: 1000)).isEmpty, "every VM moved 50 s ago")
        #expect(!policy.decide(world(busy, lastMigrated: recent, now: 1200)).isEmpty, "cooldown over")
        let all = policy.decide(world(busy + many("e2", 8, on: "x", cpu: 95)))
        #expect(all.flatMap(\.moves).count <= policy.maxConcurrent)
        #expect(policy.decide(world(busy, migrating: ["e9-0", "e9-1", "e9-2", "e9-3"])).isEmpty, "4 already running")
    }

    @Test func quickerMigrationBreaksTies() {
        let slow = MigrationCost.seconds(memoryMB: 1024, dirtyRateMBps: 20, bandwidthMBps: 25)
        let fast = MigrationCost.seconds(memoryMB: 1024, dirtyRateMBps: 20, bandwidthMBps: 100)
        #expect(fast < slow && fast > 10)
        #expect(MigrationCost.seconds(memoryMB: 1024, dirtyRateMBps: 200, bandwidthMBps: 100) > 3 * fast,
                "a VM that dirties faster than the link takes much longer")
    }
}

/// An independent model of the paper's rules (§2.2.2), written from the paper rather than
/// from PolicyCore: high demand is above 75 % CPU, a host's score is high-demand VMs per core,
/// the deviation is the population standard deviation of all hosts' scores.
struct Oracle {
    let hosts: [HostID: Host]
    let vms: [VMID: VM]
    let cpu: [VMID: Double]
    var placement: [VMID: HostID]

    init(_ state: ClusterState) {
        hosts = state.hosts; vms = state.vms; cpu = state.cpu; placement = state.placement
    }

    func score(_ host: HostID) -> Double {
        let high = placement.filter { $0.value == host && (cpu[$0.key] ?? 0) > 75 }.count
        return Double(high) / Double(hosts[host]!.cores)
    }

    var deviation: Double {
        let scores = hosts.keys.map(score)
        let mean = scores.reduce(0, +) / Double(scores.count)
        return (scores.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(scores.count)).squareRoot()
    }

    func freeMemoryMB(_ host: HostID) -> Int {
        hosts[host]!.memoryMB - placement.filter { $0.value == host }.map { vms[$0.key]!.memoryMB }.reduce(0, +)
    }

    mutating func apply(_ d: Decision) { for (vm, to) in d.moves { placement[vm] = to } }
}

@Suite struct PolicyPropertyTests {
    /// Over random infrastructures, judged by `Oracle`: no decision sends a head node out of its
    /// home domain or overcommits memory; every decision of the paper's policy lowers the
    /// deviation; both policies keep to their concurrency limits. The decisions checked are
    /// counted: a run that judged too few fails.
    @Test func invariantsHold() {
        var judged: [String: Int] = [:]
        for seed in 1...12 {
            let state = PolicyBench.state(hosts: 30, vms: 400, violins: 40, domains: 3, seed: UInt64(seed))
            for policy in [PaperPolicy(), CostBenefitPolicy()] as [AdaptationPolicy] {
                let decisions = policy.decide(state)
                var model = Oracle(state)
                for d in decisions {
                    let before = model.deviation
                    model.apply(d)
                    for (vm, to) in d.moves {
                        let violin = state.violins[state.vms[vm]!.violin]!
                        if vm == violin.head {
                            #expect(state.hosts[to]!.domain == violin.homeDomain, "\(policy.name) seed \(seed): head \(vm) to \(to)")
                        }
                        #expect(model.freeMemoryMB(to) >= 0, "\(policy.name) seed \(seed): memory on \(to)")
                    }
                    if policy is PaperPolicy {
                        #expect(model.deviation < before - 1e-12, "paper seed \(seed): deviation \(before) -> \(model.deviation)")
                    }
                    judged[policy.name, default: 0] += 1
                }
                let single = decisions.filter { if case .migrateVM = $0 { true } else { false } }
                let limit = (policy as? PaperPolicy)?.maxConcurrent ?? (policy as? CostBenefitPolicy)?.maxConcurrent ?? 0
                #expect(limit > 0 && single.count <= limit, "\(policy.name): at most \(limit) concurrent single-VM migrations")
                #expect(decisions.filter { if case .migrateViolin = $0 { true } else { false } }.count <= 1)
            }
        }
        print("policy properties: decisions judged \(judged)")
        #expect(judged["paper", default: 0] >= 36, "the paper's policy decided too little to prove anything: \(judged)")
        #expect(judged["cost-benefit", default: 0] >= 36, "the cost-benefit policy decided too little: \(judged)")
    }
}

@Suite struct SimulatorTests {
    @Test func sameSeedSameResult() {
        let jobs = Workload.paper(seed: 3)
        #expect(jobs.count == 65)
        #expect(jobs.allSatisfy { (1...16).contains($0.nodes) && $0.baseSeconds >= 29.9 && $0.baseSeconds <= 1800.1 })
        #expect(jobs == Workload.paper(seed: 3) && jobs != Workload.paper(seed: 4))
        let span = jobs.last!.submit
        #expect(span > 3600 && span < 3 * 3600, "about two hours of arrivals")
        let sim = Simulator()
        let a = sim.run(.autonomic("paper"), jobs: jobs, policy: PaperPolicy())
        let b = sim.run(.autonomic("paper"), jobs: jobs, policy: PaperPolicy())
        #expect(a.jobs == b.jobs && a.migrations == b.migrations)
        #expect(a.jobs.count == 65)
    }

    /// As the paper found: adaptation saves submission-to-completion time against both static set-ups.
    @Test(arguments: [1, 2, 3])
    func paperPolicySavesTimeAgainstBothStaticSetups(seed: Int) {
        let jobs = Workload.paper(seed: UInt64(seed))
        let sim = Simulator()
        let s1 = sim.run(.static1, jobs: jobs, policy: nil)
        let s2 = sim.run(.static2, jobs: jobs, policy: nil)
        let auto = sim.run(.autonomic("paper"), jobs: jobs, policy: PaperPolicy())
        let c = Comparison(policy: "paper", autonomic: auto, static1: s1, static2: s2)
        #expect(c.s2cVsStatic1 < 1 && c.s2cVsStatic2 < 1, "seed \(seed): \(c.s2cVsStatic1) \(c.s2cVsStatic2)")
        #expect(auto.migrations > 0)
        // Ours saves time too, with fewer migrations.
        let ours = sim.run(.autonomic("cost-benefit"), jobs: jobs, policy: CostBenefitPolicy())
        let o = Comparison(policy: "cost-benefit", autonomic: ours, static1: s1, static2: s2)
        #expect(o.s2cVsStatic1 < 1, "seed \(seed): \(o.s2cVsStatic1)")
        #expect(ours.migrations < auto.migrations)
    }
}

@Suite struct PolicyTargetTests {
    /// The issue's target for our policy, over the seeds the README reports (1-8): at least 35 % and
    /// 20 % of submission-to-completion time saved against static 1 and 2 VMs per core, with fewer
    /// migrations than the paper's policy. Deterministic: the same seeds give the same figures.
    @Test func costBenefitMeetsItsTargetOverSeedsOneToEight() {
        let sim = Simulator()
        var saved1 = 0.0, saved2 = 0.0, ours = 0, paper = 0
        for seed in UInt64(1)...8 {
            let jobs = Workload.paper(seed: seed)
            let s1 = sim.run(.static1, jobs: jobs, policy: nil), s2 = sim.run(.static2, jobs: jobs, policy: nil)
            let a = sim.run(.autonomic("cost-benefit"), jobs: jobs, policy: CostBenefitPolicy())
            let c = Comparison(policy: "cost-benefit", autonomic: a, static1: s1, static2: s2)
            saved1 += (1 - c.s2cVsStatic1) / 8
            saved2 += (1 - c.s2cVsStatic2) / 8
            ours += a.migrations
            paper += sim.run(.autonomic("paper"), jobs: jobs, policy: PaperPolicy()).migrations
        }
        #expect(saved1 >= 0.35 && saved2 >= 0.20, "saved \(saved1) / \(saved2)")
        #expect(ours < paper, "\(ours) migrations against the paper's \(paper)")
    }
}

@Suite struct CostBenefitPolicyTests {
    let policy = CostBenefitPolicy()

    /// A destination reached quickly wins over one with more headroom behind a slow link.
    @Test func quickDestinationWinsOverMoreHeadroom() {
        // a: 6 busy VMs on 4 cores; b (same domain) has 2 busy, c is full; x (other domain) is idle.
        let s = world(many("e1", 6, on: "a", cpu: 100) + many("e2", 2, on: "b", cpu: 100) + many("e3", 4, on: "c", cpu: 100))
        guard case .migrateVM(_, let from, let to, let seconds, let reason)? = policy.decide(s).first else {
            Issue.record("no move"); return
        }
        #expect(from == "a" && to == "b", "\(reason)")
        #expect(seconds < MigrationCost.seconds(memoryMB: 512, dirtyRateMBps: 20, bandwidthMBps: 25))
    }

    /// The lag a host's busy VMs build up grows with the square of its load, so relieving a badly
    /// oversubscribed host onto a slightly oversubscribed one pays (demand beyond the cores alone
    /// is the same before and after such a move: 8 + 1 = 7 + 2).
    @Test func reliefBetweenTwoOversubscribedHostsPays() {
        #expect(CostBenefitPolicy.lag(load: 4, cores: 4) == 0 && CostBenefitPolicy.lag(load: 2, cores: 4) == 0)
        #expect(CostBenefitPolicy.lag(load: 8, cores: 4) == 8, "8 VMs, each twice as slow: 8 VM-seconds lost per second")
        let before = CostBenefitPolicy.lag(load: 12, cores: 4) + CostBenefitPolicy.lag(load: 5, cores: 4)
        let after = CostBenefitPolicy.lag(load: 11, cores: 4) + CostBenefitPolicy.lag(load: 6, cores: 4)
        #expect(before - after > 2.9, "\(before) -> \(after)")
        let s = world(many("e1", 12, on: "a", cpu: 100) + many("e2", 5, on: "b", cpu: 100) + many("e3", 5, on: "c", cpu: 100)
                      + many("e4", 5, on: "x", cpu: 100))
        let moves = policy.decide(s).flatMap(\.moves)
        #expect(!moves.isEmpty && moves.allSatisfy { s.placement[$0.0] == "a" && $0.1 != "a" }, "\(moves)")
        // Between two hosts equally oversubscribed nothing is gained: no move.
        let even = world(many("e1", 6, on: "a", cpu: 100) + many("e2", 6, on: "b", cpu: 100) + many("e3", 6, on: "c", cpu: 100)
                         + many("e4", 6, on: "x", cpu: 100))
        #expect(policy.decide(even).isEmpty)
    }

    @Test func noMoveWhenNothingIsOversubscribedOrItDoesNotPay() {
        #expect(policy.decide(world(many("e1", 4, on: "a", cpu: 100))).isEmpty, "4 busy VMs on 4 cores")
        // A huge VM on a slow link, with a wide job: the stall would cost more than it buys.
        var s = world(many("e1", 5, on: "a", cpu: 100) + many("e2", 4, on: "b", cpu: 100) + many("e3", 4, on: "c", cpu: 100),
                      memoryMB: 262_144, vmMB: 60_000)
        s.queues = ["e1": QueueInfo(waitingNodes: 0, runningNodes: 64)]
        #expect(policy.decide(s).isEmpty)
    }
}

@Suite struct DrainTests {
    func state() -> ClusterState {
        ClusterState(
            hosts: [Host(id: "a", domain: "d1", cores: 4, memoryMB: 1024), Host(id: "b", domain: "d1", cores: 4, memoryMB: 512),
                    Host(id: "c", domain: "d1", cores: 4, memoryMB: 1024), Host(id: "x", domain: "d2", cores: 4, memoryMB: 4096)],
            vms: [VM(id: "h", violin: "v", memoryMB: 256), VM(id: "m1", violin: "v", memoryMB: 256),
                  VM(id: "m2", violin: "v", memoryMB: 512), VM(id: "m3", violin: "w", memoryMB: 1024), VM(id: "c1", violin: "w", memoryMB: 256)],
            violins: [Violin(id: "v", homeDomain: "d1", head: "h"), Violin(id: "w", homeDomain: "d2", head: "c1")],
            placement: ["h": "a", "m1": "a", "m2": "a", "m3": "a", "c1": "c"])
    }

    @Test func sameDomainFirstLeastLoadedMemoryRespectedHeadStaysHome() {
        let p = Drain.plan(state(), host: "a")
        let to = Dictionary(uniqueKeysWithValues: p.moves.map { ($0.vm, $0.to) })
        // h (head of v, home d1) -> b (d1, no VMs); m1 -> c? b has 256 left, c has 768 left and 1 VM.
        #expect(to["h"] == "b")
        #expect(to["m1"] == "b", "b: one VM, 256 MB left; c: one VM — ties go by id")
        #expect(to["m2"] == "c", "only c in d1 has 512 MB left")
        #expect(to["m3"] == "x", "nothing in d1 holds 1 GB: another domain")
        #expect(p.stuck.isEmpty)
    }

    @Test func aHeadWithNoRoomAtHomeIsStuckAndDrainingHostsTakeNothing() {
        var s = state()
        s.hosts["b"] = Host(id: "b", domain: "d1", cores: 4, memoryMB: 0)
        let p = Drain.plan(s, host: "a", draining: ["c"])
        #expect(p.stuck == ["h"], "\(p.stuck)")
        #expect(p.moves.map(\.to) == ["x", "x", "x"])
        #expect(!p.moves.contains { $0.to == "c" || $0.to == "b" || $0.to == "a" })
        #expect(p.moves.allSatisfy { $0.vm != "h" }, "a head node never leaves its home domain")
    }
}

/// Which VMs of restart-always VIOLINs are lost: those on a host silent long enough, and those
/// every host answered for without running them (a host back from a crash, empty).
@Suite struct LostTests {
    @Test func silentHostsAndMissingVMsOfRestartAlwaysViolins() {
        let placement = ["k1": "a", "k2": "b", "k3": "c", "p1": "b"]
        let violinOf = ["k1": "kept", "k2": "kept", "k3": "kept", "p1": "plain"]
        let lost = Lost.toRestart(placement: placement, violinOf: violinOf, silentSince: ["b": 100], now: 140, lostAfter: 30,
                                  restartAlways: ["kept"], missing: ["k3"])
        #expect(lost == ["kept": ["k2", "k3"]], "p1's VIOLIN is not restart-always; k1's host answers and runs it")
        let early = Lost.toRestart(placement: placement, violinOf: violinOf, silentSince: ["b": 100], now: 120, lostAfter: 30,
                                   restartAlways: ["kept"])
        #expect(early.isEmpty, "silent for 20 s of 30")
    }

    /// A host's silence counts from when it began — unless the look before heard no host at
    /// all (the policy was cut off): then from now, so the first look after the policy's return,
    /// with a host not answering yet, does not take that host for lost.
    @Test func silenceDuringThePolicysOwnIsolationDoesNotCount() {
        let hosts: Set<HostID> = ["a", "b", "c"]
        // b silent since 100; a and c answer: b stays silent since 100, a and c are not silent.
        let s1 = Lost.silence(["b": 100, "a": 90], asked: hosts, answered: ["a", "c"], previousHeardNone: false, now: 150)
        #expect(s1 == ["b": 100])
        // The policy was cut off (the look before heard none): b and c, silent since 100, restart at 150.
        let s2 = Lost.silence(["a": 100, "b": 100, "c": 100], asked: hosts, answered: ["a"], previousHeardNone: true, now: 150)
        #expect(s2 == ["b": 150, "c": 150])
        let restart = Lost.toRestart(placement: ["k": "b"], violinOf: ["k": "kept"], silentSince: s2, now: 150, lostAfter: 30,
                                     restartAlways: ["kept"])
        #expect(restart.isEmpty, "b's silence while the policy heard nobody does not make k lost")
        // A host without an executor to ask keeps what it had.
        #expect(Lost.silence(["z": 5], asked: hosts, answered: hosts, previousHeardNone: false, now: 150) == ["z": 5])
    }
}

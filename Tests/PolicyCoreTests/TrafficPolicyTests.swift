import PolicyCore
import Testing

/// The cost-benefit policy with the traffic the switches measured: pure decisions.
@Suite struct TrafficPolicyTests {
    /// Three busy VMs of one VIOLIN on a 2-core host, an idle host beside it (same domain), and
    /// `talk` bytes/s between pairs of them.
    func state(_ talk: [(VMID, VMID, Double)], cores: Int = 2) -> ClusterState {
        var s = ClusterState(hosts: [Host(id: "h1", domain: "d1", cores: cores, memoryMB: 4096), Host(id: "h2", domain: "d1", cores: 2, memoryMB: 4096)],
                             vms: ["a", "b", "c"].map { VM(id: $0, violin: "v", memoryMB: 256, dirtyRateMBps: 5) },
                             violins: [Violin(id: "v", homeDomain: "d1", head: "h")],
                             placement: ["a": "h1", "b": "h1", "c": "h1"], cpu: ["a": 100, "b": 100, "c": 100],
                             network: Network(intraDomainMBps: 100, interDomainMBps: 25), now: 10_000)
        s.setTraffic(talk.map { (from: $0.0, to: $0.1, bytesPerS: $0.2) })
        return s
    }

    func moved(_ ds: [Decision]) -> [VMID] { ds.flatMap { $0.moves.map(\.0) } }

    /// Without traffic the paper's pick (the first by name) moves; with a and b talking, the
    /// quiet c moves instead — an equal relief that splits nothing — and the reason says so.
    @Test func aChattyPairIsNotSplitWhenAQuietMoveRelievesAsMuch() {
        let quiet = CostBenefitPolicy().decide(state([]))
        #expect(moved(quiet) == ["a"], "\(quiet)")
        let chatty = CostBenefitPolicy().decide(state([("a", "b", 40_000_000), ("b", "a", 10_000_000)]))
        #expect(moved(chatty) == ["c"], "\(chatty)")
        let reason = chatty.first?.reason ?? ""
        #expect(reason.contains("c moves instead of a") && reason.contains("traffic weighed"), "\(reason)")
    }

    /// Every pair talks hard: any move splits chatter worth more than the CPU it frees, so none
    /// is made; the same load without the traffic is moved.
    @Test func aMoveWhoseTrafficCostsMoreThanItsBenefitIsNotMade() {
        let talk: [(VMID, VMID, Double)] = [("a", "b", 60_000_000), ("a", "c", 60_000_000), ("b", "c", 60_000_000)]
        #expect(CostBenefitPolicy().decide(state(talk)).isEmpty)
        #expect(!CostBenefitPolicy().decide(state([])).isEmpty)
        // Light chatter does not stop a move that pays.
        #expect(moved(CostBenefitPolicy().decide(state([("a", "b", 100_000)]))).count == 1)
    }

    /// The link's wait: nothing on one host, r/C each on a domain's link, more across domains.
    @Test func linkWaitByWhereThePairIs() {
        let n = Network(intraDomainMBps: 100, interDomainMBps: 25)
        let h1 = Host(id: "h1", domain: "d1", cores: 2, memoryMB: 1), h2 = Host(id: "h2", domain: "d1", cores: 2, memoryMB: 1)
        let x = Host(id: "x", domain: "d2", cores: 2, memoryMB: 1)
        #expect(CostBenefitPolicy.linkWait(50_000_000, h1, h1, network: n) == 0)
        #expect(CostBenefitPolicy.linkWait(50_000_000, h1, h2, network: n) == 1.0)
        #expect(CostBenefitPolicy.linkWait(10_000_000, h1, x, network: n) == 0.8)
    }

    /// Two running VMs and one hinted busy but idle yet on an overloaded host: the hinted one
    /// moves — the same relief, and no running job stalls for it.
    @Test func aHintedIdleVMMovesInsteadOfARunningOne() {
        var s = state([])
        s.cpu["c"] = 5
        s.expect(["c": "v"])
        #expect(s.expected == ["c"])
        let ds = CostBenefitPolicy().decide(s)
        #expect(moved(ds) == ["c"], "\(ds)")
        #expect(ds.first?.reason.contains("c moves instead of a") == true, "\(ds.first?.reason ?? "")")
        // A VM hinted while already busy is no cheaper to move than its fellows.
        var busy = state([])
        busy.expect(["c": "v"])
        #expect(busy.expected.isEmpty && moved(CostBenefitPolicy().decide(busy)) == ["a"])
    }

    /// A hint that the VMs will be busy moves one now, while they are still idle; without it,
    /// nothing moves until the load arrives.
    @Test func aHintBeforeTheDemandMovesEarlier() {
        var idle = state([])
        idle.cpu = ["a": 10, "b": 10, "c": 10]
        for policy in [PaperPolicy(), CostBenefitPolicy()] as [AdaptationPolicy] {
            #expect(policy.decide(idle).isEmpty, "\(policy.name) moved idle VMs")
            var hinted = idle
            hinted.expect(["a": "v", "b": "v", "c": "v"])
            #expect(moved(policy.decide(hinted)).count == 1, "\(policy.name) did not move ahead of the hinted load")
            #expect(hinted.queues["v"]?.waitingNodes == 3)
        }
        // A hint for a VM the state does not place changes nothing.
        var stray = idle
        stray.expect(["zz": "v"])
        #expect(stray.cpu["zz"] == nil && stray.queues.isEmpty)
    }
}

/// A whole VIOLIN moved to another domain: its chatty members land together.
@Suite struct ViolinMoveTrafficTests {
    @Test func chattyGroupsStayTogetherInAWholeVIOLINMove() {
        // d1 is overloaded (one 2-core host, five busy VMs, no other host there); d2 has two
        // 2-core hosts. a-b and c-d talk; the head h stays home.
        let hosts = [Host(id: "h1", domain: "d1", cores: 2, memoryMB: 8192), Host(id: "x1", domain: "d2", cores: 2, memoryMB: 8192),
                     Host(id: "x2", domain: "d2", cores: 2, memoryMB: 8192)]
        let ids = ["a", "b", "c", "d", "h"]
        var s = ClusterState(hosts: hosts, vms: ids.map { VM(id: $0, violin: "v", memoryMB: 256, dirtyRateMBps: 5) },
                             violins: [Violin(id: "v", homeDomain: "d1", head: "h")],
                             placement: Dictionary(uniqueKeysWithValues: ids.map { ($0, "h1") }),
                             cpu: Dictionary(uniqueKeysWithValues: ids.map { ($0, 100.0) }), network: Network(), now: 10_000)
        let blind = PaperPolicy().decide(s)
        guard case .migrateViolin(_, "d2", let paperPlan, _, _)? = blind.first else { Issue.record("no VIOLIN move: \(blind)"); return }
        s.setTraffic([("a", "b", 30_000_000), ("c", "d", 30_000_000)])
        let ds = CostBenefitPolicy().decide(s)
        guard case .migrateViolin(_, "d2", let plan, _, let reason)? = ds.first else { Issue.record("no VIOLIN move: \(ds)"); return }
        #expect(plan["a"] == plan["b"] && plan["c"] == plan["d"] && plan["a"] != plan["c"], "\(plan) (the paper's: \(paperPlan))")
        #expect(Set(plan.keys) == Set(paperPlan.keys) && reason.contains("placed together"), "\(reason)")
    }
}

/// The simulator's communication model.
@Suite struct CommunicationModelTests {
    /// The static layouts keep each VIOLIN on one host: nothing crosses a host or a domain, and
    /// the communicating mix runs as fast as the silent one. Under a policy that moves VMs,
    /// jobs split over hosts and bytes cross.
    @Test func bytesCrossOnlyWhereVMsAreSplit() {
        let sim = Simulator()
        let silent = Workload.paper(seed: 5, count: 20)
        let talking = Workload.withCommunication(silent, seed: 5)
        #expect(talking.contains { $0.commMBps > 0 } && talking.allSatisfy { $0.nodes > 1 || $0.commMBps == 0 })
        let a = sim.run(.static1, jobs: silent, policy: nil), b = sim.run(.static1, jobs: talking, policy: nil)
        #expect(b.interDomainBytes == 0 && b.interHostBytes == 0)
        #expect(a.jobs.map(\.end) == b.jobs.map(\.end))
        let moved = sim.run(.autonomic("paper"), jobs: talking, policy: PaperPolicy())
        #expect(moved.migrations > 0 && moved.interHostBytes + moved.interDomainBytes > 0)
    }
}

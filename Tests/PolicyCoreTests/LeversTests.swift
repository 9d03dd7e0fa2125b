import Testing
@testable import PolicyCore

/// An inner policy that always proposes the same decisions (what the levers let through).
struct Proposes: AdaptationPolicy {
    let decisions: [Decision]
    var name: String { "proposes" }
    func decide(_ state: ClusterState) -> [Decision] { decisions }
}

@Suite struct LeversTests {
    func weights(_ d: [Decision]) -> [VMID: Int] {
        Dictionary(uniqueKeysWithValues: d.compactMap { if case .setCPUWeight(let vm, let w, _) = $0 { (vm, w) } else { nil } })
    }
    func balloons(_ d: [Decision]) -> [VMID: Int] {
        Dictionary(uniqueKeysWithValues: d.compactMap { if case .setBalloon(let vm, let mb, _) = $0 { (vm, mb) } else { nil } })
    }
    func caps(_ d: [Decision]) -> [VMID: Double] {
        Dictionary(uniqueKeysWithValues: d.compactMap { if case .setPortRate(let vm, let m, _) = $0 { (vm, m) } else { nil } })
    }
    func migrations(_ d: [Decision]) -> [(VMID, HostID)] { d.flatMap(\.moves) }

    /// Host a: 4 cores, five VMs, one wanting a whole core and four at 70 %: contended. The
    /// high-demand one gets twice the default weight, which gives it its whole core (the others
    /// keep the default: no one is weighed down); the inner policy's move off a waits for it.
    @Test func aBusyVMOnAContendedHostGetsMoreWeightBeforeAnythingMoves() {
        let state = world([("e1-0", "a", 100)] + many("e1", 4, on: "a", cpu: 70, from: 1) + [("e2-0", "b", 10)])
        let move = Decision.migrateVM(vm: "e1-1", from: "a", to: "b", estimatedSeconds: 5, reason: "inner")
        let d = LeversFirstPolicy(inner: Proposes(decisions: [move])).decide(state)
        #expect(weights(d) == ["e1-0": 2048], "\(d)")
        #expect(d.first?.reason.contains("high-demand (100 %)") == true && d.first?.reason.contains("expects 100 % of a core") == true, "\(d)")
        #expect(migrations(d).isEmpty, "no migration off a host a lever acts on now")
        // A minute later, with the weight in force and the host still contended, the move goes.
        var later = state
        later.now += 61
        later.levers.weights["e1-0"] = 2048
        later.levers.leverAt["e1-0"] = state.now
        let d2 = LeversFirstPolicy(inner: Proposes(decisions: [move])).decide(later)
        #expect(weights(d2).isEmpty && migrations(d2).map(\.0) == ["e1-1"], "\(d2)")
    }

    /// A host whose levers keep changing (demand swinging about a threshold) is held once: in the
    /// two settling times after its hold, a new relieving lever does not hold it again and the
    /// inner policy's move goes; after them, a lever holds it again.
    @Test func aHoldIsNotRenewedRightAfterItEnds() {
        var state = world([("e1-0", "a", 100)] + many("e1", 4, on: "a", cpu: 70, from: 1) + [("e2-0", "b", 10)])
        let move = Decision.migrateVM(vm: "e1-1", from: "a", to: "b", estimatedSeconds: 5, reason: "inner")
        let policy = LeversFirstPolicy(inner: Proposes(decisions: [move]))
        state.levers.heldAt["a"] = state.now - policy.settleSeconds - 1
        let d = policy.decide(state)
        #expect(weights(d) == ["e1-0": 2048] && migrations(d).map(\.0) == ["e1-1"], "\(d)")
        #expect(policy.holdingHosts(d, state).isEmpty)
        // Within its hold nothing moves; three settling times after its start a lever holds it again.
        state.levers.heldAt["a"] = state.now - policy.settleSeconds + 1
        #expect(migrations(policy.decide(state)).isEmpty)
        state.levers.heldAt["a"] = state.now - 3 * policy.settleSeconds
        let again = policy.decide(state)
        #expect(migrations(again).isEmpty && policy.holdingHosts(again, state) == ["a"], "\(again)")
    }

    /// The high-demand threshold is a setting: eight VMs at 60 % on host a's 4 cores are not
    /// high-demand at the paper's 75 %, so nothing moves; at 50 % they are, the weights go up
    /// beside an idle one, and the paper's policy (and ours) even them out.
    @Test func theHighDemandThresholdIsASetting() {
        let state = world(many("e1", 8, on: "a", cpu: 60) + [("e2-0", "a", 5)])
        #expect(PaperPolicy().decide(state).isEmpty && CostBenefitPolicy().decide(state).isEmpty)
        var paper = PaperPolicy()
        paper.highThreshold = 50
        #expect(paper.decide(state).flatMap(\.moves).count >= 1, "\(paper.decide(state))")
        var costBenefit = CostBenefitPolicy()
        costBenefit.highThreshold = 50
        costBenefit.margin = 0
        #expect(!costBenefit.decide(state).isEmpty)
        var levers = LeversFirstPolicy(inner: Proposes(decisions: []))
        #expect(weights(levers.decide(state)).isEmpty)
        levers.highThreshold = 50
        #expect(weights(levers.decide(state)).count == 8, "\(levers.decide(state))")
    }

    /// Equal demand, or a host that is not contended: no weight changes; a weight set earlier
    /// goes back to the default once the host has room. A boost that cannot give the busy VMs
    /// their demand holds no migration.
    @Test func weightsFollowContentionOnly() {
        let even = world(many("e1", 6, on: "a", cpu: 100))
        #expect(weights(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(even)).isEmpty)
        // Busy (3.7 of 4 cores) but each VM has a core of its own: weights would change nothing.
        let ownCores = world(many("e1", 3, on: "a", cpu: 100) + [("e1-9", "a", 70)])
        #expect(weights(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(ownCores)).isEmpty)
        var calm = world([("e1-0", "a", 50), ("e1-1", "a", 10)])
        calm.levers.weights["e1-0"] = 2048
        let d = LeversFirstPolicy(inner: Proposes(decisions: [])).decide(calm)
        #expect(weights(d) == ["e1-0": LeversFirstPolicy.defaultWeight] && d.first?.reason.contains("no longer needs e1-0 weighed up") == true, "\(d)")
        // Eight busy VMs and an idle one on 4 cores: the boost is set, but covers nothing (each
        // busy VM gets half a core): the inner policy's move goes at once.
        let crowded = world(many("e1", 8, on: "a", cpu: 100) + [("e2-0", "a", 5)])
        let move = Decision.migrateVM(vm: "e1-1", from: "a", to: "b", estimatedSeconds: 5, reason: "inner")
        let d3 = LeversFirstPolicy(inner: Proposes(decisions: [move])).decide(crowded)
        #expect(weights(d3).count == 8 && migrations(d3).map(\.0) == ["e1-1"], "\(d3)")
        // Within its settling time a VM is left alone.
        calm.levers.leverAt["e1-0"] = calm.now - 10
        #expect(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(calm).isEmpty)
    }

    /// Where a guest is short, unused memory of its host's other guests is ballooned away down
    /// to what each uses plus headroom, never below the floor, and the short one gets it.
    @Test func balloonsShrinkUnusedMemoryAndGrowUnderPressure() {
        var s = world([("e1-0", "a", 10), ("e1-1", "a", 10), ("e1-2", "a", 10)])
        s.levers.hostFreeMB["a"] = 0       // e1-2 grows with what e1-0 and e1-1 give back
        s.levers.memory["e1-0"] = GuestMemory(balloonMB: 512, maxMB: 512, unusedMB: 400, availableMB: 420)
        s.levers.memory["e1-1"] = GuestMemory(balloonMB: 512, maxMB: 512, unusedMB: 500, availableMB: 500)   // to the floor
        s.levers.memory["e1-2"] = GuestMemory(balloonMB: 256, maxMB: 512, unusedMB: 2, availableMB: 10, swapInPerS: 30)
        let d = LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s)
        // 112 MB used + 20 % of 512 = 214; 12 used + 102 = 114 < the floor of 128 (a quarter).
        #expect(balloons(d) == ["e1-0": 214, "e1-1": 128, "e1-2": 384], "\(d)")
        #expect(d.first { $0.leverVM == "e1-2" }?.reason.contains("swaps in") == true)
        // Quiet, neither short nor idle: nothing.
        s.levers.memory = ["e1-0": GuestMemory(balloonMB: 512, maxMB: 512, unusedMB: 100, availableMB: 300)]
        #expect(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s).isEmpty)
        // Idle memory where no guest of the host is short stays where it is, even with little
        // free: a job starting in that VM finds it there.
        s.levers.memory = ["e1-0": GuestMemory(balloonMB: 512, maxMB: 512, unusedMB: 400, availableMB: 420)]
        s.levers.hostFreeMB["a"] = 10
        #expect(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s).isEmpty)
    }

    /// A guest under pressure on a host that cannot give it memory moves to a host that can:
    /// the one with the most free memory of its own domain first; a head node only within its
    /// VIOLIN's home domain; nowhere when no host has room.
    @Test func aHostOutOfMemorySendsTheVMWhereThereIsRoom() {
        var s = world([("e1-0", "x", 10), ("e1-1", "a", 10)])
        s.levers.hostFreeMB = ["a": 100, "b": 2000, "c": 3000, "x": 5000]
        s.levers.memory["e1-1"] = GuestMemory(balloonMB: 256, maxMB: 512, unusedMB: 1, availableMB: 5, majorFaultsPerS: 500)
        let d = LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s)
        #expect(balloons(d).isEmpty && migrations(d).map { "\($0.0)>\($0.1)" } == ["e1-1>c"], "\(d)")
        #expect(d.first?.reason.contains("MB short") == true, "\(d)")
        // The head of e1 (e1-0, home d1) sits on x in d2 and is short: only d1's hosts qualify.
        s.levers.memory = ["e1-0": GuestMemory(balloonMB: 256, maxMB: 512, unusedMB: 1, availableMB: 5, majorFaultsPerS: 500)]
        s.levers.hostFreeMB["x"] = 0
        #expect(migrations(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s)).map(\.1) == ["c"])
        s.levers.hostFreeMB = ["a": 0, "b": 0, "c": 0, "x": 0]
        #expect(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s).isEmpty, "no room anywhere: nothing to do")
    }

    /// A VM filling a host's link that another VIOLIN shares is capped at the fair share; the
    /// cap goes once the link is below half full; one VIOLIN alone on a full link is not capped.
    @Test func aVMSaturatingASharedLinkIsCappedAndReleased() {
        var s = world([("e1-0", "a", 10), ("e2-0", "a", 10), ("e3-0", "b", 10)])
        s.levers.linkMbps = ["a": 1000, "b": 1000]
        s.levers.sendMbps = ["e1-0": 900, "e2-0": 60, "e3-0": 990]
        let d = LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s)
        #expect(caps(d) == ["e1-0": 500], "\(d)")   // 960 Mbit/s is 96 % of the link; fair: 1000 / 2
        #expect(d.first?.reason.contains("2 VIOLINs") == true, "\(d)")
        s.levers.caps["e1-0"] = 500
        s.levers.sendMbps = ["e1-0": 200, "e2-0": 60]
        #expect(caps(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s)) == ["e1-0": 0])
        s.levers.linkMbps = [:]
        #expect(caps(LeversFirstPolicy(inner: Proposes(decisions: [])).decide(s)).isEmpty, "no link figure, no network lever")
    }
}

@Suite struct FairShareTests {
    /// Shares proportional to weight, capped at demand, the rest going to the others.
    @Test func sharesFollowWeightsUpToDemand() {
        let s = LeversFirstPolicy.fairShares(demand: [1, 1, 0.1], weights: [2048, 1024, 1024], cores: 1)
        #expect(abs(s[2] - 0.1) < 1e-9 && abs(s[0] - 0.6) < 1e-9 && abs(s[1] - 0.3) < 1e-9, "\(s)")
        #expect(LeversFirstPolicy.fairShares(demand: [0.5, 0.5], weights: [1024, 4096], cores: 2) == [0.5, 0.5])
    }
}

@Suite struct SimulatorMemoryTests {
    /// The memory model leaves the §4.2 mix as it was (working sets that fit their balloons: no
    /// job slower, no balloon moved), while on 12 GB hosts the autonomic layout's 384 MB balloons
    /// make jobs of more than that swap — and there the levers move balloons.
    @Test func memoryMattersOnlyWhereItIsShort() {
        let plain = Workload.paper(seed: 5)
        let fitting = Workload.withMemory(plain, seed: 5, memoryMB: 256...384)
        #expect(fitting.map(\.id) == plain.map(\.id) && fitting.allSatisfy { (256...384).contains($0.memoryMB) })
        let sim = Simulator()
        let before = sim.run(.autonomic("cost-benefit"), jobs: plain, policy: CostBenefitPolicy())
        let after = sim.run(.autonomic("cost-benefit"), jobs: fitting, policy: CostBenefitPolicy())
        #expect(before.jobs.map { [$0.start, $0.end] } == after.jobs.map { [$0.start, $0.end] } && before.migrations == after.migrations)
        let levers = sim.run(.autonomic("levers"), jobs: fitting, policy: LeversFirstPolicy(inner: CostBenefitPolicy()))
        #expect(levers.levers["set_balloon"] == nil, "no guest is short: \(levers.levers)")

        var small = Simulator()
        small.hostMemoryMB = 12_288
        let short = Workload.withMemory(plain, seed: 5, memoryMB: 300...500)
        // Nothing moves (no policy): the same jobs, short of memory on the crowded host, run slower.
        let fits = small.run(.autonomic("none"), jobs: Workload.withMemory(plain, seed: 5, memoryMB: 200...380), policy: nil)
        let swapped = small.run(.autonomic("none"), jobs: short, policy: nil)
        #expect(swapped.meanRuntime > fits.meanRuntime * 1.05, "jobs short of memory run slower: \(swapped.meanRuntime) against \(fits.meanRuntime)")
        let relieved = small.run(.autonomic("levers"), jobs: short, policy: LeversFirstPolicy(inner: CostBenefitPolicy()))
        #expect((relieved.levers["set_balloon"] ?? 0) > 0, "\(relieved.levers)")
    }
}

/// The paper's policy (§2.2.2), exactly: smoothed CPU use labels a VM high-demand above 75 %
/// (low below 25 %); a host's score is its high-demand VMs per core; single-VM live migrations
/// are made only when they lower the deviation of the host scores, trying the least-loaded
/// hosts of the same domain first (ties: the quicker migration); when no host of the domain
/// can take the load, the domain is overloaded and whole VIOLINs move to another domain that
/// can hold them. The head node never leaves its home domain; memory is never overcommitted;
/// a VM is not moved again within its cooldown, and at most `maxConcurrent` migrations run.
public struct PaperPolicy: AdaptationPolicy {
    public var name: String { "paper" }
    public var highThreshold = highDemandThreshold
    public var lowThreshold = 25.0
    public var cooldownSeconds = 120.0
    public var maxConcurrent = 4
    /// A move must lower the deviation by at least this much.
    public var minimumGain = 1e-9

    public init() {}

    public func decide(_ state: ClusterState) -> [Decision] {
        var scores = Scores(state, highThreshold: highThreshold)
        var budget = maxConcurrent - state.migrating.count
        var decisions: [Decision] = []
        var moved = Set<VMID>()
        let byDomain = Dictionary(grouping: state.hosts.values, by: \.domain)
        while budget > 0 {
            let sources = state.hosts.values.filter { scores.high[$0.id, default: 0] > 0 }
                .sorted { (scores.score($0.id), $1.id) > (scores.score($1.id), $0.id) }
            var acted = false
            for src in sources {
                if let d = bestSingleMove(from: src, state, &scores, byDomain[src.domain] ?? [], excluding: moved) {
                    decisions.append(d)
                    for (vm, to) in d.moves { scores.move(vm, to: to, state: state); moved.insert(vm) }
                    budget -= 1
                    acted = true
                    break
                }
                // Nothing in the domain helps: if the host has more high-demand VMs than cores,
                // the domain is overloaded.
                if scores.high[src.id, default: 0] > src.cores,
                   let d = bestViolinMove(from: src, state, &scores, byDomain, excluding: moved, budget: budget) {
                    decisions.append(d)
                    for (vm, to) in d.moves { scores.move(vm, to: to, state: state); moved.insert(vm) }
                    budget = 0
                    acted = true
                    break
                }
            }
            if !acted { break }
        }
        return decisions
    }

    func movable(_ vm: VMID, _ state: ClusterState, _ moved: Set<VMID>) -> Bool {
        !moved.contains(vm) && state.canMove(vm, cooldown: cooldownSeconds)
    }

    func bestSingleMove(from src: Host, _ state: ClusterState, _ scores: inout Scores, _ domainHosts: [Host],
                        excluding moved: Set<VMID>) -> Decision? {
        let before = scores.deviation
        let candidates = scores.placement.filter { $0.value == src.id && (state.cpu[$0.key] ?? 0) > highThreshold }
            .map(\.key).sorted().filter { movable($0, state, moved) }
        for vmID in candidates {
            guard let vm = state.vms[vmID] else { continue }
            let dests = domainHosts.filter { $0.id != src.id && scores.freeMemory($0.id, state: state) >= vm.memoryMB }
                .map { ($0, MigrationCost.seconds(of: vm, from: src, to: $0, network: state.network)) }
                .sorted { (scores.score($0.0.id), $0.1, $0.0.id) < (scores.score($1.0.id), $1.1, $1.0.id) }
            for (dst, cost) in dests where scores.deviation(moving: 1, from: src.id, to: dst.id) < before - minimumGain {
                let after = scores.deviation(moving: 1, from: src.id, to: dst.id)
                return .migrateVM(vm: vmID, from: src.id, to: dst.id, estimatedSeconds: cost, reason:
                    "host \(src.id) score \(fmt(scores.score(src.id))) (\(scores.high[src.id] ?? 0) high-demand VMs / \(src.cores) cores); "
                    + "\(dst.id) is least loaded in domain \(src.domain) (score \(fmt(scores.score(dst.id)))); "
                    + "deviation \(fmt(before, 3)) -> \(fmt(after, 3))")
            }
        }
        return nil
    }

    /// Whole VIOLINs with VMs on the overloaded host move to another domain that can hold them
    /// (no host there above one high-demand VM per core), the head node staying home.
    func bestViolinMove(from src: Host, _ state: ClusterState, _ scores: inout Scores, _ byDomain: [DomainID: [Host]],
                        excluding moved: Set<VMID>, budget: Int) -> Decision? {
        let violinsHere = Set(scores.placement.filter { $0.value == src.id }.compactMap { state.vms[$0.key]?.violin }).sorted()
        var best: (Decision, Double, Double)?
        for vid in violinsHere {
            guard let violin = state.violins[vid] else { continue }
            let members = scores.placement.filter { state.vms[$0.key]?.violin == vid && state.hosts[$0.value]?.domain == src.domain }
                .map(\.key).sorted()
                .filter { !($0 == violin.head && src.domain == violin.homeDomain) }
            // A whole VIOLIN moves at once (its VMs concurrently, §3.2): one job of the budget.
            guard !members.isEmpty, budget > 0, members.allSatisfy({ movable($0, state, moved) }) else { continue }
            for (domain, hosts) in byDomain.sorted(by: { $0.key < $1.key }) where domain != src.domain {
                // The head node never leaves home: only its home domain may receive it.
                if members.contains(violin.head) && domain != violin.homeDomain { continue }
                var trial = scores
                var placement: [VMID: HostID] = [:]
                var seconds = 0.0
                var fits = true
                for vmID in members {
                    guard let vm = state.vms[vmID], let from = state.hosts[trial.placement[vmID] ?? ""] else { fits = false; break }
                    let isHigh = (state.cpu[vmID] ?? 0) > highThreshold
                    let target = hosts.filter { trial.freeMemory($0.id, state: state) >= vm.memoryMB
                        && (!isHigh || trial.high[$0.id, default: 0] < $0.cores) }
                        .min { (trial.score($0.id), $0.id) < (trial.score($1.id), $1.id) }
                    guard let target else { fits = false; break }
                    placement[vmID] = target.id
                    seconds = max(seconds, MigrationCost.seconds(of: vm, from: from, to: target, network: state.network))
                    trial.move(vmID, to: target.id, state: state)
                }
                guard fits, trial.deviation < scores.deviation - minimumGain else { continue }
                let d = Decision.migrateViolin(violin: vid, to: domain, placement: placement, estimatedSeconds: seconds,
                    reason: "domain \(src.domain) overloaded (host \(src.id) has \(scores.high[src.id] ?? 0) high-demand VMs on \(src.cores) cores, "
                        + "no host of the domain can take one); domain \(domain) holds VIOLIN \(vid); "
                        + "deviation \(fmt(scores.deviation, 3)) -> \(fmt(trial.deviation, 3))")
                if best == nil || (trial.deviation, seconds) < (best!.1, best!.2) { best = (d, trial.deviation, seconds) }
            }
        }
        return best?.0
    }
}

/// A number with `digits` decimals, without Foundation.
func fmt(_ x: Double, _ digits: Int = 2) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (x * p).rounded() / p
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    }
    return s
}

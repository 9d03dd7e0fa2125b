/// Draining a host: where each of its VMs goes so the host can leave. Pure: the policy service
/// sends the moves to the executors.
public enum Drain {
    public struct Plan: Equatable, Sendable {
        public var moves: [(vm: VMID, to: HostID)]
        public var stuck: [VMID]
        public static func == (a: Plan, b: Plan) -> Bool {
            a.stuck == b.stuck && a.moves.map(\.vm) == b.moves.map(\.vm) && a.moves.map(\.to) == b.moves.map(\.to)
        }
    }

    /// Every VM on `host` goes to the host with the fewest VMs that has room for it and is not
    /// draining: of the host's own domain first, then any other — a head node only within its
    /// VIOLIN's home domain. Memory is never overcommitted; a VM nowhere to go is `stuck`.
    public static func plan(_ state: ClusterState, host: HostID, draining: Set<HostID> = []) -> Plan {
        guard let source = state.hosts[host] else { return Plan(moves: [], stuck: []) }
        var used: [HostID: Int] = [:], count: [HostID: Int] = [:]
        for (vm, h) in state.placement {
            used[h, default: 0] += state.vms[vm]?.memoryMB ?? 0
            count[h, default: 0] += 1
        }
        var plan = Plan(moves: [], stuck: [])
        let leaving = state.placement.filter { $0.value == host }.map(\.key).sorted()
        for vmID in leaving {
            guard let vm = state.vms[vmID] else { continue }
            let violin = state.violins[vm.violin]
            let isHead = violin?.head == vmID
            let candidates = state.hosts.values.filter { h in
                h.id != host && !draining.contains(h.id) && h.memoryMB - used[h.id, default: 0] >= vm.memoryMB
                    && (!isHead || h.domain == violin?.homeDomain)
            }
            let best = candidates.min { a, b in
                (a.domain == source.domain ? 0 : 1, count[a.id, default: 0], a.id)
                    < (b.domain == source.domain ? 0 : 1, count[b.id, default: 0], b.id)
            }
            guard let best else { plan.stuck.append(vmID); continue }
            plan.moves.append((vmID, best.id))
            used[best.id, default: 0] += vm.memoryMB
            count[best.id, default: 0] += 1
        }
        return plan
    }
}

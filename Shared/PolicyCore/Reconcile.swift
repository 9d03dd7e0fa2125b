/// The inventory against what the hosts say they run. Pure: the policy asks every executor for
/// its VMs and hands the answers in; what comes out is corrected (a VM the inventory places on
/// one host that runs on another: a missed `executor.migration_completed`) or reported.
public enum Reconcile {
    public enum Drift: Equatable, Sendable, Hashable {
        /// The inventory says `from`; `to` alone runs it. Corrected.
        case moved(vm: VMID, from: HostID, to: HostID)
        /// Every host answered and none runs it. Reported.
        case missing(vm: VMID, host: HostID)
        /// A host runs a VM the inventory does not know. Reported.
        case stray(vm: String, host: HostID)

        public var kind: String {
            switch self {
            case .moved: "moved"
            case .missing: "missing"
            case .stray: "stray"
            }
        }
    }

    /// `reports`: per host, the VMs it runs; nil when it did not answer. A VM that two hosts
    /// report is being migrated: left alone. A VM no answering host runs is `missing` only when
    /// every host answered (it may be on one that did not).
    public static func drift(placement: [VMID: HostID], reports: [HostID: Set<String>?]) -> [Drift] {
        var out: [Drift] = []
        let answered = reports.compactMapValues { $0 }
        let everyoneAnswered = answered.count == reports.count
        for (vm, host) in placement.sorted(by: { $0.key < $1.key }) {
            let holders = answered.filter { $0.value.contains(vm) }.map(\.key).sorted()
            if holders.count == 1, holders[0] != host {
                out.append(.moved(vm: vm, from: host, to: holders[0]))
            } else if holders.isEmpty, everyoneAnswered, !host.isEmpty {
                out.append(.missing(vm: vm, host: host))
            }
        }
        for (host, vms) in answered.sorted(by: { $0.key < $1.key }) {
            for vm in vms.sorted() where placement[vm] == nil { out.append(.stray(vm: vm, host: host)) }
        }
        return out
    }

    /// The VMs missing in both `now` and `before` (two looks in a row), whatever host the
    /// inventory gave them.
    public static func missingTwice(_ now: [Drift], _ before: Set<Drift>) -> Set<VMID> {
        func missing<S: Sequence<Drift>>(_ d: S) -> Set<VMID> { Set(d.compactMap { if case .missing(let vm, _) = $0 { vm } else { nil } }) }
        return missing(now).intersection(missing(before))
    }
}

/// VMs lost with their host: a host that has not answered for `lostAfter` seconds is taken for
/// lost, and the VMs the inventory places there are lost with it. Pure.
public enum Lost {
    /// The lost VMs, by VIOLIN, of the VIOLINs in `restartAlways`: those on a host silent for
    /// `lostAfter`, and those `missing` (every host answered and none runs it: a host back
    /// from a power cut before anyone noticed it was gone comes back without its VMs).
    public static func toRestart(placement: [VMID: HostID], violinOf: [VMID: String], silentSince: [HostID: Double],
                                 now: Double, lostAfter: Double, restartAlways: Set<String>, missing: Set<VMID> = []) -> [String: [VMID]] {
        var out: [String: [VMID]] = [:]
        for (vm, host) in placement.sorted(by: { $0.key < $1.key }) {
            guard let v = violinOf[vm], restartAlways.contains(v) else { continue }
            let silentLongEnough = silentSince[host].map { now - $0 >= lostAfter } ?? false
            guard silentLongEnough || missing.contains(vm) else { continue }
            out[v, default: []].append(vm)
        }
        return out
    }
}

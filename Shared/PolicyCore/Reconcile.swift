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
        /// The inventory says `from`, which answers without it; no host that answers runs it; and
        /// `from`'s own journal says it migrated it to `to`, which does not answer. Corrected:
        /// the VM is where it went (and is lost with `to` if `to` stays silent).
        case departed(vm: VMID, from: HostID, to: HostID)

        public var kind: String {
            switch self {
            case .moved, .departed: "moved"
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

    /// The VMs whose inventory host answered without them and that no answering host runs:
    /// whose journals to read (`departed`).
    public static func unaccounted(placement: [VMID: HostID], reports: [HostID: Set<String>?]) -> [VMID: HostID] {
        let answered = reports.compactMapValues { $0 }
        var out: [VMID: HostID] = [:]
        for (vm, host) in placement {
            guard let ran = answered[host], !ran.contains(vm), !answered.values.contains(where: { $0.contains(vm) }) else { continue }
            out[vm] = host
        }
        return out
    }

    /// Of the `unaccounted` VMs, those their host's journal says it migrated away
    /// (`destinations`: per host, each VM's destination in its newest completed migration from
    /// there) to a host that does not answer now (silent, or lost and no longer asked): the
    /// policy missed the `executor.migration_completed` (it was down) and the destination went
    /// silent before a reconciliation could see the VM there.
    public static func departed(_ unaccounted: [VMID: HostID], reports: [HostID: Set<String>?],
                                destinations: [HostID: [VMID: HostID]]) -> [Drift] {
        unaccounted.sorted(by: { $0.key < $1.key }).compactMap { vm, host in
            guard let to = destinations[host]?[vm], to != host, (reports[to] ?? nil) == nil else { return nil }
            return .departed(vm: vm, from: host, to: to)
        }
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
    /// Each host's silence after one look (`answered`: the hosts that answered it; every other
    /// host in `asked` did not): an answering host is not silent; a silent one is silent since
    /// it first was — or since `now` when the look before heard no host at all. That look was
    /// the policy cut off (its node or link down), not every host gone: a silence it could not
    /// tell from its own does not count toward `lostAfter` (else the first look after its
    /// return, with some hosts not yet answering, would take them for lost and make their VMs
    /// again while they still run).
    public static func silence(_ before: [HostID: Double], asked: Set<HostID>, answered: Set<HostID>,
                               previousHeardNone: Bool, now: Double) -> [HostID: Double] {
        var out = before
        for host in asked {
            if answered.contains(host) { out[host] = nil } else { out[host] = previousHeardNone ? now : (before[host] ?? now) }
        }
        return out
    }

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

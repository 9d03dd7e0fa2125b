import Foundation
import PolicyCore
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// VIOLINs made from a spec: placed with `Placement`, made on the hosts all at once or not at
/// all, and destroyed on every host that answers.
extension PolicyServer {
    /// A host as the creation sees it: its inventory row, what its executor answered.
    struct Answering {
        var host: PolicyCore.Host
        var capacity: Placement.Host
        var mesh: String
        var key: String
        var vms: Set<String>
        /// The MAC of each VIOLIN VM it runs.
        var macs: [String: String] = [:]
    }

    func createEnvironment(_ r: PolicyAPI.CreateEnvironment) throws(ProtocolError) -> PolicyAPI.EnvironmentReply {
        let spec: ViolinSpec
        do { spec = try ViolinSpec.parse(Self.tree(r.spec)) } catch {
            throw ProtocolError(.invalidBody, "spec: \(error.key): \(error.reason)")
        }
        let inv = try storeCall { try store.inventory() }
        guard !inv.violins.contains(where: { $0.id == spec.name }) else { throw ProtocolError(.conflict, "a VIOLIN named \(spec.name) exists") }
        let taken = Set(inv.vms.map(\.id))
        if let clash = spec.vms.first(where: { taken.contains($0.name) }) {
            throw ProtocolError(.conflict, "a VM named \(clash.name) exists (VM names are unique in the infrastructure)")
        }
        if !r.dryRun { emit(PolicyAPI.PhaseChanged(name: spec.name, phase: "placing", reason: "\(spec.vms.count) VMs, \(spec.placement.rawValue)")) }
        let (hosts, vnis) = answering(inv)
        var capacities = hosts.map(\.capacity)
        for i in capacities.indices where inv.draining.contains(capacities[i].id) { capacities[i].draining = true }
        let plan: Placement.Plan
        switch Placement.place(spec, hosts: capacities, usedVNIs: vnis, heldPorts: inv.heldPorts) {
        case .failure(let refusal): throw ProtocolError(.conflict, "\(spec.name) does not fit: \(refusal)")
        case .success(let p): plan = p
        }
        let reply = PolicyAPI.EnvironmentReply(name: spec.name, vni: plan.vni, phase: r.dryRun ? "planned" : "running", vms: plan.vms.map {
            .init(name: $0.vm.name, host: $0.host, domain: $0.domain, mac: $0.mac, nicPort: $0.nicPort, memoryMB: $0.vm.memoryMB,
                  image: $0.vm.image, ip: $0.vm.ip, why: $0.reason)
        })
        if r.dryRun { return reply }
        emit(PolicyAPI.PhaseChanged(name: spec.name, phase: "creating", reason: "\(plan.vms.count) VMs on \(Set(plan.vms.map(\.host)).count) hosts"))
        // Journaled first: a policy stopped in the middle finds what it was making (`cleanUp`).
        creatingLock.withLock { _ = creating.insert(spec.name) }
        defer { creatingLock.withLock { _ = creating.remove(spec.name) } }
        try storeCall { try store.beginCreation(spec.name, vms: plan.vms.map { "\($0.vm.name)@\($0.host)" }) }
        do {
            try make(spec, plan, hosts: Dictionary(uniqueKeysWithValues: hosts.map { ($0.host.id, $0) }), inv: inv)
        } catch {
            try? store.endCreation(spec.name)
            ledger(spec.name, plan, capacities, outcome: "failed: \(error.message)")
            throw error
        }
        ledger(spec.name, plan, capacities, outcome: "created")
        try storeCall { try store.createViolin(id: spec.name, homeDomain: spec.homeDomain, head: spec.head,
                                               vms: plan.vms.map { .init(id: $0.vm.name, memoryMB: $0.vm.memoryMB, host: $0.host, mac: $0.mac, nicPort: $0.nicPort) }) }
        try? store.saveSpec(spec.name, body: JSONText.string(r.spec), vni: plan.vni)
        try? store.endCreation(spec.name)
        emit(PolicyAPI.PhaseChanged(name: spec.name, phase: "running", reason: "every VM created"))
        return reply
    }

    /// The creation in the decision ledger: where each VM went and why, from which figures.
    func ledger(_ name: String, _ plan: Placement.Plan, _ hosts: [Placement.Host], outcome: String) {
        let body: JSONValue = ["violin": .string(name), "vni": .number(Double(plan.vni)),
                               "vms": .object(Dictionary(uniqueKeysWithValues: plan.vms.map { ($0.vm.name, JSONValue.string($0.host)) }))]
        let inputs: JSONValue = ["free_mb": .object(Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, JSONValue.number(Double($0.freeMB))) }))]
        let reason = plan.vms.map { "\($0.vm.name) on \($0.reason)" }.joined(separator: "; ")
        _ = try? store.record(kind: "create_environment", body: JSONText.string(body), reason: reason, inputs: JSONText.string(inputs),
                              mode: mode, outcome: outcome, vms: [], at: Date().timeIntervalSince1970)
    }

    /// Every host whose executor answers, with its free memory, images, VMs and NIC ports; the
    /// VNIs in use anywhere.
    func answering(_ inv: PolicyStore.Inventory) -> ([Answering], Set<UInt32>) {
        var out: [Answering] = [], vnis = Set<UInt32>()
        for h in inv.hosts where !(inv.endpoints[h.id]?.executor ?? "").isEmpty {
            let client = executorClient(h.id, inv)
            defer { client.close() }
            guard let info = try? client.call(ExecutorAPI.HostInfo(), retries: 0), let vms = try? client.call(ExecutorAPI.VMs(), retries: 0),
                  let images = try? client.call(ExecutorAPI.Images(), retries: 0) else { continue }
            var capacity = Placement.Host(id: h.id, domain: h.domain, freeMB: info.freeMemoryMB, images: Set(images.images.map(\.name)))
            capacity.usedPorts = Set(vms.vms.compactMap(\.nicPort))
            vnis.formUnion(vms.vms.compactMap(\.vni))
            out.append(Answering(host: h, capacity: capacity, mesh: info.mesh, key: inv.keys[h.id] ?? "", vms: Set(vms.vms.map(\.name)),
                                 macs: Dictionary(vms.vms.compactMap { v in v.mac.map { (v.name, $0) } }, uniquingKeysWith: { a, _ in a })))
        }
        return (out, vnis)
    }

    /// The VMs of `plan` made on their hosts: the first alone (its host's mesh starts the
    /// VIOLIN), the others at once, each host's meshes joining through the first's. If one
    /// fails, every one already made is destroyed, and the error says where and why.
    /// With `joining`, the VIOLIN runs already: every VM is made at once, joining through that
    /// host's mesh, and a failure does not fail the VIOLIN.
    func make(_ spec: ViolinSpec, _ plan: Placement.Plan, hosts: [String: Answering], inv: PolicyStore.Inventory,
              joining: Answering? = nil) throws(ProtocolError) {
        func request(_ p: Placement.Placed, seed: Answering?) -> ExecutorAPI.CreateVM {
            var r = ExecutorAPI.CreateVM(name: p.vm.name, vni: plan.vni, mac: MACAddress(p.mac)!, kernel: "", nicPort: p.nicPort)
            r.image = p.vm.image; r.memoryMB = p.vm.memoryMB; r.vcpus = p.vm.vcpus
            if let ip = p.vm.ip { r.cmdline = "violin.ip=\(ip)/24" }
            r.uplink = spec.uplink == .nat && p.vm.name == spec.head
            r.nic = spec.nic.rawValue
            if let seed { r.seed = seed.mesh; r.seedKey = seed.key.isEmpty ? nil : seed.key }
            return r
        }
        let first = plan.vms[0]
        let outcomes = Outcomes(plan.vms.count)
        func create(_ i: Int, seed: Answering?) {
            let p = plan.vms[i]
            let client = executorClient(p.host, inv, work: true)
            defer { client.close() }
            do {
                _ = try client.call(request(p, seed: seed), retries: 0)
                outcomes.set(i, "")
                emit(PolicyAPI.VMPlaced(violin: spec.name, vm: p.vm.name, host: p.host, domain: p.domain, why: p.reason))
            } catch { outcomes.set(i, "\(error)") }
        }
        if let joining {
            DispatchQueue.concurrentPerform(iterations: plan.vms.count) { create($0, seed: joining) }
        } else {
            create(0, seed: nil)
            if outcomes.values[0].isEmpty {
                let seed = hosts[first.host]
                DispatchQueue.concurrentPerform(iterations: plan.vms.count - 1) { create($0 + 1, seed: seed) }
            }
        }
        let results = outcomes.values
        guard let failed = results.firstIndex(where: { !$0.isEmpty }) else { return }
        for (i, p) in plan.vms.enumerated() where results[i].isEmpty {
            let client = executorClient(p.host, inv, work: true)
            _ = try? client.call(ExecutorAPI.DestroyVM(name: p.vm.name), retries: 0)
            client.close()
        }
        let why = "creating \(plan.vms[failed].vm.name) on \(plan.vms[failed].host): \(results[failed])"
        if joining == nil { emit(PolicyAPI.PhaseChanged(name: spec.name, phase: "failed", reason: why + "; every VM made for it was destroyed")) }
        throw ProtocolError(.unavailable, why + "; every VM made for \(spec.name) was destroyed")
    }

    /// Creations a stopped policy left half done: every VM of them destroyed on the hosts that
    /// answer (one already gone counts as destroyed); once all are, the creation is closed as
    /// failed. Run at start and at each reconciliation, until nothing is left.
    func cleanUp() {
        pruneIfDue()
        destroyLeftovers()
        guard let unfinished = try? store.unfinishedCreations(), !unfinished.isEmpty, let inv = try? store.inventory() else { return }
        let busy = creatingLock.withLock { creating }
        for (name, vms) in unfinished.sorted(by: { $0.key < $1.key }) where !busy.contains(name) {
            var all = true
            for entry in vms {
                let parts = entry.split(separator: "@", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                guard answers(parts[1], inv) else { all = false; continue }
                let client = executorClient(parts[1], inv, work: true)
                defer { client.close() }
                do { _ = try client.call(ExecutorAPI.DestroyVM(name: parts[0]), retries: 0) } catch {
                    if case .error(let e) = error, e.code == .notFound { continue }
                    all = false
                }
            }
            guard all else { continue }
            try? store.endCreation(name)
            emit(PolicyAPI.PhaseChanged(name: name, phase: "failed", reason: "the policy stopped while making it; every VM made for it was destroyed"))
        }
    }

    /// A running VIOLIN brought to its changed spec: the VMs added are placed around the ones it
    /// has and made all or nothing (joining through its head's host), then the VMs removed are
    /// destroyed. Anything else that changed is refused before anything is done.
    func applyEnvironment(_ r: PolicyAPI.ApplyEnvironment) throws(ProtocolError) -> PolicyAPI.AppliedReply {
        let spec: ViolinSpec
        do { spec = try ViolinSpec.parse(Self.tree(r.spec)) } catch { throw ProtocolError(.invalidBody, "spec: \(error.key): \(error.reason)") }
        let inv = try storeCall { try store.inventory() }
        guard inv.violins.contains(where: { $0.id == spec.name }) else {
            throw ProtocolError(.notFound, "no VIOLIN named \(spec.name) (violin create makes one)")
        }
        guard let saved = savedSpec(spec.name) else {
            throw ProtocolError(.conflict, "\(spec.name) was not made from a spec; it cannot be applied to")
        }
        let old = saved.spec
        let change: ViolinSpec.Change
        switch ViolinSpec.change(from: old, to: spec) {
        case .failure(let e): throw ProtocolError(.conflict, "\(spec.name): \(e.key) \(e.reason)")
        case .success(let c): change = c
        }
        let taken = Set(inv.vms.map(\.id))
        if let clash = change.added.first(where: { taken.contains($0.name) }) {
            throw ProtocolError(.conflict, "a VM named \(clash.name) exists (VM names are unique in the infrastructure)")
        }
        let added = try addVMs(spec, change.added, vni: saved.vni, inv: inv)
        var removed: [String] = [], left: [String] = []
        for name in change.removed {
            let host = inv.placement[name] ?? ""
            if answers(host, inv) {
                let client = executorClient(host, inv, work: true)
                defer { client.close() }
                do { _ = try client.call(ExecutorAPI.DestroyVM(name: name), retries: 0); removed.append(name) } catch {
                    if case .error(let e) = error, e.code == .notFound { removed.append(name) } else { left.append("\(name)@\(host)") }
                }
            } else {
                left.append("\(name)@\(host)")
            }
            if left.last?.hasPrefix(name + "@") == true { try? store.addLeftover(vm: name, host: host, violin: spec.name, nicPort: inv.nicPorts[name] ?? 0) }
            try? store.removeVM(name)
        }
        try? store.saveSpec(spec.name, body: JSONText.string(r.spec), vni: saved.vni)
        emit(PolicyAPI.PhaseChanged(name: spec.name, phase: "running", reason: "applied: \(added.count) VMs added, \(change.removed.count) removed"))
        return PolicyAPI.AppliedReply(name: spec.name, vni: saved.vni, added: added.map {
            .init(name: $0.vm.name, host: $0.host, domain: $0.domain, mac: $0.mac, nicPort: $0.nicPort, memoryMB: $0.vm.memoryMB,
                  image: $0.vm.image, ip: $0.vm.ip, why: $0.reason)
        }, removed: removed, left: left)
    }

    /// `vms` placed around the VIOLIN's running VMs, in its VNI, made all or nothing.
    /// With `restarting`, the VMs are in the inventory already (placed on a lost host): they are
    /// moved to where they are made again.
    func addVMs(_ spec: ViolinSpec, _ vms: [ViolinSpec.VM], vni: UInt32, inv: PolicyStore.Inventory,
                restarting: Bool = false) throws(ProtocolError) -> [Placement.Placed] {
        guard !vms.isEmpty else { return [] }
        let (hosts, _) = answering(inv)
        let byID = Dictionary(uniqueKeysWithValues: hosts.map { ($0.host.id, $0) })
        let existing = try Self.macsInUse(spec.name, inv: inv, answered: byID.mapValues(\.macs))
        var capacities = hosts.map(\.capacity)
        for i in capacities.indices where inv.draining.contains(capacities[i].id) { capacities[i].draining = true }
        let plan: Placement.Plan
        switch Placement.place(spec, hosts: capacities, usedVNIs: [], heldPorts: inv.heldPorts,
                               existing: Placement.Existing(vni: vni, vms: existing)) {
        case .failure(let refusal): throw ProtocolError(.conflict, "\(spec.name) does not fit: \(refusal)")
        case .success(let p): plan = p
        }
        let joining = byID[existing[spec.head]?.host ?? ""] ?? existing.values.lazy.compactMap { byID[$0.host] }.first
        // Only the VMs asked for: the spec's others are running (or being restarted elsewhere).
        let asked = Set(vms.map(\.name))
        if let stray = plan.vms.first(where: { !asked.contains($0.vm.name) }) {
            throw ProtocolError(.internalError, "\(stray.vm.name) of \(spec.name) runs nowhere the inventory knows")
        }
        // Journaled like a creation (and kept from `cleanUp` while it runs): a policy stopped in the
        // middle destroys the VMs it was adding when it runs again.
        let journal = spec.name + "/apply"
        creatingLock.withLock { _ = creating.insert(journal) }
        defer { creatingLock.withLock { _ = creating.remove(journal) } }
        try storeCall { try store.beginCreation(journal, vms: plan.vms.map { "\($0.vm.name)@\($0.host)" }) }
        defer { try? store.endCreation(journal) }
        try make(spec, plan, hosts: byID, inv: inv, joining: joining)
        if restarting {
            for p in plan.vms { try storeCall { try store.remade(vm: p.vm.name, on: p.host, mac: p.mac, nicPort: p.nicPort) } }
        } else {
            try storeCall { try store.addVMs(spec.name, plan.vms.map { .init(id: $0.vm.name, memoryMB: $0.vm.memoryMB, host: $0.host, mac: $0.mac, nicPort: $0.nicPort) }) }
        }
        return plan.vms
    }

    /// The VMs of `restart: always` VIOLINs lost with their host (silent for `hostLostAfter`),
    /// made again on hosts that answer, from their images; the old copies are destroyed if their
    /// host answers again. One that fits nowhere is tried again at the next reconciliation.
    func restartLost(_ inv: PolicyStore.Inventory, missing: Set<VMID> = []) {
        var specs: [String: (spec: ViolinSpec, vni: UInt32)] = [:]
        for v in inv.violins {
            guard let saved = savedSpec(v.id), saved.spec.restart == .always else { continue }
            specs[v.id] = (saved.spec, saved.vni)
        }
        guard !specs.isEmpty else { return }
        let silent = lock.withLock { silentSince }
        // A VIOLIN being made, changed or destroyed has VMs missing on purpose.
        let busy = creatingLock.withLock { Set(creating.map { String($0.split(separator: "/").first ?? "") }) }
        let violinOfVM = Dictionary(uniqueKeysWithValues: inv.vms.map { ($0.id, $0.violin) })
        let missing = missing.filter { !busy.contains(violinOfVM[$0] ?? "") }
        let lost = Lost.toRestart(placement: inv.placement, violinOf: violinOfVM,
                                  silentSince: silent, now: Date().timeIntervalSince1970, lostAfter: options.hostLostAfter,
                                  restartAlways: Set(specs.keys), missing: missing)
        // A VIOLIN being made, changed or destroyed is left alone, lost VMs and missing ones alike.
        for (violin, vms) in lost.sorted(by: { $0.key < $1.key }) where !busy.contains(violin) {
            do throws(ProtocolError) {
                try exclusively(violin) { () throws(ProtocolError) in
                    // A destroy may have ended it, or its VMs moved, since the inventory was read.
                    guard let now = try? store.inventory(), now.violins.contains(where: { $0.id == violin }) else { return }
                    let still = vms.filter { now.placement[$0] == inv.placement[$0] }
                    guard !still.isEmpty else { return }
                    try restart(violin, still, spec: specs[violin]!, inv: now, silent: silent)
                }
            } catch {
                logger.warning("cannot restart lost VMs", metadata: ["violin": "\(violin)", "vms": "\(vms)", "error": "\(error.message)"])
            }
        }
    }

    /// Lost VMs of one `restart: always` VIOLIN made again (in the lost host's domain first).
    private func restart(_ violin: String, _ vms: [VMID], spec saved: (spec: ViolinSpec, vni: UInt32), inv: PolicyStore.Inventory,
                         silent: [HostID: Double]) throws(ProtocolError) {
        let (pinned, vni) = saved
        let gone = Set(vms)
        let domainOf = Dictionary(uniqueKeysWithValues: inv.hosts.map { ($0.id, $0.domain) })
        var spec = Self.unpinned(pinned, gone, from: Set(silent.keys), domainOf: domainOf)
        var around = inv
        around.vms.removeAll { gone.contains($0.id) }
        let made: [Placement.Placed]
        do {
            made = try addVMs(spec, spec.vms.filter { gone.contains($0.name) }, vni: vni, inv: around, restarting: true)
        } catch let e where e.code == .conflict && spec != pinned {
            // No room in the lost host's domain: anywhere the VIOLIN's rules allow.
            spec = Self.unpinned(pinned, gone, from: Set(silent.keys), domainOf: domainOf, anywhere: true)
            made = try addVMs(spec, spec.vms.filter { gone.contains($0.name) }, vni: vni, inv: around, restarting: true)
        }
        for p in made {
            let from = inv.placement[p.vm.name] ?? ""
            // An old copy can only be on a host that did not answer; one that answered
            // without the VM has none (and may be where it is made again).
            if silent[from] != nil, from != p.host { try? store.addLeftover(vm: p.vm.name, host: from, violin: violin, nicPort: inv.nicPorts[p.vm.name] ?? 0) }
            let cause = silent[from].map { "host \(from) has not answered for \(Int(Date().timeIntervalSince1970 - $0)) s" }
                ?? "host \(from) answers but runs it no more, and no host does"
            emit(PolicyAPI.VMRestarted(violin: violin, vm: p.vm.name, from: from, to: p.host, why:
                "\(cause); made again on \(p.host) from image \(p.vm.image): a new boot, its memory is gone"))
        }
    }

    /// The VIOLIN's VMs and their MACs: as their hosts say, or, for a host that does not answer
    /// now, as the VM was made; unavailable when neither knows.
    public static func macsInUse(_ violin: String, inv: PolicyStore.Inventory, answered: [HostID: [String: String]])
        throws(ProtocolError) -> [String: Placement.Existing.VM] {
        var existing: [String: Placement.Existing.VM] = [:]
        for vm in inv.vms where vm.violin == violin {
            let host = inv.placement[vm.id] ?? ""
            guard let mac = answered[host]?[vm.id] ?? inv.macs[vm.id].flatMap({ $0.isEmpty ? nil : $0 }) else {
                throw ProtocolError(.unavailable, "\(vm.id)'s host \(host) does not answer: the MACs in use in \(violin) are not all known")
            }
            existing[vm.id] = .init(host: host, mac: mac)
        }
        return existing
    }

    /// The spec with the lost VMs' host pins loosened — `restart: always` means on another
    /// host: a VM pinned to a host that is silent or gone from the inventory is made again in
    /// that host's domain, or, `anywhere`, wherever the VIOLIN's other rules allow.
    public static func unpinned(_ spec: ViolinSpec, _ lost: Set<String>, from silent: Set<String>, domainOf: [String: String],
                         anywhere: Bool = false) -> ViolinSpec {
        var out = spec
        for i in out.vms.indices where lost.contains(out.vms[i].name) {
            guard let pin = out.vms[i].host, silent.contains(pin) || domainOf[pin] == nil else { continue }
            out.vms[i].host = nil
            out.vms[i].domain = anywhere ? nil : domainOf[pin]
        }
        return out
    }

    /// The spec a VIOLIN was last made or applied from, read back: nil for one made otherwise.
    func savedSpec(_ violin: String) -> (spec: ViolinSpec, vni: UInt32, createdAt: String)? {
        guard let saved = try? store.spec(violin), let json = try? JSONText.parse(Array(saved.body.utf8)),
              let spec = try? ViolinSpec.parse(Self.tree(json)) else { return nil }
        return (spec, saved.vni, saved.createdAt)
    }

    /// Whether `host`'s executor answers a quick request now.
    func answers(_ host: String, _ inv: PolicyStore.Inventory) -> Bool {
        let client = executorClient(host, inv)
        defer { client.close() }
        return (try? client.call(ExecutorAPI.HostInfo(), retries: 0)) != nil
    }

    /// VMs of destroyed VIOLINs left on hosts that did not answer: destroyed once they do.
    func destroyLeftovers() {
        guard let left = try? store.leftovers(), !left.isEmpty, let inv = try? store.inventory() else { return }
        for l in left where answers(l.host, inv) {
            let client = executorClient(l.host, inv, work: true)
            defer { client.close() }
            do { _ = try client.call(ExecutorAPI.DestroyVM(name: l.vm), retries: 0) } catch {
                guard case .error(let e) = error, e.code == .notFound else { continue }
            }
            try? store.removeLeftover(vm: l.vm, host: l.host)
            // The old copy of a restarted VM, or a VM of a destroyed VIOLIN.
            if !inv.violins.contains(where: { $0.id == l.violin }) {
                emit(PolicyAPI.PhaseChanged(name: l.violin, phase: "destroyed", reason: "\(l.vm) destroyed on \(l.host), which answers again"))
            } else {
                logger.notice("old copy destroyed", metadata: ["vm": "\(l.vm)", "host": "\(l.host)"])
            }
        }
    }

    /// Never while a restart of its lost VMs runs (`exclusively`): that restart's VMs would
    /// outlive the VIOLIN.
    func destroyEnvironment(_ name: String) throws(ProtocolError) -> PolicyAPI.DestroyedReply {
        try exclusively(name) { () throws(ProtocolError) in try destroyNow(name) }
    }

    private func destroyNow(_ name: String) throws(ProtocolError) -> PolicyAPI.DestroyedReply {
        let inv = try storeCall { try store.inventory() }
        guard inv.violins.contains(where: { $0.id == name }) else { throw ProtocolError(.notFound, "no VIOLIN named \(name)") }
        emit(PolicyAPI.PhaseChanged(name: name, phase: "destroying", reason: "asked"))
        // While its VMs go, one already destroyed is missing, not lost: never made again.
        creatingLock.withLock { _ = creating.insert(name + "/destroy") }
        defer { creatingLock.withLock { _ = creating.remove(name + "/destroy") } }
        var destroyed: [String] = [], left: [String] = []
        var answering: [String: Bool] = [:]      // asked once per host
        for vm in inv.vms where vm.violin == name {
            let host = inv.placement[vm.id] ?? ""
            let client = executorClient(host, inv, work: true)
            defer { client.close() }
            // A host that does not answer at once is not waited for: its VMs are left over.
            do throws(ServiceClient.Failure) {
                if answering[host] == nil { answering[host] = answers(host, inv) }
                guard answering[host] == true else { throw .error(ProtocolError(.unavailable, "\(host) does not answer")) }
                _ = try client.call(ExecutorAPI.DestroyVM(name: vm.id), retries: 0)
                destroyed.append(vm.id)
            } catch {
                // Gone already counts as destroyed; a host that does not answer keeps it.
                if case .error(let e) = error, e.code == .notFound { destroyed.append(vm.id) } else {
                    left.append("\(vm.id)@\(host)")
                    try? store.addLeftover(vm: vm.id, host: host, violin: name, nicPort: inv.nicPorts[vm.id] ?? 0)
                }
            }
        }
        try storeCall { try store.destroyViolin(name) }
        emit(PolicyAPI.PhaseChanged(name: name, phase: "destroyed", reason: left.isEmpty ? "every VM destroyed" : "left on hosts that did not answer: \(left.joined(separator: ", "))"))
        return PolicyAPI.DestroyedReply(name: name, destroyed: destroyed, left: left)
    }

    /// A spec sent as JSON, as the spec reader takes it (line 0: it came over the wire).
    static func tree(_ v: JSONValue) -> SpecNode {
        switch v {
        case .object(let o): return .mapping(o.keys.sorted().map { SpecNode.Entry(key: $0, line: 0, value: tree(o[$0]!)) }, line: 0)
        case .array(let a): return .list(a.map(tree), line: 0)
        case .string(let s): return .scalar(s, line: 0)
        case .number(let n): return .scalar(n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(n), line: 0)
        case .bool(let b): return .scalar(b ? "true" : "false", line: 0)
        case .null: return .scalar("", line: 0)
        }
    }
}

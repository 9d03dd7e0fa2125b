import Foundation
import PolicyCore
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The fine-grain levers as the service runs them: their figures from `monitor.sampled`, and
/// each decision carried out on the VM's host — a CPU weight or a balloon by its monitor, a
/// network cap by its mesh on the VM's switch port.
extension PolicyServer {
    /// What one `monitor.sampled` of `host` tells the levers about the VMs it runs (`own`).
    func ingestLevers(_ body: JSONValue, host: String, own: Set<String>) {
        let readings = MonitorAPI.Sampled.leverReadings(body).filter { own.contains($0.vm) }
        let free = MonitorAPI.Sampled.hostFreeMemoryMB(body)
        lock.withLock {
            if let free { leverState.hostFreeMB[host] = free }
            for r in readings {
                if let g = r.guest {
                    // Swap figures come in KiB/s; the levers count 4 KiB pages.
                    leverState.memory[r.vm] = GuestMemory(balloonMB: r.memoryMB, maxMB: r.maxMemoryMB, unusedMB: g.unusedMB,
                                                          availableMB: g.availableMB, swapInPerS: (g.swapInKBPerS ?? 0) / 4,
                                                          majorFaultsPerS: g.majorFaultsPerS ?? 0)
                } else {
                    leverState.memory[r.vm] = nil
                }
                leverState.sendMbps[r.vm] = r.net?.txMbitS
            }
        }
    }

    /// The levers' view for a round: figures of the VMs placed, the links as configured.
    func leverView(placement: [String: String], hosts: [String]) -> LeverState {
        var view = lock.withLock { leverState }
        let placed = Set(placement.keys)
        view.memory = view.memory.filter { placed.contains($0.key) }
        view.sendMbps = view.sendMbps.filter { placed.contains($0.key) }
        if options.linkMbps > 0 { for h in hosts { view.linkMbps[h] = options.linkMbps } }
        return view
    }

    /// Carries out a lever on the VM's host; "sent", or "failed: ..." with the reason.
    func executeLever(_ d: Decision, inv: PolicyStore.Inventory, state: ClusterState) -> String {
        guard let vm = d.leverVM, let host = state.placement[vm] else { return "failed: the VM is placed nowhere" }
        let key = inv.keys[host] ?? ""
        do throws(ProtocolError) {
            switch d {
            case .setCPUWeight(_, let weight, _):
                _ = try hostCall(inv.endpoints[host]?.monitor ?? "", key: key, MonitorAPI.SetCPUWeight(vm: vm, weight: weight))
                lock.withLock { leverState.weights[vm] = weight == LeversFirstPolicy.defaultWeight ? nil : weight }
            case .setBalloon(_, let mb, _):
                _ = try hostCall(inv.endpoints[host]?.monitor ?? "", key: key, MonitorAPI.SetBalloon(vm: vm, memoryMB: mb))
            case .setPortRate(_, let mbit, _):
                guard let violin = inv.vms.first(where: { $0.id == vm })?.violin, let vni = savedSpec(violin)?.vni else {
                    return "failed: no VNI known for \(vm)'s VIOLIN (not made from a spec)"
                }
                let mesh = (try? store.hostLinks(host))?.mesh ?? ""
                _ = try hostCall(mesh, key: key, MeshAPI.SetPortRate(vni: vni, name: MeshAPI.vmPortPrefix + vm, mbitS: mbit))
                lock.withLock { leverState.caps[vm] = mbit > 0 ? mbit : nil }
            default:
                return "failed: not a lever"
            }
        } catch {
            return "failed: \(error)"
        }
        lock.withLock { leverState.leverAt[vm] = state.now }
        return "sent"
    }

    /// One request to a service of a host (its monitor, its mesh), with the host's key.
    private func hostCall<R: RequestBody>(_ endpoint: String, key: String, _ request: R) throws(ProtocolError) -> R.Reply {
        guard !endpoint.isEmpty else { throw ProtocolError(.unavailable, "no endpoint known for \(R.msgType)") }
        let client = hostClient(endpoint, key: key, timeoutMs: options.executorTimeoutMs)
        defer { client.close() }
        do { return try client.call(request) } catch {
            switch error {
            case .error(let e): throw e
            default: throw ProtocolError(.unavailable, "\(endpoint): \(error)")
            }
        }
    }

    /// Records in the ledger what each lever carried out at least `leverSettle` seconds ago
    /// did: the figure it meant to change, as it is now (`leverSettle` seconds after it).
    func measureEffects(_ state: ClusterState) {
        let due = lock.withLock { () -> [(id: Int64, decision: Decision, at: Double)] in
            let due = awaitingEffect.filter { state.now - $0.at >= options.leverSettle }
            awaitingEffect.removeAll { state.now - $0.at >= options.leverSettle }
            return due
        }
        for (id, d, at) in due {
            guard let vm = d.leverVM else { continue }
            let after = String(format: "%.0f s later: ", state.now - at)
            var effect: String
            switch d {
            case .setCPUWeight:
                effect = after + String(format: "%@ uses %.0f %% of its vCPUs", vm, state.cpu[vm] ?? 0)
            case .setBalloon:
                if let m = state.levers.memory[vm] {
                    effect = after + "\(vm) has \(m.balloonMB) MB, \(m.unusedMB.map { "\($0)" } ?? "?") unused, \(m.availableMB.map { "\($0)" } ?? "?") available"
                        + String(format: ", swapping in %.0f pages/s, %.0f major faults/s", m.swapInPerS, m.majorFaultsPerS)
                } else {
                    effect = after + "no memory figures for \(vm)"
                }
            case .setPortRate:
                effect = after + (state.levers.sendMbps[vm].map { String(format: "%@ sends %.1f Mbit/s", vm, $0) } ?? "no network figures for \(vm)")
            default: continue
            }
            if state.placement[vm] == nil { effect = after + "\(vm) is gone" }
            try? store.setEffect(id, effect)
        }
    }
}

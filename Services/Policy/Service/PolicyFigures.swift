import Foundation
import Primitives
import ServiceKit
import VIOLINProtocol

/// What the policy has said on the bus, counted for the Prometheus exposition: the phase each
/// VIOLIN was last put in, and the drift the reconciliation found. Thread-safe.
final class PolicyFigures: @unchecked Sendable {
    private let lock = NSLockLite()
    private var phases: [String: String] = [:]
    private var drift: [String: Int] = [:]

    /// Every phase a VIOLIN can be in (PROTOCOL.md, `policy.phase_changed`).
    static let allPhases = ["placing", "creating", "running", "failed", "destroying"]

    func saw(_ topic: String, _ body: JSONValue) {
        lock.withLock {
            switch topic {
            case PolicyAPI.PhaseChanged.topic:
                guard let name = body["name"]?.stringValue, let phase = body["phase"]?.stringValue else { return }
                // A VIOLIN destroyed or never made is no longer counted in any phase.
                if phase == "destroyed" || (phase == "failed" && phases[name] != "running") { phases[name] = nil } else { phases[name] = phase }
            case PolicyAPI.DriftDetected.topic:
                drift[body["kind"]?.stringValue ?? "other", default: 0] += 1
            default: break
            }
        }
    }

    /// VIOLINs per phase: those in the inventory (running unless a phase was said since), and
    /// those being placed or made.
    func violinsByPhase(inventory: [String]) -> [String: Int] {
        lock.withLock {
            var out = Dictionary(uniqueKeysWithValues: Self.allPhases.map { ($0, 0) })
            let known = Set(inventory)
            for name in inventory { out[phases[name] ?? "running", default: 0] += 1 }
            for (name, phase) in phases where !known.contains(name) && (phase == "placing" || phase == "creating") { out[phase, default: 0] += 1 }
            return out
        }
    }

    var driftFound: [String: Int] { lock.withLock { drift } }
}

extension PolicyServer {
    /// Host scores and load, the deviation the policy evens out, decisions by kind and outcome,
    /// VIOLINs by phase, drift found.
    public func collectMetrics(into m: MetricSet) {
        if let explained = try? explain() {
            for h in explained.hosts {
                let l = [("host", h.id), ("domain", h.domain)]
                m.gauge("violin_policy_host_score", l, value: h.score, help: "The host's score: its load against its cores (the policy evens these out).")
                m.gauge("violin_policy_host_load", l, value: h.load, help: "Demand on the host, in cores.")
                m.gauge("violin_policy_host_high_demand_vms", l, value: Double(h.highDemandVMs), help: "VMs on the host whose demand is high.")
            }
            m.gauge("violin_policy_score_deviation", value: explained.deviation, help: "Standard deviation of the host scores.")
        }
        if let counts = try? store.decisionCounts() {
            for (key, n) in counts.sorted(by: { ($0.key.kind, $0.key.outcome) < ($1.key.kind, $1.key.outcome) }) {
                m.counter("violin_policy_decisions_total", [("kind", MetricSet.name(key.kind)), ("outcome", MetricSet.name(key.outcome))],
                          total: Double(n), help: "Decisions in the ledger, by kind and outcome (its first word).")
            }
        }
        let inventory = (try? store.inventory().violins.map(\.id)) ?? []
        for (phase, n) in figures.violinsByPhase(inventory: inventory).sorted(by: { $0.key < $1.key }) {
            m.gauge("violin_policy_violins", [("phase", phase)], value: Double(n), help: "VIOLINs by phase.")
        }
        let drift = figures.driftFound
        for kind in ["moved", "missing", "stray"] {
            m.counter("violin_policy_drift_found_total", [("kind", kind)], total: Double(drift[kind] ?? 0),
                      help: "Differences the reconciliation found between the inventory and what the hosts run.")
        }
    }
}

import ExecutorCore
import Foundation
import Primitives
import ServiceKit

/// The migrations this executor runs now, with their latest figures, and how the finished
/// ones ended: what the Prometheus exposition shows (gauges per migrating VM — a VM migrates
/// once at a time — never per job). Thread-safe.
final class RunningMigrations: @unchecked Sendable {
    private let lock = NSLockLite()
    private var now: [String: (phase: String, progress: MigrationProgress)] = [:]
    private var outcomes: [String: Int] = [:]
    private var metrics: MetricSet?

    func attach(_ m: MetricSet) { lock.withLock { metrics = m } }

    func update(_ vm: String, phase: String, _ p: MigrationProgress) { lock.withLock { now[vm] = (phase, p) } }

    /// A job ended (`state`: completed, failed, rolled_back...): its VM's gauges go; a completed
    /// one's downtime and blackout are observed.
    func ended(_ vm: String, state: String, downtimeMs: Int?, blackoutMs: Int?) {
        let m: MetricSet? = lock.withLock {
            now[vm] = nil
            outcomes[state, default: 0] += 1
            return metrics
        }
        guard let m else { return }
        if let d = downtimeMs, d >= 0 {
            m.observe("violin_migration_downtime_seconds", value: Double(d) / 1000, buckets: MetricSet.pauseBuckets,
                      help: "How long migrated guests were paused at the switch-over, as libvirt measured it.")
        }
        if let b = blackoutMs, b >= 0 {
            m.observe("violin_migration_blackout_seconds", value: Double(b) / 1000, buckets: MetricSet.pauseBuckets,
                      help: "How long migrated guests' frames found no switch port: the network's blackout.")
        }
    }

    func collect(into m: MetricSet) {
        let (running, ends) = lock.withLock { (now, outcomes) }
        for state in ["completed", "failed", "rolled_back"] where ends[state] == nil {
            m.counter("violin_migrations_total", [("outcome", state)], total: 0, help: "Migrations this executor ran to their end, by outcome.")
        }
        for (state, n) in ends.sorted(by: { $0.key < $1.key }) {
            m.counter("violin_migrations_total", [("outcome", MetricSet.name(state))], total: Double(n),
                      help: "Migrations this executor ran to their end, by outcome.")
        }
        m.gauge("violin_migrations_running", value: Double(running.count), help: "Migrations this executor runs now.")
        for (vm, r) in running.sorted(by: { $0.key < $1.key }) {
            let l = [("vm", vm), ("phase", r.phase)]
            m.gauge("violin_migration_data_processed_bytes", l, value: Double(r.progress.processed), help: "Bytes the running migration has sent.")
            m.gauge("violin_migration_data_remaining_bytes", l, value: Double(r.progress.remaining), help: "Bytes the running migration has left to send.")
            m.gauge("violin_migration_dirty_memory_rate_bytes", l, value: Double(r.progress.dirtyRate),
                    help: "Bytes per second the migrating guest dirties.")
            m.gauge("violin_migration_transfer_rate_bytes", l, value: Double(r.progress.rate), help: "Bytes per second the migration sends.")
        }
    }
}

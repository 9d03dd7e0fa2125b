import Foundation
import Prometheus
import Primitives

/// A service's Prometheus series, kept in swift-prometheus's registry (the backend of
/// swift-metrics), filled at each scrape from the figures the service already keeps.
///
/// Figures a service counts anyway (its `Counters`, a switch's frame counts, a VM's CPU time)
/// are *mirrored*: `counter(...)` is given the running total and adds what it grew by (a total
/// that fell — the source restarted — starts the series again). Mirrored series a scrape does
/// not give again (a VM gone, a migration ended) are dropped when the scrape ends, so labels
/// per VM or per port stay bounded by what the host runs. Histograms are recorded as things
/// happen and kept. Thread-safe.
public final class MetricSet: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    private let lock = NSLockLite()
    private struct Key: Hashable { let name: String; let labels: [String] }
    private var counters: [Key: (Counter, Double)] = [:]
    private var gauges: [Key: Gauge] = [:]
    private var histograms: [Key: ValueHistogram] = [:]
    private var touched: Set<Key> = []

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) { self.registry = registry }

    /// A mirrored counter: `total` is the running total the source keeps.
    public func counter(_ name: String, _ labels: [(String, String)] = [], total: Double, help: String) {
        let key = Key(name: name, labels: labels.flatMap { [$0.0, $0.1] })
        lock.withLock {
            touched.insert(key)
            let total = max(0, total)
            if let (c, last) = counters[key] {
                if total >= last { c.increment(by: total - last) } else { c.reset(); c.increment(by: total) }
                counters[key] = (c, total)
            } else {
                let c = registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
                c.increment(by: total)
                counters[key] = (c, total)
            }
        }
    }

    public func gauge(_ name: String, _ labels: [(String, String)] = [], value: Double, help: String) {
        let key = Key(name: name, labels: labels.flatMap { [$0.0, $0.1] })
        lock.withLock {
            touched.insert(key)
            let g = gauges[key] ?? registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
            gauges[key] = g
            g.set(value.isFinite ? value : 0)
        }
    }

    /// Records one observation into a histogram (kept across scrapes).
    public func observe(_ name: String, _ labels: [(String, String)] = [], value: Double, buckets: [Double], help: String) {
        let key = Key(name: name, labels: labels.flatMap { [$0.0, $0.1] })
        lock.withLock {
            let h = histograms[key] ?? registry.makeValueHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
            histograms[key] = h
            h.record(value)
        }
    }

    /// The exposition, after `refresh` gave every mirrored series again; series it did not give
    /// are dropped.
    public func scrape(refresh: (MetricSet) -> Void) -> [UInt8] {
        lock.withLock { touched = [] }
        refresh(self)
        return lock.withLock {
            for (key, (c, _)) in counters where !touched.contains(key) { registry.unregisterCounter(c); counters[key] = nil }
            for (key, g) in gauges where !touched.contains(key) { registry.unregisterGauge(g); gauges[key] = nil }
            return registry.emitToBuffer()
        }
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// A name fit for Prometheus: `[a-zA-Z_:][a-zA-Z0-9_:]*`, anything else made `_`.
    public static func name(_ raw: String) -> String {
        var out = String(raw.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") ? $0 : "_" })
        if let first = out.first, first.isNumber { out = "_" + out }
        return out
    }

    /// Seconds buckets for migration downtime and network blackout (1 ms to 30 s).
    public static let pauseBuckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
}

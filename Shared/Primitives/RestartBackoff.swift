/// How long a supervisor waits before it restarts a process that died (the mesh its switches,
/// `violin node run` its services): twice the last wait, from half a second up to ten, so a
/// process that keeps crashing costs the host little; one that had been running for
/// `stableSeconds` starts the count again, so one crash in a long while is restarted at once,
/// not after the longest wait ever reached.
public enum RestartBackoff {
    public static let first = 0.5
    public static let longest = 10.0
    public static let stableSeconds = 30.0

    /// The wait before the next start. `previous`: the last wait (nil: none yet); `ranSeconds`:
    /// how long the process ran this time.
    public static func next(previous: Double?, ranSeconds: Double) -> Double {
        guard let previous, ranSeconds < stableSeconds else { return first }
        return min(longest, max(first, previous * 2))
    }
}

/// The one supervisor's bookkeeping: when each supervised process started, and when each that
/// died is due to start again (with `RestartBackoff`). A value; time is passed in (seconds).
public struct RestartSchedule<Key: Hashable & Sendable>: Sendable {
    private var startedAt: [Key: Double] = [:]
    private var lastWait: [Key: Double] = [:]
    private var dueAt: [Key: Double] = [:]

    public init() {}

    public mutating func started(_ key: Key, at now: Double) { startedAt[key] = now }

    /// It died: its restart is due after the back-off; returns the wait.
    @discardableResult
    public mutating func exited(_ key: Key, at now: Double) -> Double {
        let wait = RestartBackoff.next(previous: lastWait[key], ranSeconds: now - (startedAt[key] ?? 0))
        lastWait[key] = wait
        dueAt[key] = now + wait
        return wait
    }

    /// Starting it failed: try again after `wait` seconds.
    public mutating func retry(_ key: Key, at now: Double, after wait: Double) { dueAt[key] = now + wait }

    /// It is no longer to be restarted (it left, or its restart is under way).
    public mutating func cancel(_ key: Key) { dueAt[key] = nil }

    public func isScheduled(_ key: Key) -> Bool { dueAt[key] != nil }

    /// Those whose restart is due at `now`.
    public func due(at now: Double) -> [Key] { dueAt.filter { $0.value <= now }.map(\.key) }
}

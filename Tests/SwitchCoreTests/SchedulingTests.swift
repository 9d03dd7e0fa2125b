import Testing
@testable import SwitchCore

/// The forwarding thread's scheduling, decided from one 100 ms window's figures at a time.
@Suite struct SchedulingTests {
    static let ms: UInt64 = 1_000_000
    /// A 100 ms window on a 2-core host: the thread's CPU share, its mean wait per wake-up (µs),
    /// its wake-ups, and the host's idle share.
    func window(cpu: Double, waitMicros: Double, wakeups: UInt64 = 50, hostIdle: Double) -> SchedulingGovernor.Window {
        .init(elapsedNs: 100 * Self.ms, cpuNs: UInt64(cpu * 100 * Double(Self.ms)), waitNs: UInt64(waitMicros * 1000) * wakeups,
              wakeups: wakeups, hostIdleNs: UInt64(hostIdle * 200 * Double(Self.ms)), cpus: 2)
    }

    /// A busy host whose wake-ups wait makes the thread real-time, and so does a busy host while
    /// the thread barely wakes (its waits say nothing yet); a host with a core free, or a thread
    /// that waits little, does not.
    @Test func realtimeOnlyWhereTheHostIsBusyAndTheThreadWaits() {
        for (w, expected) in [(window(cpu: 0.05, waitMicros: 2000, hostIdle: 0.02), SchedulingGovernor.Mode.realtime),
                              (window(cpu: 0.05, waitMicros: 2000, hostIdle: 0.4), .fair),
                              (window(cpu: 0.05, waitMicros: 10, hostIdle: 0.02), .fair),
                              (window(cpu: 0.0, waitMicros: 0, wakeups: 1, hostIdle: 0.02), .realtime),
                              (window(cpu: 0.0, waitMicros: 0, wakeups: 1, hostIdle: 0.4), .fair)] {
            var g = SchedulingGovernor()
            _ = g.decide(w, now: 100 * Self.ms)
            #expect(g.mode == expected, "\(w)")
        }
        var g = SchedulingGovernor()
        #expect(g.decide(window(cpu: 0.05, waitMicros: 2000, hostIdle: 0.02), now: 0) == .toRealtime(waitMicros: 2000, hostIdle: 0.02))
        #expect(g.promotions == 1)
        // Real-time, its waits are short; it stays while the host is busy, leaves once it has room.
        #expect(g.decide(window(cpu: 0.05, waitMicros: 5, hostIdle: 0.05), now: 100 * Self.ms) == nil && g.mode == .realtime)
        #expect(g.decide(window(cpu: 0.05, waitMicros: 5, hostIdle: 0.5), now: 200 * Self.ms) == .hostCalm(hostIdle: 0.5))
        #expect(g.mode == .fair)
    }

    /// A flood or a bulk transfer: a window over budget sends the thread back to the fair class
    /// for 1 s, then 2 s, 4 s ... up to 16 s while it lasts; the back-off is forgotten after a
    /// quiet spell. The share it can take from the host's VMs is bounded.
    @Test func aThreadOverItsBudgetBacksOffLongerEachTime() {
        var g = SchedulingGovernor()
        let busy = window(cpu: 0.1, waitMicros: 3000, hostIdle: 0)
        let flood = window(cpu: 0.9, waitMicros: 1, hostIdle: 0)
        var now: UInt64 = 0
        var realtimeWindows = 0, windows = 0
        // 60 s of a flood on a busy host: in real-time it takes a whole window, then backs off.
        while now < 60_000 * Self.ms {
            now += 100 * Self.ms
            windows += 1
            if g.mode == .realtime { realtimeWindows += 1; _ = g.decide(flood, now: now) } else { _ = g.decide(busy, now: now) }
        }
        #expect(g.overBudget == realtimeWindows && realtimeWindows >= 4, "\(g)")
        // Back-offs of 1, 2, 4, 8 and then 16 s: at most 8 real-time windows in 60 s.
        #expect(realtimeWindows <= 8, "\(realtimeWindows) real-time windows of \(windows)")
        // While fair, a window that is over budget never goes real-time.
        var h = SchedulingGovernor()
        #expect(h.decide(window(cpu: 0.5, waitMicros: 3000, hostIdle: 0), now: 0) == nil && h.mode == .fair)
        // The back-off doubles, and resets after a quiet spell as long as itself.
        var b = SchedulingGovernor()
        _ = b.decide(busy, now: 0)
        #expect(b.decide(flood, now: 100 * Self.ms) == .overBudget(cpuShare: 0.9, fairForNs: 1000 * Self.ms))
        #expect(b.decide(busy, now: 500 * Self.ms) == nil, "still backing off")
        _ = b.decide(busy, now: 1100 * Self.ms)
        #expect(b.decide(flood, now: 1200 * Self.ms) == .overBudget(cpuShare: 0.9, fairForNs: 2000 * Self.ms))
        _ = b.decide(window(cpu: 0.01, waitMicros: 1, hostIdle: 0.9), now: 8000 * Self.ms)
        _ = b.decide(busy, now: 8100 * Self.ms)
        #expect(b.decide(flood, now: 8200 * Self.ms) == .overBudget(cpuShare: 0.9, fairForNs: 1000 * Self.ms))
    }

    /// The kernel refused real-time (a CPU cgroup without a real-time budget): fair for good.
    @Test func aRefusalIsFinal() {
        var g = SchedulingGovernor()
        _ = g.decide(window(cpu: 0.05, waitMicros: 2000, hostIdle: 0), now: 0)
        g.realtimeRefused()
        #expect(g.mode == .fair && g.promotions == 0 && g.refused)
        #expect(g.decide(window(cpu: 0.05, waitMicros: 2000, hostIdle: 0), now: 60_000 * Self.ms) == nil && g.mode == .fair)
    }
}

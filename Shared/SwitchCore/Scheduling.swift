/// How the forwarding thread is scheduled, chosen from what it measures of itself and of its
/// host once per window. Pure: the forwarding thread reads the figures (its own CPU time, the
/// time it waited on a run queue, its wake-ups; the host's idle time) and applies the answer.
///
/// Why: a userspace switch waits for the scheduler at every hop. On a host with idle cores it is
/// woken at once, and the fair class (SCHED_BATCH at nice 10, which leaves the CPU to the VMs and
/// the applications when it is short) gives the best throughput. On a host whose cores are all
/// busy — the adaptation manager runs hosts that way on purpose — each wake-up waits for a busy
/// task's time slice, and round trips go from a hundred microseconds to milliseconds. There a
/// real-time thread (SCHED_FIFO) is woken ahead of every fair task. But a real-time thread that
/// moves a flood or a bulk transfer takes the cores from the host's VMs, so it is real-time only
/// within a budget: a window in which it used more than `budget` of a core sends it back to the
/// fair class, and it may not come back for `backoff` (doubling while the load lasts).
public struct SchedulingGovernor: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable { case fair, realtime }

    /// One window's figures (nanoseconds, deltas over the window).
    public struct Window: Sendable, Equatable {
        public var elapsedNs: UInt64
        /// CPU time the forwarding thread used, and time it spent runnable but waiting for a CPU.
        public var cpuNs: UInt64
        public var waitNs: UInt64
        /// Times the thread was put on a CPU (its wake-ups, roughly).
        public var wakeups: UInt64
        /// The host's idle time summed over its CPUs, and its CPU count.
        public var hostIdleNs: UInt64
        public var cpus: Int
        public init(elapsedNs: UInt64, cpuNs: UInt64, waitNs: UInt64, wakeups: UInt64, hostIdleNs: UInt64, cpus: Int) {
            self.elapsedNs = elapsedNs; self.cpuNs = cpuNs; self.waitNs = waitNs; self.wakeups = wakeups
            self.hostIdleNs = hostIdleNs; self.cpus = cpus
        }
        /// The share of one core the thread used.
        public var cpuShare: Double { elapsedNs == 0 ? 0 : Double(cpuNs) / Double(elapsedNs) }
        /// The host's idle share of all its cores.
        public var hostIdleShare: Double { elapsedNs == 0 || cpus <= 0 ? 1 : Double(hostIdleNs) / (Double(elapsedNs) * Double(cpus)) }
        /// Mean wait for a CPU per wake-up, microseconds.
        public var meanWaitMicros: Double { Double(waitNs) / 1000 / Double(max(1, wakeups)) }
    }

    /// Most of a core the thread may use in a window while real-time (0-1).
    public var budget = 0.3
    /// A wake-up waiting longer than this on average, on a host idle less than `busyIdleShare`,
    /// makes the thread real-time.
    public var waitMicros = 50.0
    public var busyIdleShare = 0.1
    /// A host idle more than this share leaves real-time: its cores wake the thread at once.
    public var calmIdleShare = 0.25
    /// Below this many wake-ups a window's mean wait says nothing (an idle switch): the host's
    /// business alone decides, so the first frame after a quiet spell already finds it real-time.
    public var minWakeups: UInt64 = 5
    /// After a window over budget, the fair class for this long, doubled each time up to `maxBackoffNs`.
    public var backoffNs: UInt64 = 1_000_000_000
    public var maxBackoffNs: UInt64 = 16_000_000_000

    public private(set) var mode: Mode = .fair
    /// Until when (ns, the caller's clock) the thread stays fair after going over budget.
    public private(set) var fairUntil: UInt64 = 0
    public private(set) var nextBackoff: UInt64
    /// Windows over budget so far, and times it became real-time.
    public private(set) var overBudget = 0
    public private(set) var promotions = 0

    /// The kernel refused real-time: the thread stays fair for good.
    public private(set) var refused = false

    public init() { nextBackoff = backoffNs }

    /// The kernel refused the real-time the last `decide` asked for.
    public mutating func realtimeRefused() {
        refused = true
        mode = .fair
        promotions -= 1
    }

    /// Why the mode changed, for the log and the stats; nil when it did not.
    public enum Change: Sendable, Equatable {
        case toRealtime(waitMicros: Double, hostIdle: Double)
        case overBudget(cpuShare: Double, fairForNs: UInt64)
        case hostCalm(hostIdle: Double)
    }

    /// The mode for the next window, from the last one ending at `now`.
    public mutating func decide(_ w: Window, now: UInt64) -> Change? {
        switch mode {
        case .realtime:
            if w.cpuShare > budget {
                overBudget += 1
                let wait = nextBackoff
                fairUntil = now &+ wait
                nextBackoff = min(maxBackoffNs, nextBackoff * 2)
                mode = .fair
                return .overBudget(cpuShare: w.cpuShare, fairForNs: wait)
            }
            if w.hostIdleShare > calmIdleShare {
                mode = .fair
                nextBackoff = backoffNs
                return .hostCalm(hostIdle: w.hostIdleShare)
            }
            return nil
        case .fair:
            // Quiet windows (within budget, after the back-off) forget earlier floods.
            if now >= fairUntil &+ nextBackoff { nextBackoff = backoffNs }
            guard !refused, now >= fairUntil, w.cpuShare <= budget, w.hostIdleShare < busyIdleShare,
                  w.wakeups < minWakeups || w.meanWaitMicros > waitMicros else { return nil }
            mode = .realtime
            promotions += 1
            return .toRealtime(waitMicros: w.meanWaitMicros, hostIdle: w.hostIdleShare)
        }
    }
}

import CNetShim
import Foundation
import Primitives
import Synchronization
import SwitchCore

/// The data plane of one switch: `options.queues` forwarding threads (`ForwardingShard`), each
/// with its own MAC table, buffers and tunnel socket, none waiting for another per frame. What
/// one thread learns reaches the others through a `LearnBoard`; the control side's snapshots go
/// to all of them, and its questions (counters, the table, who talks to whom) are answered by
/// all and merged.
public final class Forwarder: @unchecked Sendable {
    public struct Options: Sendable {
        public var vni: UInt32
        public var batch = 64
        public var maxMACs = 8192
        public var ageingMs: UInt64 = 300_000
        /// TAPs with virtio_net_hdr + TSO, UDP GSO sends and GRO receives with coalescing.
        public var offload = true
        /// After traffic, keep polling without sleeping for this long: a reply that comes back
        /// within it is picked up without a thread wake-up (latency), at the price of CPU.
        public var spinMicros = 0
        /// Run the forwarding thread under SCHED_BATCH (see `vn_thread_schedule`). Measured
        /// here (overlay-bench, 3 rounds each way): TCP 10 % faster, small packets per second
        /// 20 % fewer (the receiving application gets less CPU), round trips alike.
        public var batchScheduling = true
        /// Nice value of the forwarding thread (0-19). Above 0 the host's own work (the VMs, the
        /// applications at both ends) wins the CPU when the cores are all busy: a flood the
        /// receiver cannot take is then dropped at the port's queue, where dropping costs
        /// nothing, instead of being read, tunnelled and delivered only to be dropped at the
        /// receiving socket. Measured here (quick harness, 3 runs each): 64-byte UDP received
        /// 120-123 k/s at 0, 140-147 k at 5, 188-199 k at 10, 219-232 k at 19; TCP and round
        /// trips within their run-to-run spread at 10, TCP lower at 19.
        public var niceness: Int32 = 10
        /// The forwarding thread's EEVDF time slice in microseconds, 100-100,000 (0: the
        /// kernel's, 0.75 ms scaled by the core count). With a short slice and `SCHED_OTHER` at
        /// nice 0, its wake-ups preempt busy threads at once: on a host whose cores are busy,
        /// round trips of ~0.1-0.2 ms instead of several ms; on an idle one, longer (measured
        /// in Tests/Benchmarks/results/README.md). So it is an option, off by default.
        public var sliceMicros: UInt32 = 0
        /// Real-time (SCHED_FIFO at `realtimePriority`) while the host's cores are all busy and
        /// the thread's wake-ups wait for them, within `realtimeBudget` of a core per window
        /// (`SchedulingGovernor`); the scheduling above otherwise. A refusal (a CPU cgroup
        /// without a real-time budget) is reported in the stats and not tried again.
        public var realtimeWhenBusy = true
        public var realtimeBudget = 0.3
        public var realtimePriority: Int32 = 1
        /// Forwarding threads (1-16): each reads one queue of every multi-queue TAP and one of
        /// the tunnel's `SO_REUSEPORT` sockets, which steer a flow's frames both ways to the same
        /// thread (see `vn_udp_open_group`). One port of another kind is read by thread 0 alone.
        public var queues = 1
        public init(vni: UInt32) { self.vni = vni }
    }

    public let options: Options
    let shards: [ForwardingShard]
    public let tunnelAddress: PeerAddress
    private let clock: @Sendable () -> UInt64

    /// A switch of one thread per tunnel socket (`tunnels.count` must equal `options.queues`).
    public init(options: Options, tunnels: [TunnelSocket],
                clock: @escaping @Sendable () -> UInt64 = { UInt64(monotonicMillis()) }) {
        precondition(!tunnels.isEmpty && tunnels.count == max(1, options.queues), "one tunnel socket per forwarding thread")
        self.options = options
        self.clock = clock
        tunnelAddress = tunnels[0].local
        let board = tunnels.count > 1 ? LearnBoard(shards: tunnels.count) : nil
        // The real-time budget is the switch's, shared out: N threads in a flood take no more of
        // the host's cores than one would.
        var each = options
        each.realtimeBudget = options.realtimeBudget / Double(tunnels.count)
        shards = tunnels.enumerated().map { ForwardingShard(options: each, tunnel: $1, shard: $0, board: board, clock: clock) }
    }

    /// A switch of one forwarding thread.
    public convenience init(options: Options, tunnel: TunnelSocket,
                            clock: @escaping @Sendable () -> UInt64 = { UInt64(monotonicMillis()) }) {
        var one = options
        one.queues = 1
        self.init(options: one, tunnels: [tunnel], clock: clock)
    }

    /// The switch's clock (ms), for deadlines in snapshots.
    public var now: UInt64 { clock() }

    public func start() { for s in shards { s.start() } }
    public func stop() { for s in shards { s.stop() } }

    /// Hands a new configuration to every forwarding thread and waits (up to `timeoutMs`) until
    /// all have it in force.
    @discardableResult
    public func apply(_ snapshot: SwitchSnapshot, timeoutMs: Int = 1000) -> Bool {
        shards.map { $0.apply(snapshot, timeoutMs: timeoutMs) }.allSatisfy { $0 }
    }

    /// The counters of all threads, added up; nil if one does not answer in time.
    public func statistics(timeoutMs: Int = 2000) -> SwitchStats? {
        var all: [SwitchStats] = []
        for s in shards {
            guard let one = s.statistics(timeoutMs: timeoutMs) else { return nil }
            all.append(one)
        }
        return SwitchStats.merged(all)
    }

    /// The `limit` heaviest pairs over all threads, and what the rest add up to.
    public func traffic(limit: Int, timeoutMs: Int = 2000) -> (pairs: [PairCounter.Pair], otherFrames: Int, otherBytes: Int)? {
        var parts: [(pairs: [PairCounter.Pair], otherFrames: Int, otherBytes: Int)] = []
        for s in shards {
            guard let one = s.traffic(limit: shards.count == 1 ? limit : PairCounter.defaultCapacity, timeoutMs: timeoutMs) else { return nil }
            parts.append(one)
        }
        return PairCounter.merged(parts, limit: limit)
    }

    /// The MAC table: each address with the freshest of the threads' entries for it.
    public func fdb(timeoutMs: Int = 2000) -> [FdbEntry]? {
        var best: [MAC: FdbEntry] = [:]
        for s in shards {
            guard let entries = s.fdb(timeoutMs: timeoutMs) else { return nil }
            for e in entries where best[e.mac].map({ e.ageS < $0.ageS }) ?? true { best[e.mac] = e }
        }
        return best.values.sorted { $0.mac < $1.mac }
    }

    /// Announces that `mac` now lives behind local port `portID` (see `ForwardingShard`): sent
    /// by thread 0, learned by all.
    public func announceMove(_ mac: MAC, portID: UInt32) -> UInt32? { shards[0].announceMove(mac, portID: portID) }

    /// Why a forwarding thread runs without the scheduling its options ask for; nil when none.
    public func schedulingError(timeoutMs: Int = 2000) -> String? {
        shards.lazy.compactMap { $0.schedulingError(timeoutMs: timeoutMs) }.first
    }
}

/// What the forwarding threads of one switch tell each other they learned: each has an inbox;
/// a thread posts a learned or moved address to every other's and looks at its own once per
/// wake-up (an atomic flag, no lock, when it is empty). An inbox holds at most `capacity`
/// items: past that, news is dropped and the thread floods to that address until it learns it
/// itself — never a wrong delivery, only a wider one.
final class LearnBoard: @unchecked Sendable {
    struct News: Equatable {
        let mac: MAC
        let location: Location
        /// Learned or moved just now (else: seen again, to keep the others' entries alive).
        let fresh: Bool
    }

    final class Inbox: @unchecked Sendable {
        let waiting = Atomic<Int>(0)
        let lock = NSLockLite()
        var items: [News] = []
    }

    let inboxes: [Inbox]
    let capacity: Int

    init(shards: Int, capacity: Int = 16_384) {
        inboxes = (0..<shards).map { _ in Inbox() }
        self.capacity = capacity
    }

    /// Tells every thread but `from` about `news`.
    func post(from: Int, _ news: News) {
        for (k, box) in inboxes.enumerated() where k != from {
            box.lock.withLock {
                guard box.items.count < capacity else { return }
                box.items.append(news)
                box.waiting.store(box.items.count, ordering: .releasing)
            }
        }
    }

    /// Tells every thread but `from` about all of `news` (one lock per inbox).
    func post(from: Int, all news: [News]) {
        guard !news.isEmpty else { return }
        for (k, box) in inboxes.enumerated() where k != from {
            box.lock.withLock {
                box.items.append(contentsOf: news.prefix(max(0, capacity - box.items.count)))
                box.waiting.store(box.items.count, ordering: .releasing)
            }
        }
    }

    /// What thread `shard` has not read yet (empty without taking the lock when there is none).
    func take(_ shard: Int) -> [News] {
        let box = inboxes[shard]
        guard box.waiting.load(ordering: .acquiring) > 0 else { return [] }
        return box.lock.withLock {
            defer { box.items.removeAll(keepingCapacity: true); box.waiting.store(0, ordering: .releasing) }
            return box.items
        }
    }
}

extension SwitchStats {
    /// The counters of several forwarding threads as those of one switch: sums, and per port
    /// the earliest first and the latest last frame.
    static func merged(_ all: [SwitchStats]) -> SwitchStats {
        guard var s = all.first else { return SwitchStats() }
        for o in all.dropFirst() {
            s.framesFromPorts += o.framesFromPorts; s.framesFromPeers += o.framesFromPeers
            s.framesToPorts += o.framesToPorts; s.framesToPeers += o.framesToPeers
            s.bytesFromPorts += o.bytesFromPorts; s.bytesFromPeers += o.bytesFromPeers
            s.floods += o.floods; s.graceForwarded += o.graceForwarded; s.merged += o.merged
            s.drops.merge(o.drops, uniquingKeysWith: +)
            for (name, p) in o.perPort { s.perPort[name] = s.perPort[name].map { $0.adding(p) } ?? p }
            s.table.learned += o.table.learned; s.table.moved += o.table.moved
            s.table.expired += o.table.expired; s.table.refused += o.table.refused
            s.tableSize = max(s.tableSize, o.tableSize)
            s.batches += o.batches; s.portFailures += o.portFailures
            if o.schedulingMode == "realtime" { s.schedulingMode = "realtime" }
            s.realtimeEntries += o.realtimeEntries; s.overBudget += o.overBudget
            s.realtimeRefused = s.realtimeRefused ?? o.realtimeRefused
        }
        s.perThread = all.count < 2 ? [] : all.map { ThreadCounters(framesFromPorts: $0.framesFromPorts, framesFromPeers: $0.framesFromPeers) }
        return s
    }
}

extension SwitchStats.PortCounters {
    func adding(_ o: Self) -> Self {
        var p = self
        p.rx += o.rx; p.tx += o.tx; p.rxBytes += o.rxBytes; p.txBytes += o.txBytes; p.rateWaits += o.rateWaits
        let firsts = [firstRxMs, o.firstRxMs].filter { $0 > 0 }
        p.firstRxMs = firsts.min() ?? 0
        p.lastRxMs = max(lastRxMs, o.lastRxMs)
        return p
    }
}

extension PairCounter {
    /// Several counters' heaviest pairs as one's: the same pair added up, the `limit` heaviest
    /// kept, the rest counted with the others.
    static func merged(_ parts: [(pairs: [Pair], otherFrames: Int, otherBytes: Int)], limit: Int)
        -> (pairs: [Pair], otherFrames: Int, otherBytes: Int) {
        var sum: [PairKey: Pair] = [:]
        var otherFrames = 0, otherBytes = 0
        for part in parts {
            otherFrames += part.otherFrames; otherBytes += part.otherBytes
            for p in part.pairs {
                let key = PairKey(src: p.src, dst: p.dst)
                if var q = sum[key] { q.frames += p.frames; q.bytes += p.bytes; sum[key] = q } else { sum[key] = p }
            }
        }
        let all = sum.values.sorted(by: PairCounter.heavierFirst)
        for p in all.dropFirst(limit) { otherFrames += p.frames; otherBytes += p.bytes }
        return (Array(all.prefix(limit)), otherFrames, otherBytes)
    }

    private struct PairKey: Hashable { let src: MAC, dst: MAC }
}

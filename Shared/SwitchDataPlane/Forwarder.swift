import CNetShim
import Foundation
import SwitchCore
import Primitives

/// What the control side wants the data plane to be. Immutable; swapped whole.
public final class SwitchSnapshot: @unchecked Sendable {
    public let generation: UInt64
    public let ports: [PortHandle]
    public let peers: [PeerAddress]
    public let statics: [MAC: Location]
    /// MACs of VMs that migrated away: frames for them that still arrive from a peer are sent
    /// on to the VM's new host until `untilMs` (the switch's clock), not dropped.
    public let moved: [MAC: MovedMAC]
    /// Caps on what ports receive from their VMs, by port id.
    public let rates: [UInt32: PortRate]

    public init(generation: UInt64, ports: [PortHandle], peers: [PeerAddress], statics: [MAC: Location],
                moved: [MAC: MovedMAC] = [:], rates: [UInt32: PortRate] = [:]) {
        self.generation = generation
        self.ports = ports
        self.peers = peers
        self.statics = statics
        self.moved = moved
        self.rates = rates
    }
}

/// A token bucket on a port's received frames: `bytesPerSecond` on average, up to `burstBytes`
/// at once. A port out of tokens is not read until it has some again; its frames wait in the
/// port's own queue (a TAP's, a UDP socket's), and the kernel drops what overflows that.
public struct PortRate: Sendable, Equatable {
    public let bytesPerSecond: Double
    public let burstBytes: Double
    public init(bytesPerSecond: Double, burstBytes: Double) {
        self.bytesPerSecond = bytesPerSecond; self.burstBytes = max(1, burstBytes)
    }
}

public struct MovedMAC: Sendable, Equatable {
    public let peer: PeerAddress
    public let untilMs: UInt64
    public init(peer: PeerAddress, untilMs: UInt64) { self.peer = peer; self.untilMs = untilMs }
}

/// Counters of one switch, copied out of the forwarding thread once per batch.
public struct SwitchStats: Sendable, Equatable {
    public var framesFromPorts = 0
    public var framesFromPeers = 0
    public var framesToPorts = 0
    public var framesToPeers = 0
    public var bytesFromPorts = 0
    public var bytesFromPeers = 0
    public var floods = 0
    /// Frames for a migrated VM sent on to its new host during the grace period.
    public var graceForwarded = 0
    /// Frames from peers that went to a TAP inside a larger, coalesced one (TCP or UDP).
    public var merged = 0
    public var drops: [String: Int] = [:]
    public var perPort: [String: PortCounters] = [:]
    public var table = MACTable.Counters()
    public var tableSize = 0
    public var batches = 0
    /// Ports whose device failed under the switch (deleted from outside): no longer read.
    public var portFailures = 0
    /// The forwarding thread's scheduling (`Options.realtimeWhenBusy`): `fair` or `realtime`
    /// now (`fixed` without it), times it became real-time, windows it went over its budget,
    /// and why the kernel refused real-time (nil: never refused).
    public var schedulingMode = "fixed"
    public var realtimeEntries = 0
    public var overBudget = 0
    public var realtimeRefused: String?
    /// What each forwarding thread read, with more than one (`Forwarder.Options.queues`).
    public var perThread: [ThreadCounters] = []

    public struct ThreadCounters: Sendable, Equatable {
        public var framesFromPorts = 0
        public var framesFromPeers = 0
    }

    public struct PortCounters: Sendable, Equatable {
        public var rx = 0
        public var tx = 0
        /// Wall-clock times (ms since 1970) of the port's first and latest received frame: the
        /// network blackout of a migration is first-at-the-new-port minus last-at-the-old.
        public var firstRxMs: UInt64 = 0
        public var lastRxMs: UInt64 = 0
        public var rxBytes = 0
        public var txBytes = 0
        /// With a rate cap: the cap, and how often the port waited for tokens.
        public var rate: PortRate?
        public var rateWaits = 0
    }

    public var dropsTotal: Int { drops.values.reduce(0, +) }
}

public struct FdbEntry: Sendable, Equatable {
    public let mac: MAC
    public let location: Location
    public let ageS: Double
    public let isStatic: Bool
}

/// One forwarding loop of a switch (one VIOLIN on one host; one of `Forwarder`'s shards): one
/// thread that owns its MAC table, polls the tunnel socket and every port, reads in batches, decides with
/// `Forwarding.decide`, and sends to peers with sendmmsg. Buffers are allocated once; per frame
/// there is no allocation, no lock, no logging. Control changes arrive as `SwitchSnapshot`s,
/// looked at once per batch.
final class ForwardingShard: @unchecked Sendable {
    typealias Options = Forwarder.Options

    let options: Options
    private let tunnel: TunnelSocket
    /// Which of the switch's shards this is: it reads queue `shard` of multi-queue ports and
    /// writes to it, and shares what it learns with the others through `board`.
    let shard: Int
    private let board: LearnBoard?
    /// By port index: the descriptor this shard reads and writes.
    private var portFD: [Int32] = []
    /// Every read and write of the ports and the tunnel (the system's, or a MemoryNetwork's).
    private let io: NetIO
    private let clock: @Sendable () -> UInt64
    private let waker = Waker()
    private let lock = NSLockLite()
    private var pending: SwitchSnapshot
    /// Work the control side asks of the forwarding thread (reading its table or counters),
    /// done between two batches so the hot path never takes a lock for it.
    private var inbox: [() -> Void] = []
    private var stopping = false
    private let adoptedSignal = NSCondition()
    private var adopted: UInt64 = 0
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    // Owned by the forwarding thread.
    private var table: MACTable
    private var current: SwitchSnapshot
    private var stats = SwitchStats()
    private var dropCounts = [Int](repeating: 0, count: DropReason.allCases.count)
    private var portIndex: [UInt32: Int] = [:]
    private var peerSet: Set<PeerAddress> = []
    /// Peers by IPv4 address alone: a VXLAN sender picks its UDP source port per flow (RFC 7348
    /// §5, as Linux does), so only the address identifies it. Nil where two peers share an address.
    private var peerByIP: [PeerAddress.Host: PeerAddress?] = [:]
    private var portRx: [Int] = []
    private var portTx: [Int] = []
    private var portFirstRx: [UInt64] = []
    private var portLastRx: [UInt64] = []
    private var portRxBytes: [Int] = []
    /// Who talks to whom: unicast frames from ports by (source, destination) MAC.
    private var pairs = PairCounter()
    private var portTxBytes: [Int] = []
    /// Token buckets, by port index: the rate (bytes per ms; 0: no cap), the tokens (bytes; may
    /// go below zero by one frame), when they were last filled, when a waiting port is read
    /// again (0: it is not waiting), and how often it waited.
    private var portRatePerMs: [Double] = []
    private var portBurst: [Double] = []
    private var portTokens: [Double] = []
    private var portFilledAt: [UInt64] = []
    private var portResumeAt: [UInt64] = []
    private var portWaits: [Int] = []
    private var waitingPorts = 0
    private let rx: OpaquePointer        // tunnel receive batch (own buffers)
    private let tx: OpaquePointer        // tunnel send batch (points into `slots`)
    private let slots: UnsafeMutableRawPointer
    private let slotSize = 65_536 + VXLAN.headerLength + 64
    private let txCapacity: Int
    private let txPointers: UnsafeMutablePointer<UnsafePointer<UInt8>?>
    private let txLengths: UnsafeMutablePointer<Int>
    private let txPeers: UnsafeMutablePointer<PeerAddress>
    private var txCount = 0
    private var slotsUsed = 0
    // Segmented TSO frames waiting in the send batch: each buffer holds one frame's segments.
    /// A TSO frame's segments for a port without offloads (written out at once).
    private let segmentBuffer: UnsafeMutableRawPointer
    private let segmentBufferSize = 2 * 65_536 + 8_192
    private var coalescer = Coalescer()
    /// The train's datagrams (see `cut`): four 64 KB frames, each with room for the VXLAN and
    /// inner headers (up to 160 octets) of 64 segments.
    private let trainBuffer: UnsafeMutableRawPointer
    private let trainCapacity = 4 * (65_536 + 64 * 160)
    private let zeroHeader = UnsafeMutableRawPointer.allocate(byteCount: VirtioNetHeader.length, alignment: 8)
    /// The largest UDP payload one send may carry (IPv4).
    private let maxUDPPayload = 65_507

    init(options: Options, tunnel: TunnelSocket, shard: Int = 0, board: LearnBoard? = nil,
         clock: @escaping @Sendable () -> UInt64) {
        self.options = options
        self.tunnel = tunnel
        self.shard = shard
        self.board = board
        io = NetIO(memory: tunnel.network)
        self.clock = clock
        table = MACTable(maxEntries: options.maxMACs, ageingMs: options.ageingMs)
        let empty = SwitchSnapshot(generation: 0, ports: [], peers: [], statics: [:])
        pending = empty
        current = empty
        rx = vn_batch_new(Int32(options.batch), Int32(65_536 + VXLAN.headerLength))
        txCapacity = options.batch * 8
        txPointers = .allocate(capacity: options.batch * 8)
        txLengths = .allocate(capacity: options.batch * 8)
        txPeers = .allocate(capacity: options.batch * 8)
        txPeers.initialize(repeating: PeerAddress(addressBE: 0, port: 0), count: options.batch * 8)
        tx = vn_batch_new(Int32(txCapacity), 0)
        slots = UnsafeMutableRawPointer.allocate(byteCount: slotSize * options.batch, alignment: 64)
        segmentBuffer = UnsafeMutableRawPointer.allocate(byteCount: segmentBufferSize, alignment: 64)
        zeroHeader.initializeMemory(as: UInt8.self, repeating: 0, count: VirtioNetHeader.length)
        trainBuffer = .allocate(byteCount: trainCapacity, alignment: 64)
    }

    deinit {
        vn_batch_free(rx)
        vn_batch_free(tx)
        slots.deallocate()
        segmentBuffer.deallocate()
        coalescer.deallocate()
        zeroHeader.deallocate()
        trainBuffer.deallocate()
        txPointers.deallocate()
        txLengths.deallocate()
        txPeers.deallocate()
    }

    public var tunnelAddress: PeerAddress { tunnel.local }

    /// Hands a new configuration to the forwarding thread and waits (up to `timeoutMs`) until
    /// it is in force, so a control reply means the change applies to the next frame.
    @discardableResult
    public func apply(_ snapshot: SwitchSnapshot, timeoutMs: Int = 1000) -> Bool {
        lock.withLock { pending = snapshot }
        waker.wake()
        guard thread != nil else { return false }
        let deadline = monotonicMillis() + Int64(timeoutMs)
        adoptedSignal.lock()
        defer { adoptedSignal.unlock() }
        while adopted < snapshot.generation {
            let left = deadline - monotonicMillis()
            if left <= 0 { return false }
            _ = adoptedSignal.wait(until: Date().addingTimeInterval(Double(left) / 1000))
        }
        return true
    }

    /// The counters, as the forwarding thread has them; nil if it does not answer in time.
    public func statistics(timeoutMs: Int = 2000) -> SwitchStats? {
        perform(timeoutMs: timeoutMs) { [unowned self] in self.snapshotStats() }
    }

    /// The `limit` heaviest pairs of who talks to whom, and what the rest add up to; nil if the
    /// forwarding thread does not answer in time.
    public func traffic(limit: Int, timeoutMs: Int = 2000) -> (pairs: [PairCounter.Pair], otherFrames: Int, otherBytes: Int)? {
        perform(timeoutMs: timeoutMs) { [unowned self] in self.pairs.heaviest(limit) }
    }

    /// The MAC table as the forwarding thread sees it, or nil if it does not answer in time.
    public func fdb(timeoutMs: Int = 2000) -> [FdbEntry]? {
        perform(timeoutMs: timeoutMs) { [unowned self] in
            let now = self.clock()
            return self.table.dump().map {
                FdbEntry(mac: $0.mac, location: $0.entry.location,
                         ageS: Double(now &- $0.entry.lastSeenMs) / 1000, isStatic: $0.entry.isStatic)
            }
        }
    }

    /// The switch's clock (ms), for deadlines in snapshots.
    public var now: UInt64 { clock() }

    /// Announces that `mac` now lives behind local port `portID` (a VM arrived here): the table
    /// learns it, and every peer gets a RARP announcement from it — the same frame a hypervisor
    /// sends after a live migration — carrying a sequence number, so peers relearn at once.
    /// Returns the sequence number, or nil if the forwarding thread did not answer.
    public func announceMove(_ mac: MAC, portID: UInt32) -> UInt32? {
        perform(timeoutMs: 2000) { [unowned self] in
            self.moveSequence &+= 1
            let seq = self.moveSequence
            _ = self.learn(mac, at: .port(portID), self.clock())
            // VXLAN header, then: broadcast <- mac, RARP (0x8035) request reverse, sequence in the padding.
            var f = [UInt8](repeating: 0, count: VXLAN.headerLength + 60)
            f.withUnsafeMutableBytes { VXLAN.write(vni: self.options.vni, to: $0.baseAddress!) }
            var o = VXLAN.headerLength
            for b in MAC.broadcast.octets + mac.octets { f[o] = b; o += 1 }
            let body: [UInt8] = [0x80, 0x35, 0, 1, 0x08, 0, 6, 4, 0, 3] + mac.octets + [0, 0, 0, 0] + mac.octets + [0, 0, 0, 0]
            for b in body { f[o] = b; o += 1 }
            f[o] = UInt8(seq >> 24); f[o + 1] = UInt8(seq >> 16 & 0xFF); f[o + 2] = UInt8(seq >> 8 & 0xFF); f[o + 3] = UInt8(seq & 0xFF)
            for peer in self.current.peers {
                if self.io.send(self.tunnel.fd, f, f.count, to: peer) >= 0 { self.stats.framesToPeers += 1 }
            }
            return seq
        }
    }

    private var moveSequence: UInt32 = 0

    private final class Box<T>: @unchecked Sendable { var value: T? }

    /// Runs `work` on the forwarding thread between two batches and returns its result.
    private func perform<T>(timeoutMs: Int, _ work: @escaping () -> T) -> T? {
        guard thread != nil else { return nil }
        let box = Box<T>()
        let sem = DispatchSemaphore(value: 0)
        lock.withLock { inbox.append { box.value = work(); sem.signal() } }
        waker.wake()
        guard sem.wait(timeout: .now() + .milliseconds(timeoutMs)) == .success else { return nil }
        return box.value
    }

    /// What the forwarding thread's `vn_thread_schedule` returned (0 or -errno); its own.
    private var schedulingResult: Int32 = 0

    /// Why the forwarding thread runs without the scheduling its options ask for
    /// (`batchScheduling`, `niceness`, `sliceMicros`); nil when it has it (or did not answer in time). Asked of
    /// the thread itself, so it is the thread's own word.
    public func schedulingError(timeoutMs: Int = 2000) -> String? {
        guard let rc = perform(timeoutMs: timeoutMs, { [self] in schedulingResult }), rc != 0 else { return nil }
        return String(cString: strerror(-rc))
    }

    public func start() {
        let t = Thread { [self] in
            setThreadName("violin-forward")   // what top -H and perf show
            self.schedulingResult = vn_thread_schedule(self.options.batchScheduling ? 1 : 0, self.options.niceness,
                                                       self.options.sliceMicros)
            self.governor.budget = self.options.realtimeBudget
            self.loop()
            self.done.signal()
        }
        t.name = "forwarder"
        t.qualityOfService = .userInteractive
        thread = t
        t.start()
    }

    public func stop() {
        guard thread != nil else { return }
        lock.withLock { stopping = true }
        waker.wake()
        done.wait()
        thread = nil
    }

    // MARK: - The loop

    private func adopt(_ s: SwitchSnapshot) {
        let now = clock()
        let oldPorts = Set(current.ports.map(\.id))
        let oldPeers = Set(current.peers)
        let oldRates = current.rates
        // Entries of ports and peers that went away are forgotten.
        for id in oldPorts.subtracting(s.ports.map(\.id)) { table.forget(.port(id)) }
        for peer in oldPeers.subtracting(s.peers) { table.forget(.peer(peer)) }
        for (mac, _) in current.statics where s.statics[mac] == nil { _ = table.removeStatic(mac) }
        for (mac, location) in s.statics { _ = table.setStatic(mac, at: location, nowMs: now) }
        // Per-port counters follow their ports by id.
        var rxByID: [UInt32: Int] = [:], txByID: [UInt32: Int] = [:], timesByID: [UInt32: (UInt64, UInt64)] = [:]
        var bytesByID: [UInt32: Int] = [:], txBytesByID: [UInt32: Int] = [:], bucketByID: [UInt32: (tokens: Double, at: UInt64, waits: Int)] = [:]
        for (i, p) in current.ports.enumerated() where i < portRx.count {
            rxByID[p.id] = portRx[i]
            txByID[p.id] = portTx[i]
            timesByID[p.id] = (portFirstRx[i], portLastRx[i])
            bytesByID[p.id] = portRxBytes[i]
            txBytesByID[p.id] = portTxBytes[i]
            bucketByID[p.id] = (portTokens[i], portFilledAt[i], portWaits[i])
        }
        // The epoll set follows the ports; tags are indexes into the new snapshot's ports.
        for (i, p) in current.ports.enumerated() where p.reads(shard: shard) { _ = vn_epoll_del(epoll, portFD[i]) }
        portFD = s.ports.map { $0.fd(shard: shard) }
        for (i, p) in s.ports.enumerated() where !failedPorts.contains(p.id) && p.reads(shard: shard) {
            _ = vn_epoll_add(epoll, portFD[i], Self.firstPortTag + UInt32(i))
        }
        current = s
        portIndex = Dictionary(uniqueKeysWithValues: s.ports.enumerated().map { ($1.id, $0) })
        peerSet = Set(s.peers)
        peerByIP = [:]
        for p in s.peers { peerByIP[p.address] = peerByIP[p.address] == nil ? .some(p) : .some(nil) }
        portRx = s.ports.map { rxByID[$0.id] ?? 0 }
        portTx = s.ports.map { txByID[$0.id] ?? 0 }
        portFirstRx = s.ports.map { timesByID[$0.id]?.0 ?? 0 }
        portLastRx = s.ports.map { timesByID[$0.id]?.1 ?? 0 }
        portRxBytes = s.ports.map { bytesByID[$0.id] ?? 0 }
        portTxBytes = s.ports.map { txBytesByID[$0.id] ?? 0 }
        // A port keeps its tokens while its cap stays; a new or changed cap starts full. Every
        // port is in the epoll set again: one still out of tokens waits again at its next read.
        // A multi-queue port's cap is shared out evenly among the threads that read its queues.
        portRatePerMs = s.ports.map { (s.rates[$0.id]?.bytesPerSecond ?? 0) / 1000 / Double($0.queues) }
        portBurst = s.ports.map { (s.rates[$0.id]?.burstBytes ?? 0) / Double($0.queues) }
        portTokens = s.ports.map { p in
            guard let rate = s.rates[p.id] else { return 0 }
            let burst = rate.burstBytes / Double(p.queues)
            return oldRates[p.id] == rate ? bucketByID[p.id]?.tokens ?? burst : burst
        }
        portFilledAt = s.ports.map { bucketByID[$0.id]?.at ?? now }
        portResumeAt = s.ports.map { _ in 0 }
        portWaits = s.ports.map { bucketByID[$0.id]?.waits ?? 0 }
        waitingPorts = 0
    }

    private func loop() {
        var generation = UInt64.max
        var nextSweep = clock() + 1000
        var lastTraffic: UInt64 = 0
        let spinNs = UInt64(options.spinMicros) * 1000
        // The control side's word is taken (under the lock) only when it has rung the waker.
        var controlPending = true
        let maxEvents = 64
        let tags = UnsafeMutablePointer<UInt32>.allocate(capacity: maxEvents)
        epoll = vn_epoll_new()
        precondition(epoll >= 0, "violin-switch: epoll_create1 failed: \(String(cString: strerror(-epoll)))")
        _ = vn_epoll_add(epoll, tunnel.fd, Self.tunnelTag)
        _ = vn_epoll_add(epoll, waker.readFD, Self.wakerTag)
        defer { tags.deallocate(); _ = vn_close(epoll); epoll = -1 }
        while true {
            if controlPending {
                controlPending = false
                let (snapshot, stop, requests) = lock.withLock { () -> (SwitchSnapshot, Bool, [() -> Void]) in
                    defer { if !inbox.isEmpty { inbox.removeAll() } }
                    return (pending, stopping, inbox)
                }
                if stop { return }
                if snapshot.generation != generation {
                    adopt(snapshot)
                    generation = snapshot.generation
                    adoptedSignal.lock()
                    adopted = generation
                    adoptedSignal.broadcast()
                    adoptedSignal.unlock()
                }
                for work in requests { work() }
            }
            let spinning = spinNs > 0 && DispatchTime.now().uptimeNanoseconds &- lastTraffic < spinNs
            var timeoutMs = spinning ? 0 : 1000
            if waitingPorts > 0 { timeoutMs = min(timeoutMs, resumeWaitingPorts(clock())) }
            let count = Int(vn_epoll_wait(epoll, tags, Int32(maxEvents), Int32(timeoutMs)))
            if count < 0 { continue }
            batchNow = clock()
            if let board { exchangeNews(board) }
            var traffic = false
            for k in 0..<count {
                switch tags[k] {
                case Self.tunnelTag: receiveFromPeers(); traffic = true
                case Self.wakerTag: waker.drain(); controlPending = true
                default: receiveFromPort(Int(tags[k] - Self.firstPortTag)); traffic = true
                }
            }
            if traffic && spinNs > 0 { lastTraffic = DispatchTime.now().uptimeNanoseconds }
            flushTunnel()
            if batchNow >= nextSweep {
                table.expire(nowMs: batchNow)
                nextSweep = batchNow + 1000
            }
            if options.realtimeWhenBusy && batchNow >= nextWindow {
                govern()
                nextWindow = batchNow + Self.windowMs
            }
            stats.batches += 1
        }
    }

    // MARK: - Scheduling

    /// How often the thread's scheduling is reconsidered, ms.
    private static let windowMs: UInt64 = 100
    private var nextWindow: UInt64 = 0
    private var governor = SchedulingGovernor()
    /// The figures at the start of the current window: uptime, thread CPU, wait, runs, host idle (ns).
    private var windowStart: (at: UInt64, cpu: UInt64, wait: UInt64, runs: UInt64, idle: UInt64)?

    /// Ends a window: reads the thread's and the host's figures and applies what the governor
    /// decides. Runs on the forwarding thread (the scheduling calls act on the calling thread).
    private func govern() {
        var cpu: UInt64 = 0, wait: UInt64 = 0, runs: UInt64 = 0, idle: UInt64 = 0
        var cpus: Int32 = 0
        guard vn_thread_schedstat(&cpu, &wait, &runs) == 0, vn_host_idle(&idle, &cpus) == 0 else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        defer { windowStart = (now, cpu, wait, runs, idle) }
        guard let w0 = windowStart, now > w0.at else { return }
        let window = SchedulingGovernor.Window(elapsedNs: now - w0.at, cpuNs: cpu &- w0.cpu, waitNs: wait &- w0.wait,
                                               wakeups: runs &- w0.runs, hostIdleNs: idle &- w0.idle, cpus: Int(cpus))
        guard governor.decide(window, now: now) != nil else { return }
        if governor.mode == .realtime {
            let rc = vn_thread_realtime(options.realtimePriority)
            if rc != 0 {
                governor.realtimeRefused()
                realtimeRefusal = String(cString: strerror(-rc))
            }
        } else {
            _ = vn_thread_schedule(options.batchScheduling ? 1 : 0, options.niceness, options.sliceMicros)
        }
    }

    /// Why the kernel refused real-time (the governor then keeps the thread fair for good).
    private var realtimeRefusal: String?

    private static let tunnelTag: UInt32 = 0
    private static let wakerTag: UInt32 = 1
    private static let firstPortTag: UInt32 = 2
    /// The epoll set of the tunnel, the waker and every working port (kept by `adopt`).
    private var epoll: Int32 = -1
    /// The switch's clock, read once per wake-up (not per frame).
    private var batchNow: UInt64 = 0
    /// Ports whose descriptor failed (the device was deleted under us): out of the epoll set
    /// for good, so a dead TAP cannot turn the loop into a busy one.
    private var failedPorts: Set<UInt32> = []

    /// Ports whose tokens are due are read again; the ms until the next one is.
    private func resumeWaitingPorts(_ now: UInt64) -> Int {
        var next = UInt64.max
        for i in 0..<portResumeAt.count where portResumeAt[i] != 0 {
            if portResumeAt[i] <= now {
                portResumeAt[i] = 0
                waitingPorts -= 1
                let port = current.ports[i]
                if !failedPorts.contains(port.id) { _ = vn_epoll_add(epoll, portFD[i], Self.firstPortTag + UInt32(i)) }
            } else {
                next = min(next, portResumeAt[i])
            }
        }
        return next == .max ? 1000 : Int(min(1000, next - now))
    }

    /// A capped port's bucket, filled for the time since it was last.
    @inline(__always)
    private func fill(_ i: Int) {
        let now = batchNow
        if now > portFilledAt[i] {
            portTokens[i] = min(portBurst[i], portTokens[i] + Double(now - portFilledAt[i]) * portRatePerMs[i])
            portFilledAt[i] = now
        }
    }

    /// A capped port out of tokens: not read until it has some again.
    private func waitForTokens(_ i: Int, tokens: Double) {
        let ms = max(1, UInt64((-tokens / portRatePerMs[i]).rounded(.up)))
        portResumeAt[i] = batchNow + ms
        portWaits[i] += 1
        waitingPorts += 1
        _ = vn_epoll_del(epoll, portFD[i])
    }

    /// A TAP whose device went away: stop watching its descriptor.
    private func portFailed(_ index: Int) {
        let port = current.ports[index]
        failedPorts.insert(port.id)
        _ = vn_epoll_del(epoll, portFD[index])
        stats.portFailures += 1
    }

    private func snapshotStats() -> SwitchStats {
        var s = stats
        s.schedulingMode = options.realtimeWhenBusy ? governor.mode.rawValue : "fixed"
        s.realtimeEntries = governor.promotions
        s.overBudget = governor.overBudget
        s.realtimeRefused = realtimeRefusal
        s.table = table.counters
        s.tableSize = table.count
        for reason in DropReason.allCases where dropCounts[DropReasonIndex.of(reason)] > 0 {
            s.drops[reason.rawValue] = dropCounts[DropReasonIndex.of(reason)]
        }
        for (i, p) in current.ports.enumerated() {
            s.perPort[p.name] = .init(rx: portRx[i], tx: portTx[i], firstRxMs: portFirstRx[i], lastRxMs: portLastRx[i],
                                      rxBytes: portRxBytes[i], txBytes: portTxBytes[i], rate: current.rates[p.id], rateWaits: portWaits[i])
        }
        return s
    }

    /// Learns `mac` at `location`; a new or moved address is news for the other threads. False
    /// for a source address no frame may have (multicast, zero).
    @inline(__always)
    private func learn(_ mac: MAC, at location: Location, _ now: UInt64) -> Bool {
        switch table.learn(mac, at: location, nowMs: now) {
        case .invalidSource: return false
        case .learned, .moved: board?.post(from: shard, .init(mac: mac, location: location, fresh: true))
        default: break
        }
        return true
    }

    /// What the other threads learned, into this one's table; and, every `shareMs`, the
    /// addresses this one saw since, so the others' entries for them do not age out.
    private func exchangeNews(_ board: LearnBoard) {
        for n in board.take(shard) { table.heard(n.mac, at: n.location, nowMs: batchNow, fresh: n.fresh) }
        guard batchNow >= nextShare else { return }
        let since = nextShare &- Self.shareMs
        nextShare = batchNow + Self.shareMs
        board.post(from: shard, all: table.seen(sinceMs: since).map { .init(mac: $0.mac, location: $0.location, fresh: false) })
    }

    private static let shareMs: UInt64 = 30_000
    private var nextShare: UInt64 = 0

    @inline(__always)
    private func drop(_ reason: DropReason) {
        dropCounts[DropReasonIndex.of(reason)] += 1
    }

    /// Up to `batch` frames from one port, each read into a slot with room for the VXLAN header
    /// in front of the frame (over the virtio_net_hdr, once it has been read).
    private func receiveFromPort(_ index: Int) {
        let port = current.ports[index]
        // Counted here and written back once per batch: a counter of the object bumped per frame
        // costs an exclusivity check each time.
        var frames = 0, bytes = 0
        let capped = portRatePerMs[index] > 0
        var tokens = 0.0
        if capped { fill(index); tokens = portTokens[index] }
        defer {
            if capped { portTokens[index] = tokens }
            if frames > 0 {
                portRx[index] += frames
                portRxBytes[index] += bytes
                stats.framesFromPorts += frames
                stats.bytesFromPorts += bytes
                let wall = wallClockMillis()       // one clock read per batch, not per frame
                if portFirstRx[index] == 0 { portFirstRx[index] = wall }
                portLastRx[index] = wall
            }
        }
        let headerRoom = port.vnet ? VirtioNetHeader.length : VXLAN.headerLength
        for _ in 0..<options.batch {
            if capped && tokens <= 0 { waitForTokens(index, tokens: tokens); break }
            if slotsUsed == options.batch { flushTunnel() }
            let slot = slots + slotsUsed * slotSize
            let readAt = slot + (headerRoom - (port.vnet ? VirtioNetHeader.length : 0))
            let got = Int(io.read(portFD[index], readAt.assumingMemoryBound(to: UInt8.self), slotSize - headerRoom))
            if got <= 0 {
                // A TAP whose device is gone answers EBADFD (or EIO) for good. Anything else is
                // passing: a QEMU UDP port reports ECONNREFUSED once while QEMU is not there yet.
                if port.kind == .tap && (got == -Int(EBADFD) || got == -Int(EIO)) { portFailed(index) }
                break
            }
            let frame = slot + headerRoom
            var n = got
            var vh = VirtioNetHeader()
            if port.vnet {
                guard got >= VirtioNetHeader.length else { drop(.malformed); continue }
                vh = VirtioNetHeader(slot)
                n = got - VirtioNetHeader.length
            }
            frames += 1
            bytes += n
            if capped { tokens -= Double(n) }
            if n < Ethernet.headerLength { drop(.malformed); continue }
            let dst = MAC(UnsafeRawPointer(frame)), src = MAC(UnsafeRawPointer(frame + 6))
            let now = batchNow
            let source = Location.port(port.id)
            if !learn(src, at: source, now) { drop(.badSource); continue }
            if !dst.isMulticast { pairs.add(src: src, dst: dst, bytes: n) }
            let decision = Forwarding.decide(from: source, destination: dst, source: src,
                                             known: dst.isMulticast ? nil : table.lookup(dst, nowMs: now))
            let tso = vh.gsoType != VirtioNetHeader.gsoNone
            if !tso && vh.flags & VirtioNetHeader.needsChecksum != 0 {
                // Finish the checksum the kernel left to the device: the frame may leave the host.
                Offload.completeChecksum(frame, length: n, start: Int(vh.checksumStart), offset: Int(vh.checksumOffset))
            }
            carryOut(decision, frame, n, vh, tso: tso)
        }
    }

    /// What `Forwarding.decide` said for one frame from a port: to a port, to a peer, a flood,
    /// or a drop. Inlined into `receiveFromPort` (a seam for reading, not a call per frame).
    @inline(__always)
    private func carryOut(_ decision: Decision, _ frame: UnsafeMutableRawPointer, _ n: Int, _ vh: VirtioNetHeader, tso: Bool) {
        switch decision {
        case .port(let id):
            guard let j = portIndex[id] else { drop(.noRoute); return }
            if tso { deliverTSO(frame, n, vh, toPort: j) } else { writePort(j, frame, n) }
        case .peer(let peer):
            guard peerSet.contains(peer) else { drop(.noRoute); return }
            if tso {
                queueTrain(frame, n, mss: Int(vh.gsoSize), to: peer)
            } else {
                VXLAN.write(vni: options.vni, to: frame - VXLAN.headerLength)
                queueTunnel(frame - VXLAN.headerLength, n + VXLAN.headerLength, peer)
                slotsUsed += 1
            }
        case .flood(let except, let toPeers):
            stats.floods += 1
            for (j, p) in current.ports.enumerated() where p.id != except {
                if tso { deliverTSO(frame, n, vh, toPort: j) } else { writePort(j, frame, n) }
            }
            if toPeers && !current.peers.isEmpty {
                if tso {
                    queueSegmented(frame, n, mss: Int(vh.gsoSize), peers: current.peers)
                } else {
                    VXLAN.write(vni: options.vni, to: frame - VXLAN.headerLength)
                    for peer in current.peers { queueTunnel(frame - VXLAN.headerLength, n + VXLAN.headerLength, peer) }
                    slotsUsed += 1
                }
            }
        case .drop(let reason): drop(reason)
        }
    }

    /// A TSO frame to a local port: whole to a TAP with offloads, in segments to any other.
    private func deliverTSO(_ frame: UnsafeMutableRawPointer, _ n: Int, _ vh: VirtioNetHeader, toPort j: Int) {
        let port = current.ports[j]
        if port.vnet {
            let header = frame - VirtioNetHeader.length
            vh.write(to: header)
            let rc = io.write(portFD[j], header.assumingMemoryBound(to: UInt8.self), n + VirtioNetHeader.length)
            if rc < 0 { drop(.congested); return }
            portTx[j] += 1
            portTxBytes[j] += n
            stats.framesToPorts += 1
            return
        }
        let out = segmentBuffer
        guard let r = Offload.segment(frame, length: n, mss: Int(vh.gsoSize), headroom: 0, out: out,
                                      capacity: segmentBufferSize, writeHeadroom: { _ in }) else { drop(.malformed); return }
        for k in 0..<r.count {
            let len = k < r.count - 1 ? r.segmentSize : r.total - k * r.segmentSize
            writePort(j, out + k * r.segmentSize, len)
        }
    }

    // The train: segments of consecutive TSO frames to one peer, waiting to go out together,
    // laid one after another in `trainBuffer` so that a load goes out from one contiguous range.
    // One UDP send carries at most 64 KB, so a 64 KB TSO frame alone needs two (44 segments and
    // 2, at MTU 1500); carried on into the next frame's, its tail shares that one's send.
    private var trainPeer = PeerAddress(addressBE: 0, port: 0)
    private var trainSegmentSize = 0
    /// Where the train starts in `trainBuffer`, and how many segments it holds (all of
    /// `trainSegmentSize` octets but a short last one, which ends it: the train then goes).
    private var trainStart = 0
    private var trainCount = 0
    private var trainBytes = 0

    /// Cuts a TSO frame into VXLAN datagrams behind the train. When they would not fit, the
    /// train's rest (less than one load) moves to the front of the buffer, or, if that is not
    /// enough, the train goes first; when the train's datagrams are of another size, it goes
    /// alone. Returns whether the frame's last segment is short (which ends what can share a
    /// send); nil, nothing of the frame queued, if it cannot be cut. The frame's layout is
    /// parsed once, by `Offload.segment`.
    private func cut(_ frame: UnsafeMutableRawPointer, _ n: Int, mss: Int) -> Bool? {
        let vni = options.vni
        func cutAt(_ offset: Int) -> (segmentSize: Int, count: Int, total: Int)? {
            Offload.segment(frame, length: n, mss: mss, headroom: VXLAN.headerLength, out: trainBuffer + offset,
                            capacity: trainCapacity - offset, writeHeadroom: { VXLAN.write(vni: vni, to: $0) })
        }
        var r = cutAt(trainStart + trainBytes)
        if r == nil && trainStart > 0 {
            trainBuffer.copyMemory(from: trainBuffer + trainStart, byteCount: trainBytes)
            trainStart = 0
            r = cutAt(trainBytes)
        }
        if r == nil && trainCount > 0 {
            sendTrain()
            r = cutAt(0)
        }
        guard let r else { return nil }
        if trainCount > 0 && r.segmentSize != trainSegmentSize {
            // The frame's datagrams were cut right behind the train's: the train goes, the
            // frame's segments stay where they are and start the next one.
            sendLoads(to: trainPeer, count: trainCount)
            trainStart += trainBytes
            trainCount = 0
            trainBytes = 0
        }
        trainSegmentSize = r.segmentSize
        trainCount += r.count
        trainBytes += r.total
        return r.total < r.count * r.segmentSize
    }

    /// How many train segments one UDP GSO send may carry: 64 KB, and at most 64 datagrams
    /// (UDP_MAX_SEGMENTS was 64 before Linux raised it to 128).
    private var perSend: Int { max(1, min(maxUDPPayload / trainSegmentSize, 64)) }

    /// A TSO frame for one peer joins the train, and every full load of the train goes out.
    private func queueTrain(_ frame: UnsafeMutableRawPointer, _ n: Int, mss: Int, to peer: PeerAddress) {
        sendQueued()   // what is queued goes first: a flow's frames keep their order
        if trainCount > 0 && peer != trainPeer { sendTrain() }   // one train, one peer
        guard let shortLast = cut(frame, n, mss: mss) else { drop(.malformed); return }
        trainPeer = peer
        // A short last segment ends what can share a send: all of it goes.
        if shortLast { sendTrain(); return }
        // Otherwise the full loads go now, and the rest waits for the next frame.
        let full = trainCount / perSend * perSend
        sendLoads(to: peer, count: full)
        trainStart += full * trainSegmentSize
        trainBytes -= full * trainSegmentSize
        trainCount -= full
        if trainCount == 0 { trainStart = 0 }
    }

    /// Sends the first `count` train segments to `peer`, in loads of `perSend` (the last load
    /// may end in the train's short segment).
    private func sendLoads(to peer: PeerAddress, count: Int) {
        var k = 0
        while k < count {
            let m = min(perSend, count - k)
            let from = k * trainSegmentSize
            let bytes = min(m * trainSegmentSize, trainBytes - from)
            let rc = io.send(tunnel.fd, (trainBuffer + trainStart + from).assumingMemoryBound(to: UInt8.self), bytes, to: peer,
                             segment: m > 1 ? UInt16(trainSegmentSize) : 0)
            if rc < 0 { dropCounts[DropReasonIndex.of(.congested)] += m } else { stats.framesToPeers += m }
            k += m
        }
    }

    /// Sends what waits in the train; the buffer is free again afterwards.
    private func sendTrain() {
        sendLoads(to: trainPeer, count: trainCount)
        emptyTrain()
    }

    private func emptyTrain() {
        trainStart = 0
        trainCount = 0
        trainBytes = 0
    }

    /// A TSO frame to several peers (a flood): cut once, every peer sent the whole of it.
    private func queueSegmented<C: Collection>(_ frame: UnsafeMutableRawPointer, _ n: Int, mss: Int, peers: C)
        where C.Element == PeerAddress {
        sendTrain()    // its segments use the same buffer
        sendQueued()   // what is queued goes first: a flow's frames keep their order
        guard cut(frame, n, mss: mss) != nil else { drop(.malformed); return }
        for peer in peers { sendLoads(to: peer, count: trainCount) }
        emptyTrain()
    }

    /// Every datagram queued on the tunnel socket, in batches; with GRO, a slot may hold a
    /// train of datagrams of `gso` octets each.
    private func receiveFromPeers() {
        for _ in 0..<64 {
            let count = Int(io.receive(tunnel.fd, rx))
            if count <= 0 { break }
            defer { flushCoalescer() }   // its pieces point into `rx`, which the next receive reuses
            let now = batchNow
            for i in 0..<count {
                let total = Int(vn_batch_length(rx, Int32(i)))
                let base = UnsafeMutableRawPointer(vn_batch_buffer(rx, Int32(i))!)
                var hi: UInt64 = 0, lo: UInt64 = 0
                vn_batch_addr16(rx, Int32(i), &hi, &lo)
                let from = PeerAddress(hi: hi, lo: lo, port: vn_batch_port(rx, Int32(i)))
                let gso = Int(vn_batch_gso_size(rx, Int32(i)))
                let step = gso > 0 ? gso : max(total, 1)
                let peer: PeerAddress?
                if peerSet.contains(from) { peer = from }
                else if let p = peerByIP[from.address], let p { peer = p }
                else { peer = nil }
                var offset = 0
                while offset < total {
                    let len = min(step, total - offset)
                    datagram(base + offset, len, from: peer, now: now)
                    offset += len
                }
            }
            if count < options.batch { break }
        }
        flushCoalescer()
    }

    @inline(__always)
    private func datagram(_ buffer: UnsafeMutableRawPointer, _ len: Int, from peer: PeerAddress?, now: UInt64) {
        stats.framesFromPeers += 1
        stats.bytesFromPeers += len
        guard let peer else { drop(.unknownPeer); return }
        switch VXLAN.parse(buffer, length: len) {
        case .failure: drop(.malformed); return
        case .success(let vni): if vni != options.vni { drop(.wrongVNI); return }
        }
        let frame = buffer + VXLAN.headerLength
        let n = len - VXLAN.headerLength
        if Offload.checkInner(frame, length: n) == .corrupt { drop(.badChecksum); return }
        let dst = MAC(UnsafeRawPointer(frame)), src = MAC(UnsafeRawPointer(frame + 6))
        let source = Location.peer(peer)
        if !learn(src, at: source, now) { drop(.badSource); return }
        // A late frame for a VM that migrated away: on to its new host, during the grace period.
        if !current.moved.isEmpty, let m = current.moved[dst], now < m.untilMs, m.peer != peer {
            flushCoalescer()
            if io.send(tunnel.fd, buffer.assumingMemoryBound(to: UInt8.self), len, to: m.peer) >= 0 {
                stats.graceForwarded += 1
                stats.framesToPeers += 1
            } else {
                drop(.congested)
            }
            return
        }
        let decision = Forwarding.decide(from: source, destination: dst, source: src,
                                         known: dst.isMulticast ? nil : table.lookup(dst, nowMs: now))
        switch decision {
        case .port(let id):
            guard let j = portIndex[id] else { drop(.noRoute); return }
            if current.ports[j].vnet && options.offload {
                if coalescer.offer(frame, length: n, target: j) { return }
                flushCoalescer()
                if coalescer.offer(frame, length: n, target: j) { return }
            } else {
                flushCoalescer()
            }
            writePort(j, frame, n)
        case .flood:
            flushCoalescer()
            stats.floods += 1
            for j in current.ports.indices { writePort(j, frame, n) }
        case .peer: drop(.misdirected)
        case .drop(let reason): drop(reason)
        }
    }

    /// Writes the merged train, if any, to its port (gathered from the receive buffers).
    private func flushCoalescer() {
        guard let (count, j) = coalescer.finish() else { return }
        guard j < current.ports.count else { drop(.noRoute); return }
        let rc = io.write(portFD[j], gather: coalescer.pieces, coalescer.pieceLengths, Int32(count))
        if rc < 0 { dropCounts[DropReasonIndex.of(.congested)] += count - 1; return }
        stats.merged += count - 2
        portTx[j] += 1
        portTxBytes[j] += max(0, Int(rc) - (current.ports[j].vnet ? VirtioNetHeader.length : 0))
        stats.framesToPorts += 1
    }

    /// One plain frame (complete checksums, no GSO) to a port.
    @inline(__always)
    private func writePort(_ i: Int, _ frame: UnsafeMutableRawPointer, _ n: Int) {
        let port = current.ports[i]
        let rc = port.vnet
            ? io.write(portFD[i], header: zeroHeader.assumingMemoryBound(to: UInt8.self), VirtioNetHeader.length,
                       frame: frame.assumingMemoryBound(to: UInt8.self), n)
            : io.write(portFD[i], frame.assumingMemoryBound(to: UInt8.self), n)
        if rc < 0 { drop(.congested); return }
        portTx[i] += 1
        portTxBytes[i] += n
        stats.framesToPorts += 1
    }

    @inline(__always)
    private func queueTunnel(_ data: UnsafeMutableRawPointer, _ len: Int, _ peer: PeerAddress) {
        if trainCount > 0 { sendTrain() }   // the train's segments were queued first
        if txCount == txCapacity { sendQueued() }
        txPointers[txCount] = UnsafePointer(data.assumingMemoryBound(to: UInt8.self))
        txLengths[txCount] = len
        txPeers[txCount] = peer
        txCount += 1
    }

    /// Sends the queued datagrams. A run of datagrams of one size to one peer (small packets of
    /// one flow, say) goes out as one UDP GSO send gathered from the slots, which the peer's
    /// UDP_GRO receives as one train; anything else goes out with sendmmsg.
    private func sendQueued() {
        guard txCount > 0 else { return }
        var i = 0
        var plain = 0
        while i < txCount {
            let peer = txPeers[i], len = txLengths[i]
            var j = i + 1
            // Equal sizes; the last of a run may be shorter.
            while j < txCount && j - i < 64 && txPeers[j] == peer && (j - i + 1) * len <= maxUDPPayload {
                let l = txLengths[j]
                if l > len { break }
                j += 1
                if l < len { break }
            }
            if j - i >= 4 {
                flushPlain(&plain, upTo: i)
                let rc = io.send(tunnel.fd, gather: txPointers + i, txLengths + i, Int32(j - i), to: peer, segment: UInt16(len))
                if rc < 0 { dropCounts[DropReasonIndex.of(.congested)] += j - i } else { stats.framesToPeers += j - i }
                plain = j
            }
            i = j
        }
        flushPlain(&plain, upTo: txCount)
        txCount = 0
    }

    /// sendmmsg of the queued datagrams [from, upTo).
    private func flushPlain(_ from: inout Int, upTo end: Int) {
        guard end > from else { return }
        for k in from..<end {
            vn_batch_set_send16(tx, Int32(k - from), txPointers[k], txLengths[k], txPeers[k].hi, txPeers[k].lo, txPeers[k].port)
        }
        let n = end - from
        let sent = Int(io.send(tunnel.fd, batch: tx, Int32(n)))
        stats.framesToPeers += sent
        if sent < n { dropCounts[DropReasonIndex.of(.congested)] += n - sent }
        from = end
    }

    /// Sends what is queued; the slots and the train's buffer are free again afterwards.
    private func flushTunnel() {
        sendTrain()
        sendQueued()
        slotsUsed = 0
    }
}

enum DropReasonIndex {
    @inline(__always)
    static func of(_ r: DropReason) -> Int {
        switch r {
        case .malformed: 0
        case .wrongVNI: 1
        case .unknownPeer: 2
        case .badSource: 3
        case .samePort: 4
        case .misdirected: 5
        case .noRoute: 6
        case .congested: 7
        case .badChecksum: 8
        }
    }
}

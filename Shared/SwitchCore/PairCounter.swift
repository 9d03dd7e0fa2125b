/// Who talks to whom through one switch: frames and bytes per (source MAC, destination MAC) of
/// the unicast frames its VMs send, counted where they enter (so each frame is counted once in
/// the whole VIOLIN). Bounded: at most `capacity` pairs; a pair that finds the table full is
/// summed into `other`. Pure and owned by the forwarding thread: an add is a hash probe and two
/// increments, skipped to the increments when a frame is of the same pair as the one before.
public struct PairCounter: Sendable {
    public struct Pair: Equatable, Sendable {
        public var src: MAC, dst: MAC
        public var frames: Int, bytes: Int
        public init(src: MAC, dst: MAC, frames: Int, bytes: Int) { self.src = src; self.dst = dst; self.frames = frames; self.bytes = bytes }
    }

    public let capacity: Int
    /// Keys (src << 48 | dst low bits would not fit: two words), 0 = empty (no VM's MAC is zero).
    private var srcs: [UInt64], dsts: [UInt64]
    private var frames: [Int], bytes: [Int]
    private let mask: Int
    public private(set) var count = 0
    /// Frames and bytes of pairs that found the table full.
    public private(set) var otherFrames = 0, otherBytes = 0
    private var lastSrc: UInt64 = 0, lastDst: UInt64 = 0, lastSlot = -1

    /// `capacity` pairs at most (rounded up to a power of two for the table, kept half empty).
    /// Pairs a switch's counter holds at most.
    public static let defaultCapacity = 4096

    public init(capacity: Int = defaultCapacity) {
        self.capacity = max(1, capacity)
        var size = 2
        while size < 2 * self.capacity { size <<= 1 }
        mask = size - 1
        srcs = [UInt64](repeating: 0, count: size); dsts = srcs
        frames = [Int](repeating: 0, count: size); bytes = frames
    }

    @inline(__always)
    public mutating func add(src: MAC, dst: MAC, bytes n: Int) {
        let s = src.raw, d = dst.raw
        if s == lastSrc && d == lastDst && lastSlot >= 0 {
            frames[lastSlot] &+= 1; bytes[lastSlot] &+= n
            return
        }
        guard s != 0 else { otherFrames &+= 1; otherBytes &+= n; return }
        var h = (s &* 0x9E37_79B9_7F4A_7C15) ^ (d &* 0xC2B2_AE3D_27D4_EB4F)
        h ^= h >> 29
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            if srcs[i] == s && dsts[i] == d { break }
            if srcs[i] == 0 {
                guard count < capacity else { otherFrames &+= 1; otherBytes &+= n; return }
                srcs[i] = s; dsts[i] = d; count += 1
                break
            }
            i = (i + 1) & mask
        }
        frames[i] &+= 1; bytes[i] &+= n
        lastSrc = s; lastDst = d; lastSlot = i
    }

    /// The `limit` heaviest pairs by bytes (ties by MACs), and what the others add up to with
    /// `otherFrames`/`otherBytes`.
    public func heaviest(_ limit: Int) -> (pairs: [Pair], otherFrames: Int, otherBytes: Int) {
        var all: [Pair] = []
        all.reserveCapacity(count)
        for i in 0...mask where srcs[i] != 0 {
            all.append(Pair(src: MAC(raw: srcs[i]), dst: MAC(raw: dsts[i]), frames: frames[i], bytes: bytes[i]))
        }
        all.sort(by: Self.heavierFirst)
        let kept = Array(all.prefix(max(0, limit)))
        let rest = all.dropFirst(max(0, limit))
        return (kept, otherFrames + rest.reduce(0) { $0 + $1.frames }, otherBytes + rest.reduce(0) { $0 + $1.bytes })
    }

    /// The order of `heaviest`: by bytes, ties by MACs.
    public static func heavierFirst(_ a: Pair, _ b: Pair) -> Bool { (a.bytes, b.src, b.dst) > (b.bytes, a.src, a.dst) }
}

/// Segmentation and coalescing offloads, in software, over raw frame memory: the pieces that
/// let a userspace switch move 64 KB frames instead of 1.5 KB ones. Pure: pointers in, bytes
/// out, no syscalls.
///
/// A TAP opened with IFF_VNET_HDR puts a 10-octet virtio_net_hdr before each frame (native
/// byte order). With TSO on, the kernel hands over TCPv4 frames of up to 64 KB (`gso_size` =
/// MSS) with a partial checksum (`NEEDS_CSUM`: the field holds the pseudo-header sum). Going to
/// the wire, such a frame is cut into MSS-sized segments, each with its own headers and a full
/// checksum ("TSO in software"); coming from the wire, consecutive segments of one TCP flow are
/// merged back into one such frame ("GRO in software") and handed to the kernel to finish.
public enum Checksum {
    /// Adds `len` octets at `p` to a ones' complement accumulator, as native-order words.
    @inline(__always)
    public static func add(_ p: UnsafeRawPointer, _ len: Int, _ initial: UInt64 = 0) -> UInt64 {
        var sum = initial
        var i = 0
        while i + 8 <= len {
            let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            sum &+= (w & 0xFFFF_FFFF) &+ (w >> 32)
            i += 8
        }
        if i + 4 <= len { sum &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self)); i += 4 }
        if i + 2 <= len { sum &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt16.self)); i += 2 }
        if i < len { sum &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        return sum
    }

    @inline(__always)
    public static func fold(_ s: UInt64) -> UInt16 {
        var s = s
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return UInt16(s)
    }

    /// A 16-bit network-order value as it adds up in native-order words.
    @inline(__always)
    public static func word(_ v: UInt16) -> UInt64 { UInt64(v.bigEndian) }

    /// The IPv4 pseudo-header sum of a TCP or UDP segment of `length` octets.
    @inline(__always)
    public static func pseudoIPv4(_ ip: UnsafeRawPointer, protocol proto: UInt8, length: Int) -> UInt64 {
        add(ip + 12, 8) &+ word(UInt16(proto)) &+ word(UInt16(truncatingIfNeeded: length))
    }

    /// Stores a finished checksum (the complement of the folded sum) at `p`.
    @inline(__always)
    public static func store(_ sum: UInt64, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: ~fold(sum), as: UInt16.self)
    }
}

@inline(__always) func be16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 { UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
@inline(__always) func be32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 { UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
@inline(__always) func put16(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt16) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self) }
@inline(__always) func put32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self) }

/// The virtio_net_hdr a TAP with IFF_VNET_HDR puts before each frame.
public struct VirtioNetHeader: Equatable, Sendable {
    public static let length = 10
    public static let needsChecksum: UInt8 = 1
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0

    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags; self.gsoType = gsoType; self.headerLength = headerLength
        self.gsoSize = gsoSize; self.checksumStart = checksumStart; self.checksumOffset = checksumOffset
    }

    @inline(__always)
    public init(_ p: UnsafeRawPointer) {
        flags = p.load(as: UInt8.self)
        gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
        gsoSize = p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        checksumStart = p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        checksumOffset = p.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
    }

    @inline(__always)
    public func write(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: flags, as: UInt8.self)
        p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: headerLength, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: gsoSize, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: checksumStart, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: checksumOffset, toByteOffset: 8, as: UInt16.self)
    }
}

public enum Offload {
    /// Finishes a partial checksum (NEEDS_CSUM): sums from `start` to the end of the frame,
    /// the field at start+offset holding the pseudo-header sum, and stores the result there.
    /// False when the offsets do not fit the frame.
    @discardableResult
    public static func completeChecksum(_ frame: UnsafeMutableRawPointer, length: Int, start: Int, offset: Int) -> Bool {
        guard start >= Ethernet.headerLength, start + offset + 2 <= length else { return false }
        let sum = Checksum.add(frame + start, length - start)
        Checksum.store(sum, at: frame + start + offset)
        return true
    }

    /// The layout of an IPv4 TCP frame: IP header at 14, TCP header after it.
    public struct TCPv4: Equatable, Sendable {
        public let ipHeaderLength: Int
        public let tcpHeaderLength: Int
        public var tcpOffset: Int { Ethernet.headerLength + ipHeaderLength }
        public var headersLength: Int { tcpOffset + tcpHeaderLength }

        /// Nil unless the frame is IPv4 (no fragment) carrying TCP with sane header lengths.
        @inline(__always)
        public init?(_ f: UnsafeRawPointer, length: Int) {
            guard length >= 54, be16(f, 12) == 0x0800 else { return nil }
            let vihl = f.load(fromByteOffset: 14, as: UInt8.self)
            guard vihl >> 4 == 4, f.load(fromByteOffset: 23, as: UInt8.self) == 6 else { return nil }
            let ihl = Int(vihl & 0x0F) * 4
            guard ihl >= 20, be16(f, 20) & 0x3FFF == 0 else { return nil }   // no fragments
            let tcpOff = 14 + ihl
            guard tcpOff + 20 <= length else { return nil }
            let thl = Int(f.load(fromByteOffset: tcpOff + 12, as: UInt8.self) >> 4) * 4
            guard thl >= 20, tcpOff + thl <= length, Int(be16(f, 16)) + 14 <= length else { return nil }
            ipHeaderLength = ihl
            tcpHeaderLength = thl
        }
    }

    /// Cuts a TCPv4 TSO frame into segments of `mss` payload octets, each written to `out`
    /// after `headroom` octets (filled by `writeHeadroom`, e.g. a VXLAN header) with its own IP
    /// length, id and checksum and TCP sequence number, flags and full checksum. Every segment
    /// but the last is `segmentSize` octets, so the result can go out as one UDP GSO send.
    /// Returns (segmentSize, count, total), or nil if the frame is not TCPv4 or `out` is small.
    public static func segment(_ f: UnsafeRawPointer, length: Int, mss: Int, headroom: Int,
                               out: UnsafeMutableRawPointer, capacity: Int,
                               writeHeadroom: (UnsafeMutableRawPointer) -> Void) -> (segmentSize: Int, count: Int, total: Int)? {
        guard mss > 0, let t = TCPv4(f, length: length) else { return nil }
        let hdr = t.headersLength
        let payload = length - hdr
        guard payload > 0 else { return nil }
        let count = (payload + mss - 1) / mss
        let segmentSize = headroom + hdr + mss
        let total = (count - 1) * segmentSize + headroom + hdr + (payload - (count - 1) * mss)
        guard total <= capacity else { return nil }
        let seq0 = be32(f, t.tcpOffset + 4)
        let id0 = be16(f, 18)
        let flags = f.load(fromByteOffset: t.tcpOffset + 13, as: UInt8.self)
        for k in 0..<count {
            let o = out + k * segmentSize
            writeHeadroom(o)
            let s = o + headroom
            let len = min(mss, payload - k * mss)
            s.copyMemory(from: f, byteCount: hdr)
            (s + hdr).copyMemory(from: f + hdr + k * mss, byteCount: len)
            // IPv4: total length, id, header checksum.
            put16(s, 16, UInt16(t.ipHeaderLength + t.tcpHeaderLength + len))
            put16(s, 18, id0 &+ UInt16(truncatingIfNeeded: k))
            put16(s, 24, 0)
            Checksum.store(Checksum.add(s + 14, t.ipHeaderLength), at: s + 24)
            // TCP: sequence, flags (FIN/PSH on the last only, CWR on the first only), checksum.
            let tcp = t.tcpOffset
            put32(s, tcp + 4, seq0 &+ UInt32(k * mss))
            var fl = flags
            if k < count - 1 { fl &= ~0x09 }
            if k > 0 { fl &= ~0x80 }
            s.storeBytes(of: fl, toByteOffset: tcp + 13, as: UInt8.self)
            put16(s, tcp + 16, 0)
            let tcpLength = t.tcpHeaderLength + len
            let sum = Checksum.pseudoIPv4(s + 14, protocol: 6, length: tcpLength) &+ Checksum.add(s + tcp, tcpLength)
            Checksum.store(sum, at: s + tcp + 16)
        }
        return (segmentSize, count, total)
    }
}

/// Merges consecutive TCPv4 segments of one flow, as they come off the tunnel, into one frame
/// with a virtio_net_hdr (GSO_TCPV4, NEEDS_CSUM) that a TAP takes whole. Owns one buffer.
public struct Coalescer {
    public static let capacity = VirtioNetHeader.length + Ethernet.headerLength + 65_535
    public let buffer: UnsafeMutableRawPointer
    /// Where the merged frame goes (an opaque id of the caller's), when one is open.
    public private(set) var target: Int = -1
    public private(set) var segments = 0
    private var length = 0          // frame octets after the vnet header
    private var layout: Offload.TCPv4?
    private var mss = 0
    private var nextSeq: UInt32 = 0
    private var closed = false      // a short segment ends the train

    public init() {
        buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity, alignment: 64)
    }

    public func deallocate() { buffer.deallocate() }

    public var isOpen: Bool { segments > 0 }

    /// Appends `f` to the open train if it continues it; starts a new train if none is open.
    /// False when `f` cannot be merged (the caller flushes and delivers it itself).
    @inline(__always)
    public mutating func offer(_ f: UnsafeRawPointer, length n: Int, target: Int) -> Bool {
        guard let t = Offload.TCPv4(f, length: n) else { return false }
        let payload = n - t.headersLength
        let flags = f.load(fromByteOffset: t.tcpOffset + 13, as: UInt8.self)
        // Only plain data segments: ACK, optionally PSH; nothing else.
        guard payload > 0, flags & ~0x08 == 0x10, Int(be16(f, 16)) + 14 == n else { return false }
        let frame = buffer + VirtioNetHeader.length
        if segments == 0 {
            guard n <= Self.capacity - VirtioNetHeader.length else { return false }
            frame.copyMemory(from: f, byteCount: n)
            self.target = target
            layout = t
            length = n
            mss = payload
            nextSeq = be32(f, t.tcpOffset + 4) &+ UInt32(payload)
            segments = 1
            closed = flags & 0x08 != 0
            return true
        }
        guard !closed, target == self.target, t == layout!, payload <= mss,
              length + payload <= Self.capacity - VirtioNetHeader.length,
              length - 14 + payload <= 65_535,
              be32(f, t.tcpOffset + 4) == nextSeq,
              // Same addresses, ports, ack, window and options; IP fields but length/id/checksum.
              memcmpEqual(f, frame, 14),
              memcmpEqual(f + 26, frame + 26, 8),
              memcmpEqual(f + t.tcpOffset, frame + t.tcpOffset, 4),
              memcmpEqual(f + t.tcpOffset + 8, frame + t.tcpOffset + 8, 5),
              memcmpEqual(f + t.tcpOffset + 14, frame + t.tcpOffset + 14, 2),
              memcmpEqual(f + t.tcpOffset + 20, frame + t.tcpOffset + 20, t.tcpHeaderLength - 20)
        else { return false }
        (frame + length).copyMemory(from: f + t.headersLength, byteCount: payload)
        length += payload
        nextSeq &+= UInt32(payload)
        segments += 1
        if payload < mss || flags & 0x08 != 0 {
            closed = true
            if flags & 0x08 != 0 { frame.storeBytes(of: UInt8(0x18), toByteOffset: t.tcpOffset + 13, as: UInt8.self) }
        }
        return true
    }

    /// Finishes the open train: headers fixed, checksum left partial for the kernel. Returns the
    /// octets to write (vnet header included) and the target, then resets.
    public mutating func finish() -> (length: Int, target: Int)? {
        guard segments > 0, let t = layout else { return nil }
        defer { segments = 0; target = -1; layout = nil; closed = false }
        let frame = buffer + VirtioNetHeader.length
        put16(frame, 16, UInt16(length - 14))
        put16(frame, 24, 0)
        Checksum.store(Checksum.add(frame + 14, t.ipHeaderLength), at: frame + 24)
        let tcpLength = length - t.tcpOffset
        // NEEDS_CSUM: the field holds the (uncomplemented) pseudo-header sum.
        frame.storeBytes(of: Checksum.fold(Checksum.pseudoIPv4(frame + 14, protocol: 6, length: tcpLength)),
                         toByteOffset: t.tcpOffset + 16, as: UInt16.self)
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum,
                                     gsoType: segments > 1 ? VirtioNetHeader.gsoTCPv4 : VirtioNetHeader.gsoNone,
                                     headerLength: UInt16(t.headersLength), gsoSize: segments > 1 ? UInt16(mss) : 0,
                                     checksumStart: UInt16(t.tcpOffset), checksumOffset: 16)
        header.write(to: buffer)
        return (VirtioNetHeader.length + length, target)
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
        i += 8
    }
    while i < n {
        if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
        i += 1
    }
    return true
}

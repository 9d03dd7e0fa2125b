import Testing
@testable import SwitchCore

/// RFC 1071 the slow way: 16-bit big-endian words, carries folded, complemented.
func naiveChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var i = 0
    while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
    if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

func tcpChecksumIsValid(_ f: [UInt8]) -> Bool {
    let ihl = Int(f[14] & 0x0F) * 4
    let tcp = Array(f[(14 + ihl)...])
    let pseudo = Array(f[26..<34]) + [0, 6, UInt8(tcp.count >> 8), UInt8(tcp.count & 0xFF)]
    return naiveChecksum(pseudo + tcp) == 0
}

func ipChecksumIsValid(_ f: [UInt8]) -> Bool { naiveChecksum(Array(f[14..<(14 + Int(f[14] & 0x0F) * 4)])) == 0 }

/// A TCPv4 frame with a timestamps option; `payload` octets of pattern data.
func tcpFrame(payload: Int, seq: UInt32 = 1000, flags: UInt8 = 0x18, srcPort: UInt16 = 40000, seed: UInt8 = 1) -> [UInt8] {
    var f: [UInt8] = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]
    let total = 20 + 32 + payload
    f += [0x45, 0, UInt8(total >> 8 & 0xFF), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
    f += [UInt8(srcPort >> 8), UInt8(srcPort & 0xFF), 0x14, 0x51]
    f += [UInt8(seq >> 24), UInt8(seq >> 16 & 0xFF), UInt8(seq >> 8 & 0xFF), UInt8(seq & 0xFF)]
    f += [0, 0, 0x30, 0x39, 0x80, flags, 0x01, 0xF5, 0, 0, 0, 0]
    f += [1, 1, 8, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0]   // NOP NOP TS
    f += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
    let ip = naiveChecksum(Array(f[14..<34]))
    f[24] = UInt8(ip >> 8); f[25] = UInt8(ip & 0xFF)
    let tcp = Array(f[34...])
    let c = naiveChecksum(Array(f[26..<34]) + [0, 6, UInt8(tcp.count >> 8), UInt8(tcp.count & 0xFF)] + tcp)
    f[50] = UInt8(c >> 8); f[51] = UInt8(c & 0xFF)
    return f
}

/// A UDPv4 frame (no IP options) with `payload` octets of pattern data and a full checksum.
func udpFrame(payload: Int, srcPort: UInt16 = 5001, ipFlags: UInt8 = 0x40, seed: UInt8 = 3) -> [UInt8] {
    var f: [UInt8] = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]
    let total = 20 + 8 + payload
    f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), seed, 0x34, ipFlags, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
    f += [UInt8(srcPort >> 8), UInt8(srcPort & 0xFF), 0x13, 0x89, UInt8((8 + payload) >> 8), UInt8((8 + payload) & 0xFF), 0, 0]
    f += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 5 &+ Int(seed)) }
    let ip = naiveChecksum(Array(f[14..<34]))
    f[24] = UInt8(ip >> 8); f[25] = UInt8(ip & 0xFF)
    let udp = Array(f[34...])
    let c = naiveChecksum(Array(f[26..<34]) + [0, 17, UInt8(udp.count >> 8), UInt8(udp.count & 0xFF)] + udp)
    f[40] = UInt8(c >> 8); f[41] = UInt8(c & 0xFF)
    return f
}

func udpChecksumIsValid(_ f: [UInt8]) -> Bool {
    let udp = Array(f[34...])
    return naiveChecksum(Array(f[26..<34]) + [0, 17, UInt8(udp.count >> 8), UInt8(udp.count & 0xFF)] + udp) == 0
}

/// Offers frame `f` to `c` (for the refusal tables).
func offerTo(_ c: inout Coalescer, _ f: [UInt8], _ target: Int = 0) -> Bool {
    f.withUnsafeBytes { c.offer($0.baseAddress!, length: $0.count, target: target) }
}

@Suite struct OffloadTests {
    /// Datagrams of one flow merged into one USO frame; the kernel's segmentation (done here the
    /// way __udp_gso_segment does it) gives back every datagram with a valid checksum.
    @Test func udpDatagramsMergeIntoOneUSOFrame() throws {
        let sizes = Array(repeating: 64, count: 9) + [40]
        let frames = sizes.enumerated().map { udpFrame(payload: $1, seed: UInt8($0)) }
        var c = Coalescer()
        defer { c.deallocate() }
        for (k, f) in frames.enumerated() {
            #expect(offerTo(&c, f, 2), "datagram \(k) merges")
        }
        let finished = c.finish()
        let (pieces, target) = try #require(finished)
        #expect(target == 2 && pieces == frames.count + 1)
        var merged = c.gathered(pieces)
        let vh = merged.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) }
        #expect(vh == VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoUDPL4, headerLength: 42, gsoSize: 64,
                                      checksumStart: 34, checksumOffset: 6))
        merged.removeFirst(VirtioNetHeader.length)
        #expect(merged.count == 42 + sizes.reduce(0, +))
        #expect(Int(merged[16]) << 8 | Int(merged[17]) == merged.count - 14 && ipChecksumIsValid(merged))
        #expect(Int(merged[38]) << 8 | Int(merged[39]) == merged.count - 34)
        // Segment again: each datagram's header with its own length, the checksum adjusted for it.
        var offset = 42
        for (k, size) in sizes.enumerated() {
            var seg = Array(merged[0..<42]) + Array(merged[offset..<(offset + size)])
            offset += size
            seg[16] = UInt8((seg.count - 14) >> 8); seg[17] = UInt8((seg.count - 14) & 0xFF)
            seg[38] = UInt8((8 + size) >> 8); seg[39] = UInt8((8 + size) & 0xFF)
            let partial = seg.withUnsafeBytes { Checksum.fold(Checksum.pseudoIPv4($0.baseAddress! + 14, protocol: 17, length: 8 + size)) }
            withUnsafeBytes(of: partial) { seg[40] = $0[0]; seg[41] = $0[1] }
            let done = seg.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: $0.count, start: 34, offset: 6) }
            #expect(done && udpChecksumIsValid(seg), "datagram \(k)")
            #expect(Array(seg[42...]) == Array(frames[k][42...]), "payload of datagram \(k)")
        }
        let again = c.finish()
        #expect(again == nil)
    }

    @Test func udpTrainsRefuseWhatTheyMustNotMerge() {
        var c = Coalescer()
        defer { c.deallocate() }
        #expect(offerTo(&c, udpFrame(payload: 100)))
        #expect(!offerTo(&c, udpFrame(payload: 100, srcPort: 7)), "another flow")
        #expect(!offerTo(&c, udpFrame(payload: 100), 1), "another port")
        #expect(!offerTo(&c, udpFrame(payload: 101)), "larger than the first")
        #expect(!offerTo(&c, tcpFrame(payload: 100, seq: 0, flags: 0x10)), "a TCP segment into a UDP train")
        #expect(!offerTo(&c, udpFrame(payload: 100, ipFlags: 0x20)), "a fragment")
        #expect(offerTo(&c, udpFrame(payload: 30)), "a short datagram ends the train")
        #expect(!offerTo(&c, udpFrame(payload: 30)), "nothing after a short one")
        _ = c.finish()
        var options = udpFrame(payload: 100)
        options[14] = 0x46
        #expect(!offerTo(&c, options), "IP options")
        var lying = udpFrame(payload: 100)
        lying[39] &+= 1
        #expect(!offerTo(&c, lying), "a UDP length that does not match")
        #expect(offerTo(&c, udpFrame(payload: 8)))
        for _ in 1..<Coalescer.maxUDPSegments { #expect(offerTo(&c, udpFrame(payload: 8))) }
        #expect(!offerTo(&c, udpFrame(payload: 8)), "at most the kernel's UDP_MAX_SEGMENTS")
        _ = c.finish()
        #expect(offerTo(&c, tcpFrame(payload: 100, seq: 0, flags: 0x10)))
        #expect(!offerTo(&c, udpFrame(payload: 100)), "a UDP datagram into a TCP train")
    }

    @Test func checksumMatchesRFC1071() {
        var rng = SplitMix(seed: 9)
        // Lengths around the vector steps (64 octets with AVX2, 32 without, 128 where it starts),
        // at every alignment of the start.
        for len in [0, 1, 2, 3, 7, 8, 9, 15, 20, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 255, 1499, 1500, 9001] {
            for shift in [0, 1, 3, 7] {
                let bytes = (0..<(len + shift)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let fast = bytes.withUnsafeBytes {
                    ~Checksum.fold(Checksum.add(($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!) + shift, len))
                }
                let stored = withUnsafeBytes(of: fast) { [$0[0], $0[1]] }     // native store = network bytes
                #expect(UInt16(stored[0]) << 8 | UInt16(stored[1]) == naiveChecksum(Array(bytes[shift...])), "length \(len), shift \(shift)")
                // The copy that sums as it goes: the same sum, the same bytes, at another alignment
                // of the destination, and nothing written past its end.
                var dst = [UInt8](repeating: 0xA5, count: len + 5 + 8)
                let copied = bytes.withUnsafeBytes { src in
                    dst.withUnsafeMutableBytes { d in
                        Checksum.copy(d.baseAddress! + 5, (src.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!) + shift, len)
                    }
                }
                #expect(Checksum.fold(copied) == ~fast, "copy sum, length \(len), shift \(shift)")
                #expect(Array(dst[5..<(5 + len)]) == Array(bytes[shift...]), "copied bytes, length \(len), shift \(shift)")
                #expect(dst.prefix(5).allSatisfy { $0 == 0xA5 } && dst.suffix(8).allSatisfy { $0 == 0xA5 })
            }
        }
        // An initial sum carries on: two halves summed in turn equal the whole (even split).
        let whole = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        whole.withUnsafeBytes { b in
            #expect(Checksum.fold(Checksum.add(b.baseAddress! + 1400, 1600, Checksum.add(b.baseAddress!, 1400)))
                    == Checksum.fold(Checksum.add(b.baseAddress!, 3000)))
        }
    }

    @Test func completesAPartialChecksum() {
        var f = tcpFrame(payload: 333)
        let tcpLen = f.count - 34
        // The kernel's NEEDS_CSUM form: the pseudo-header sum in the field.
        let pseudo = f.withUnsafeBytes { Checksum.fold(Checksum.pseudoIPv4($0.baseAddress! + 14, protocol: 6, length: tcpLen)) }
        withUnsafeBytes(of: pseudo) { f[50] = $0[0]; f[51] = $0[1] }
        let done = f.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: $0.count, start: 34, offset: 16) }
        #expect(done)
        #expect(tcpChecksumIsValid(f))
        let outside = f.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: $0.count, start: 34, offset: 400) }
        #expect(!outside)
    }

    /// A 64 KB TSO frame cut into VXLAN datagrams, then merged back: the same bytes come out.
    @Test func segmentThenCoalesceRestoresTheFrame() throws {
        let mss = 1386
        let original = tcpFrame(payload: 60_000, seq: 0xFFFF_F000, flags: 0x18)   // sequence wraps
        var out = [UInt8](repeating: 0, count: 140_000)
        let segmented = original.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                Offload.segment(src.baseAddress!, length: src.count, mss: mss, headroom: 8, out: dst.baseAddress!,
                                capacity: dst.count, writeHeadroom: { VXLAN.write(vni: 5, to: $0) })
            }
        }
        let r = try #require(segmented)
        #expect(r.count == (60_000 + mss - 1) / mss && r.segmentSize == 8 + 66 + mss)
        var segments: [[UInt8]] = []
        for k in 0..<r.count {
            let start = k * r.segmentSize
            let end = k == r.count - 1 ? r.total : start + r.segmentSize
            let seg = Array(out[start..<end])
            #expect(Array(seg.prefix(8)) == [8, 0, 0, 0, 0, 0, 5, 0])
            let f = Array(seg.dropFirst(8))
            #expect(ipChecksumIsValid(f) && tcpChecksumIsValid(f), "segment \(k)")
            #expect(Int(f[16]) << 8 | Int(f[17]) == f.count - 14, "IP length of segment \(k)")
            let seq = UInt32(f[38]) << 24 | UInt32(f[39]) << 16 | UInt32(f[40]) << 8 | UInt32(f[41])
            #expect(seq == 0xFFFF_F000 &+ UInt32(k * mss))
            #expect(f[47] == (k == r.count - 1 ? 0x18 : 0x10), "PSH on the last segment only")
            segments.append(f)
        }
        // One octet short of room for the last segment: refused, not written past the end.
        let tight = original.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                Offload.segment(src.baseAddress!, length: src.count, mss: mss, headroom: 8, out: dst.baseAddress!,
                                capacity: r.total - 1, writeHeadroom: { VXLAN.write(vni: 5, to: $0) })
            }
        }
        #expect(tight == nil)
        var c = Coalescer()
        defer { c.deallocate() }
        for (k, f) in segments.enumerated() {
            #expect(offerTo(&c, f, 3), "segment \(k) merges")
        }
        let finished = c.finish()
        let (pieces, target) = try #require(finished)
        #expect(target == 3 && pieces == segments.count + 1)
        var result = c.gathered(pieces)
        let vh = result.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) }
        #expect(vh == VirtioNetHeader(flags: 1, gsoType: 1, headerLength: 66, gsoSize: UInt16(mss), checksumStart: 34, checksumOffset: 16))
        result.removeFirst(VirtioNetHeader.length)
        #expect(result.count == original.count)
        #expect(Array(result[66...]) == Array(original[66...]), "payload intact")
        #expect(ipChecksumIsValid(result))
        let completed = result.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: $0.count, start: 34, offset: 16) }
        #expect(completed)
        #expect(tcpChecksumIsValid(result))
        let again = c.finish()
        #expect(again == nil)
    }

    /// Frames from the tunnel are checked before they are merged or delivered: a merged frame
    /// reaches the kernel with its checksum marked partial, which the kernel takes on trust.
    @Test func innerChecksumsAreCheckedAndPartialOnesFinished() {
        func check(_ f: [UInt8]) -> (Offload.InnerCheck, [UInt8]) {
            var g = f
            let r = g.withUnsafeMutableBytes { Offload.checkInner($0.baseAddress!, length: $0.count) }
            return (r, g)
        }
        #expect(check(tcpFrame(payload: 100)).0 == .valid)
        var payload = tcpFrame(payload: 100)
        payload[120] ^= 0x04
        #expect(check(payload).0 == .corrupt, "a flipped payload bit")
        var ttl = tcpFrame(payload: 100)
        ttl[22] &-= 1
        #expect(check(ttl).0 == .corrupt, "an IP header changed on the way")
        // Left partial by the sender (the pseudo-header sum in the field), as Linux vxlan over a
        // veth sends it: finished here.
        var partial = tcpFrame(payload: 300)
        let pseudo = partial.withUnsafeBytes { Checksum.fold(Checksum.pseudoIPv4($0.baseAddress! + 14, protocol: 6, length: 32 + 300)) }
        withUnsafeBytes(of: pseudo) { partial[50] = $0[0]; partial[51] = $0[1] }
        #expect(!tcpChecksumIsValid(partial))
        let (r, finished) = check(partial)
        #expect(r == .completed && tcpChecksumIsValid(finished) && Array(finished[52...]) == Array(partial[52...]))

        #expect(check(udpFrame(payload: 64)).0 == .valid)
        var udp = udpFrame(payload: 64)
        udp[60] ^= 0x80
        #expect(check(udp).0 == .corrupt, "a UDP datagram with a wrong checksum")
        var unchecked = udpFrame(payload: 64)
        unchecked[40] = 0; unchecked[41] = 0; unchecked[60] ^= 0x80
        #expect(check(unchecked).0 == .unchecked, "UDP checksum 0: the sender gave none to check")

        // IPv6 TCP: valid, corrupt, partial.
        var v6: [UInt8] = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xDD, 0x60, 0, 0, 0, 0, 20 + 40, 6, 64]
        v6 += (0..<32).map { UInt8($0 * 3 & 0xFF) }
        v6 += [0x9C, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0x01, 0xF5, 0, 0, 0, 0]
        v6 += (0..<40).map { UInt8($0) }
        let pseudo6 = Array(v6[22..<54]) + [0, 0, 0, 60, 0, 0, 0, 6]
        let c6 = naiveChecksum(pseudo6 + Array(v6[54...]))
        var good6 = v6
        good6[70] = UInt8(c6 >> 8); good6[71] = UInt8(c6 & 0xFF)
        #expect(check(good6).0 == .valid)
        var bad6 = good6
        bad6[80] ^= 1
        #expect(check(bad6).0 == .corrupt)
        var partial6 = v6
        let p6 = ~naiveChecksum(pseudo6)
        partial6[70] = UInt8(p6 >> 8); partial6[71] = UInt8(p6 & 0xFF)
        let (r6, finished6) = check(partial6)
        #expect(r6 == .completed && naiveChecksum(pseudo6 + Array(finished6[54...])) == 0)

        var icmp = tcpFrame(payload: 10)
        icmp[23] = 1
        #expect(check(icmp).0 == .unchecked, "not TCP or UDP: the receiver checks it")
        var fragment = tcpFrame(payload: 10)
        fragment[20] = 0x20
        #expect(check(fragment).0 == .unchecked)
        #expect(check(Array(tcpFrame(payload: 10).prefix(30))).0 == .unchecked, "too short to hold the headers")
    }

    /// The check agrees with RFC 1071 over random segments, valid and damaged.
    @Test func innerCheckMatchesTheNaiveOne() {
        var rng = SplitMix(seed: 21)
        for k in 0..<200 {
            var f = tcpFrame(payload: 1 + Int(rng.next() % 1460), seq: UInt32(k), flags: 0x10, seed: UInt8(k & 0xFF))
            if k % 2 == 1 { f[66 + Int(rng.next() % UInt64(f.count - 66))] ^= UInt8(1 << (k % 8)) }   // in the payload
            let valid = ipChecksumIsValid(f) && tcpChecksumIsValid(f)
            let r = f.withUnsafeMutableBytes { Offload.checkInner($0.baseAddress!, length: $0.count) }
            #expect(r == (valid ? .valid : .corrupt), "frame \(k)")
        }
    }

    @Test func coalescerRefusesWhatItMustNotMerge() {
        var c = Coalescer()
        defer { c.deallocate() }
        #expect(offerTo(&c, tcpFrame(payload: 100, seq: 0, flags: 0x10)))
        #expect(!offerTo(&c, tcpFrame(payload: 100, seq: 200, flags: 0x10)), "a gap in sequence")
        #expect(!offerTo(&c, tcpFrame(payload: 100, seq: 100, flags: 0x10, srcPort: 1)), "another flow")
        #expect(!offerTo(&c, tcpFrame(payload: 100, seq: 100, flags: 0x10), 1), "another port")
        #expect(!offerTo(&c, tcpFrame(payload: 100, seq: 100, flags: 0x11)), "FIN")
        #expect(!offerTo(&c, tcpFrame(payload: 200, seq: 100, flags: 0x10)), "larger than the first segment")
        #expect(offerTo(&c, tcpFrame(payload: 50, seq: 100, flags: 0x10)), "a short segment ends the train")
        #expect(!offerTo(&c, tcpFrame(payload: 50, seq: 150, flags: 0x10)), "nothing after a short one")
        #expect(c.segments == 2)
        _ = c.finish()
        #expect(!offerTo(&c, tcpFrame(payload: 0, seq: 0, flags: 0x10)), "a bare ACK is delivered as it is")
        #expect(!offerTo(&c, tcpFrame(payload: 10, seq: 0, flags: 0x02)), "SYN")
        var udp = tcpFrame(payload: 10)
        udp[23] = 17
        #expect(!offerTo(&c, udp), "not TCP")
        var frag = tcpFrame(payload: 10)
        frag[20] = 0x20
        #expect(!offerTo(&c, frag), "a fragment")
    }
}

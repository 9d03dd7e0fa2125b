import Testing
@testable import SwitchCore

let a = MAC("02:00:00:00:00:0a")!, b = MAC("02:00:00:00:00:0b")!, c = MAC("02:00:00:00:00:0c")!
let peer1 = PeerAddress("10.0.0.1:4789")!, peer2 = PeerAddress("10.0.0.2:4789")!

@Suite struct FrameTests {
    @Test func macTextAndBits() {
        #expect(MAC("aa:bb:cc:dd:ee:ff")?.description == "aa:bb:cc:dd:ee:ff")
        #expect(MAC("AA:BB:CC:DD:EE:0F")?.raw == 0xAABB_CCDD_EE0F)
        for bad in ["", "aa:bb", "aa:bb:cc:dd:ee:fg", "aa:bb:cc:dd:ee:ff:00", "aabb.ccdd.eeff", "a:b:c:d:e:f"] {
            #expect(MAC(bad) == nil, "\(bad)")
        }
        #expect(MAC.broadcast.isBroadcast && MAC.broadcast.isMulticast)
        #expect(MAC("01:00:5e:00:00:01")!.isMulticast && MAC("33:33:00:00:00:01")!.isMulticast)
        #expect(!a.isMulticast)
        let bytes: [UInt8] = [0x02, 0, 0, 0, 0, 0x0a]
        let read = bytes.withUnsafeBytes { MAC($0.baseAddress!) }
        #expect(read == a)
        #expect(a.octets == bytes)
    }

    @Test func peerAddresses() {
        #expect(PeerAddress("10.1.2.3:99")?.description == "10.1.2.3:99")
        #expect(PeerAddress("10.1.2.3")?.port == 4789)
        #expect(PeerAddress("10.1.2.3")!.addressBE == 0x0302_010A)   // network order in memory
        for bad in ["", "10.1.2", "10.1.2.3:0", "10.1.2.3:70000", "10.1.2.256", "a.b.c.d", "10.1.2.3:4:5", "1.2.3.4.5"] {
            #expect(PeerAddress(bad) == nil, "\(bad)")
        }
        #expect(PeerAddress("10.1.2.3")?.isIPv6 == false)
    }

    /// IPv6 underlay addresses: bracketed with a port, RFC 5952 text back, the same address
    /// written two ways equal, an IPv4 one never mistaken for IPv6.
    @Test func ipv6PeerAddresses() throws {
        let a = try #require(PeerAddress("[2001:db8::1]:4790"))
        #expect(a.isIPv6 && a.port == 4790 && a.description == "[2001:db8::1]:4790" && a.addressBE == 0)
        #expect(PeerAddress("[2001:0db8:0:0:0:0:0:0001]:4790") == a, "the same address, written in full")
        #expect(PeerAddress("[fd78::2]")?.port == 4789 && PeerAddress("fd78::2")?.description == "[fd78::2]:4789")
        #expect(PeerAddress("[::1]:1")?.host == "::1" && PeerAddress("[::]:0", allowAnyPort: true)?.host == "::")
        #expect(PeerAddress("[1:0:0:2:0:0:0:3]")?.host == "1:0:0:2::3", "the longest run of zeros is the one compressed")
        #expect(PeerAddress("[::ffff:10.1.2.3]:5")?.isIPv6 == false, "an IPv4-mapped address is the IPv4 one")
        #expect(PeerAddress("[::ffff:10.1.2.3]:5") == PeerAddress("10.1.2.3:5"))
        #expect(PeerAddress("[64:ff9b::10.1.2.3]")?.host == "64:ff9b::a01:203")
        #expect(a.bytes == [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1])
        for bad in ["[2001:db8::1", "[2001:db8::1]4789", "[2001:db8::1]:", "[2001:db8::1]:0", "[2001:db8::1]:65536", "[1:2:3:4:5:6:7:8:9]",
                    "[1::2::3]", "[12345::1]", "[g::1]", "[:::1]", "[1:2:3:4:5:6:7]", "2001:db8::1:4789:x"] {
            #expect(PeerAddress(bad) == nil, "\(bad)")
        }
    }

    @Test func vxlanHeaderRoundTrip() {
        var buf = [UInt8](repeating: 0xEE, count: VXLAN.headerLength + Ethernet.headerLength)
        buf.withUnsafeMutableBytes { VXLAN.write(vni: 0xABCDEF, to: $0.baseAddress!) }
        #expect(Array(buf.prefix(8)) == [0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])
        func parse(_ length: Int? = nil) -> Result<UInt32, VXLAN.ParseError> {
            buf.withUnsafeBytes { VXLAN.parse($0.baseAddress!, length: length ?? $0.count) }
        }
        #expect(parse() == .success(0xABCDEF))
        // Reserved bits set by a sloppy sender are ignored (RFC 7348 §5).
        buf[1] = 0xFF; buf[7] = 0xFF; buf[0] = 0x0C
        #expect(parse() == .success(0xABCDEF))
        buf[0] = 0x00
        #expect(parse() == .failure(.flags))
        #expect(parse(21) == .failure(.short))
    }
}

@Suite struct MACTableTests {
    @Test func learnsMovesAndAges() {
        var t = MACTable(maxEntries: 16, ageingMs: 1000)
        let r1 = t.learn(a, at: .port(1), nowMs: 0)
        #expect(r1 == .learned)
        let r2 = t.learn(a, at: .port(1), nowMs: 500)
        #expect(r2 == .refreshed)
        #expect(t.lookup(a, nowMs: 1400) == .port(1))
        let r3 = t.learn(a, at: .peer(peer1), nowMs: 1400)
        #expect(r3 == .moved(from: .port(1)))
        #expect(t.lookup(a, nowMs: 2400) == .peer(peer1))
        #expect(t.lookup(a, nowMs: 2401) == nil, "idle past the ageing time: unknown")
        let r4 = t.expire(nowMs: 2401)
        #expect(r4 == 1)
        #expect(t.count == 0)
        #expect(t.counters.learned == 1 && t.counters.moved == 1 && t.counters.expired == 1 && t.counters.refused == 0)
        let r5 = t.learn(MAC.broadcast, at: .port(1), nowMs: 0)
        #expect(r5 == .invalidSource)
        let r6 = t.learn(MAC(raw: 0), at: .port(1), nowMs: 0)
        #expect(r6 == .invalidSource)
    }

    /// News from another forwarding thread: a fresh sighting moves an entry as learning does; a
    /// repeated one keeps an entry at the same place alive (or makes a missing one) and never
    /// moves one, nor touches a static entry.
    @Test func aRepeatedSightingKeepsAnEntryAliveButNeverMovesIt() {
        var t = MACTable(maxEntries: 16, ageingMs: 1000)
        t.learn(a, at: .port(1), nowMs: 0)
        #expect(t.heard(a, at: .port(1), nowMs: 900, fresh: false) == .refreshed)
        #expect(t.lookup(a, nowMs: 1800) == .port(1), "kept alive past its own ageing")
        #expect(t.heard(a, at: .peer(peer1), nowMs: 1000, fresh: false) == .refused)
        #expect(t.lookup(a, nowMs: 1000) == .port(1), "a repeated sighting elsewhere does not move it")
        #expect(t.heard(a, at: .peer(peer1), nowMs: 1000, fresh: true) == .moved(from: .port(1)))
        #expect(t.heard(b, at: .port(2), nowMs: 1000, fresh: false) == .learned)
        _ = t.setStatic(b, at: .port(3), nowMs: 1000)
        #expect(t.heard(b, at: .port(2), nowMs: 1100, fresh: false) == .refused && t.lookup(b, nowMs: 1100) == .port(3))
        // What a thread repeats to the others: dynamic entries seen since a time, statics left out.
        t.learn(c, at: .port(4), nowMs: 1200)
        #expect(t.seen(sinceMs: 1001).map(\.mac) == [c] && Set(t.seen(sinceMs: 0).map(\.mac)) == [a, c])
    }

    @Test func staticEntriesNeitherAgeNorMove() {
        var t = MACTable(maxEntries: 4, ageingMs: 10)
        t.learn(a, at: .port(1), nowMs: 0)
        let r7 = t.setStatic(a, at: .port(2), nowMs: 0)
        #expect(r7)
        let r8 = t.learn(a, at: .port(3), nowMs: 5)
        #expect(r8 == .staticEntry)
        #expect(t.lookup(a, nowMs: 1_000_000) == .port(2))
        let r9 = t.expire(nowMs: 1_000_000)
        #expect(r9 == 0)
        t.forget(.port(2))
        #expect(t.lookup(a, nowMs: 1_000_000) == .port(2), "forgetting a port keeps its static entries")
        let removed = t.removeStatic(a), again = t.removeStatic(a)
        #expect(removed && !again)
        #expect(t.lookup(a, nowMs: 0) == nil)
    }

    @Test func floodingCannotEvictOrHogTheTable() {
        var t = MACTable(maxEntries: 100, perLocationLimit: 10, ageingMs: 1000)
        t.learn(a, at: .port(1), nowMs: 0)
        // One port sends from 1,000 random source addresses.
        for i in 0..<1000 { t.learn(MAC(raw: 0x0200_0000_1000 + UInt64(i)), at: .port(2), nowMs: 0) }
        #expect(t.count == 11)
        #expect(t.counters.refused == 990)
        #expect(t.lookup(a, nowMs: 0) == .port(1), "the victim keeps its entry")
        let r10 = t.learn(b, at: .port(3), nowMs: 0)
        #expect(r10 == .learned, "other ports can still learn")
        // The table's hard limit holds across many ports.
        for p in 4..<40 { for i in 0..<10 { t.learn(MAC(raw: UInt64(p) << 16 | UInt64(i) | 0x0200_0000_0000), at: .port(UInt32(p)), nowMs: 0) } }
        #expect(t.count == 100)
    }

    /// The table against a naive model of the same rules, over many random operations.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func matchesANaiveModel(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        let maxEntries = 12, perLocation = 5, ageing: UInt64 = 50
        var t = MACTable(maxEntries: maxEntries, perLocationLimit: perLocation, ageingMs: ageing)
        var model: [MAC: (loc: Location, seen: UInt64, isStatic: Bool)] = [:]
        var now: UInt64 = 0
        let macs = (0..<20).map { MAC(raw: 0x0200_0000_0000 | UInt64($0)) }
        let locations: [Location] = [.port(1), .port(2), .port(3), .peer(peer1), .peer(peer2)]
        for step in 0..<3000 {
            now += rng.next() % 4
            let mac = macs[Int(rng.next() % UInt64(macs.count))]
            let loc = locations[Int(rng.next() % UInt64(locations.count))]
            switch rng.next() % 10 {
            case 0..<6:
                let owned = model.values.filter { $0.loc == loc && !$0.isStatic }.count
                let r = t.learn(mac, at: loc, nowMs: now)
                if let e = model[mac] {
                    if e.isStatic { #expect(r == .staticEntry) }
                    else if e.loc == loc { #expect(r == .refreshed); model[mac]!.seen = now }
                    else if owned >= perLocation { #expect(r == .refused, "step \(step)") }
                    else { #expect(r == .moved(from: e.loc)); model[mac] = (loc, now, false) }
                } else if model.count >= maxEntries || owned >= perLocation {
                    #expect(r == .refused, "step \(step)")
                } else {
                    #expect(r == .learned, "step \(step)"); model[mac] = (loc, now, false)
                }
            case 6:
                t.expire(nowMs: now)
                model = model.filter { $0.value.isStatic || now - $0.value.seen <= ageing }
            case 7:
                if t.setStatic(mac, at: loc, nowMs: now) { model[mac] = (loc, now, true) }
                else { #expect(model[mac] == nil && model.count >= maxEntries) }
            case 8:
                let had = model[mac]?.isStatic == true
                let removed = t.removeStatic(mac)
                #expect(removed == had)
                if had { model[mac] = nil }
            default:
                t.forget(loc)
                model = model.filter { $0.value.isStatic || $0.value.loc != loc }
            }
            for m in macs {
                let expected = model[m].flatMap { $0.isStatic || now - $0.seen <= ageing ? $0.loc : nil }
                #expect(t.lookup(m, nowMs: now) == expected, "step \(step) \(m)")
            }
            #expect(t.count == model.count, "step \(step)")
        }
    }
}

/// A small deterministic generator for property tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct DecisionTests {
    /// Every rule of §2.1.2 as one row: where it came from, where it goes, what the table knows.
    static let rows: [(String, Location, MAC, Location?, Decision)] = [
        ("known unicast, local port", .port(1), b, .port(2), .port(2)),
        ("known unicast, behind a peer", .port(1), b, .peer(peer1), .peer(peer1)),
        ("unknown unicast from a port floods everywhere else", .port(1), b, nil, .flood(exceptPort: 1, toPeers: true)),
        ("broadcast from a port floods everywhere else", .port(1), .broadcast, nil, .flood(exceptPort: 1, toPeers: true)),
        ("multicast from a port floods", .port(1), MAC("33:33:00:00:00:01")!, nil, .flood(exceptPort: 1, toPeers: true)),
        ("multicast ignores the table", .port(1), MAC("01:00:5e:00:00:fb")!, .port(2), .flood(exceptPort: 1, toPeers: true)),
        ("back out of its own port: dropped", .port(1), b, .port(1), .drop(.samePort)),
        ("from a peer to a local port", .peer(peer1), b, .port(2), .port(2)),
        ("unknown from a peer: local ports only", .peer(peer1), b, nil, .flood(exceptPort: nil, toPeers: false)),
        ("broadcast from a peer: local ports only", .peer(peer1), .broadcast, nil, .flood(exceptPort: nil, toPeers: false)),
        ("from a peer, known behind another peer: never re-sent", .peer(peer1), b, .peer(peer2), .drop(.misdirected)),
    ]

    @Test(arguments: 0..<rows.count)
    func rule(index: Int) {
        let (name, from, dst, known, expected) = Self.rows[index]
        #expect(Forwarding.decide(from: from, destination: dst, source: a, known: known) == expected, "\(name)")
    }

    @Test func badSourcesAreDropped() {
        #expect(Forwarding.decide(from: .port(1), destination: b, source: .broadcast, known: nil) == .drop(.badSource))
        #expect(Forwarding.decide(from: .peer(peer1), destination: b, source: MAC(raw: 0), known: nil) == .drop(.badSource))
    }
}

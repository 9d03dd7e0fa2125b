import Testing
@testable import SwitchCore

@Suite struct PairCounterTests {
    func mac(_ i: Int) -> MAC { MAC(raw: 0x0200_0000_0000 | UInt64(i)) }

    /// Each direction is its own pair; runs of one pair and interleaved pairs count the same.
    @Test func countsEachPairEachWay() {
        var c = PairCounter(capacity: 16)
        for _ in 0..<3 { c.add(src: mac(1), dst: mac(2), bytes: 100) }
        c.add(src: mac(2), dst: mac(1), bytes: 60)
        for i in 0..<10 { c.add(src: mac(1), dst: mac(i % 2 == 0 ? 2 : 3), bytes: 10) }
        let h = c.heaviest(10)
        #expect(h.pairs == [.init(src: mac(1), dst: mac(2), frames: 8, bytes: 350),
                            .init(src: mac(2), dst: mac(1), frames: 1, bytes: 60),
                            .init(src: mac(1), dst: mac(3), frames: 5, bytes: 50)])
        #expect(h.otherFrames == 0 && h.otherBytes == 0 && c.count == 3)
    }

    /// Bounded: pairs beyond the table's room, and beyond the limit asked for, are summed.
    @Test func aFullTableSumsTheRest() {
        var c = PairCounter(capacity: 4)
        for i in 1...6 { for _ in 0..<i { c.add(src: mac(i), dst: mac(100), bytes: 1000) } }
        #expect(c.count == 4)
        let all = c.heaviest(100)
        #expect(all.pairs.map(\.src) == [mac(4), mac(3), mac(2), mac(1)])
        // Pairs 5 and 6 (5 + 6 frames) found no room.
        #expect(all.otherFrames == 11 && all.otherBytes == 11_000)
        let two = c.heaviest(2)
        #expect(two.pairs.count == 2 && two.otherFrames == 11 + 2 + 1 && two.otherBytes == 14_000)
        // Every frame is counted once, kept or summed.
        #expect(two.pairs.reduce(0) { $0 + $1.frames } + two.otherFrames == 21)
    }

    /// Many pairs in random order against a plain dictionary.
    @Test func agreesWithADictionary() {
        var c = PairCounter(capacity: 4096)
        var expected: [[UInt64]: (Int, Int)] = [:]
        var r = SplitMix(seed: 7)
        for _ in 0..<20_000 {
            let s = Int(r.next() % 40) + 1, d = Int(r.next() % 40) + 1, n = Int(r.next() % 1500) + 60
            c.add(src: mac(s), dst: mac(d), bytes: n)
            let e = expected[[UInt64(s), UInt64(d)], default: (0, 0)]
            expected[[UInt64(s), UInt64(d)]] = (e.0 + 1, e.1 + n)
        }
        let h = c.heaviest(4096)
        #expect(h.pairs.count == expected.count && h.otherFrames == 0)
        for p in h.pairs {
            let e = expected[[p.src.raw & 0xFF, p.dst.raw & 0xFF]]
            #expect(e?.0 == p.frames && e?.1 == p.bytes)
        }
        #expect(zip(h.pairs, h.pairs.dropFirst()).allSatisfy { $0.bytes >= $1.bytes }, "heaviest first")
    }
}

import VIOLINProtocol

/// Where a MAC address lives, as a switch sees it: one of its local ports or one of its peers.
public enum Location: Hashable, Sendable, CustomStringConvertible {
    case port(UInt32)
    case peer(PeerAddress)

    public var description: String {
        switch self {
        case .port(let id): return "port:\(id)"
        case .peer(let p): return "peer:\(p)"
        }
    }
}

/// A peer switch's underlay address and UDP port: IPv4 or IPv6, kept as its 16 bytes in memory
/// order in two words (an IPv4 address as ::ffff:a.b.c.d), as the data plane's C shim takes it.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public let hi: UInt64
    public let lo: UInt64
    public let port: UInt16

    /// The words of ::ffff:0.0.0.0 (IPv4-mapped) before the address's own four bytes.
    static let mappedLo: UInt64 = 0xFFFF_0000

    public init(hi: UInt64, lo: UInt64, port: UInt16) {
        self.hi = hi
        self.lo = lo
        self.port = port
    }

    /// An IPv4 address (network byte order, as a socket gives it).
    public init(addressBE: UInt32, port: UInt16) {
        self.init(hi: 0, lo: UInt64(addressBE) << 32 | Self.mappedLo, port: port)
    }

    public var isIPv6: Bool { hi != 0 || lo & 0xFFFF_FFFF != Self.mappedLo }

    /// The IPv4 address in network byte order (0 for an IPv6 one).
    public var addressBE: UInt32 { isIPv6 ? 0 : UInt32(truncatingIfNeeded: lo >> 32) }

    /// The address alone (for matching a peer whatever its port).
    public var address: Host { Host(hi: hi, lo: lo) }
    public struct Host: Hashable, Sendable { public let hi: UInt64, lo: UInt64 }

    /// "10.0.0.1:4789" or "[2001:db8::1]:4789" (the port optional, default 4789; an IPv6
    /// address without a port may go without brackets). Port 0 ("any free port") only for a
    /// local address to bind, with `allowAnyPort`.
    public init?(_ text: String, defaultPort: UInt16 = VXLAN.defaultPort, allowAnyPort: Bool = false) {
        guard let (host, portText) = HostPort.split(text) else { return nil }
        var port = defaultPort
        if let portText {
            guard let p = HostPort.port(portText, allowZero: allowAnyPort) else { return nil }
            port = p
        }
        guard let bytes = Self.parse4(host) ?? (host.contains(":") ? Self.parse6(host) : nil) else { return nil }
        var hi: UInt64 = 0, lo: UInt64 = 0
        withUnsafeMutableBytes(of: &hi) { for k in 0..<8 { $0[k] = bytes[k] } }
        withUnsafeMutableBytes(of: &lo) { for k in 0..<8 { $0[k] = bytes[8 + k] } }
        self.init(hi: hi, lo: lo, port: port)
    }

    /// The 16 bytes, in order.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: hi) { for k in 0..<8 { out[k] = $0[k] } }
        withUnsafeBytes(of: lo) { for k in 0..<8 { out[8 + k] = $0[k] } }
        return out
    }

    static func parse4(_ s: Substring) -> [UInt8]? {
        let octets = s.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var out = [UInt8](repeating: 0, count: 16)
        out[10] = 0xFF; out[11] = 0xFF
        for (i, o) in octets.enumerated() {
            guard (1...3).contains(o.count), o.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt8(o) else { return nil }
            out[12 + i] = v
        }
        return out
    }

    /// RFC 4291 text: eight groups of hex, one "::" for a run of zeros, an IPv4 tail allowed.
    static func parse6(_ s: Substring) -> [UInt8]? {
        guard s.count <= 45, !s.contains(":::") else { return nil }
        var groups: [UInt16] = [], tail: [UInt16] = [], seenGap = false
        // Split at the one "::" (a second one is refused).
        var halves = [String(s)]
        let chars = Array(s)
        if let gap = (0..<max(0, chars.count - 1)).first(where: { chars[$0] == ":" && chars[$0 + 1] == ":" }) {
            halves = [String(chars[..<gap]), String(chars[(gap + 2)...])]
            if halves[1].contains("::") || halves[1].hasPrefix(":") { return nil }
        }
        func parse(_ part: String, into out: inout [UInt16]) -> Bool {
            guard !part.isEmpty else { return true }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (k, f) in fields.enumerated() {
                if k == fields.count - 1, f.contains("."), let v4 = parse4(f[...]) {
                    out.append(UInt16(v4[12]) << 8 | UInt16(v4[13]))
                    out.append(UInt16(v4[14]) << 8 | UInt16(v4[15]))
                    continue
                }
                guard (1...4).contains(f.count), let v = UInt16(f, radix: 16) else { return false }
                out.append(v)
            }
            return true
        }
        guard parse(halves[0], into: &groups) else { return nil }
        if halves.count == 2 {
            seenGap = true
            guard parse(halves[1], into: &tail) else { return nil }
        }
        let total = groups.count + tail.count
        guard seenGap ? total <= 7 : total == 8 else { return nil }
        let all = groups + [UInt16](repeating: 0, count: 8 - total) + tail
        var out = [UInt8](repeating: 0, count: 16)
        for (k, g) in all.enumerated() { out[2 * k] = UInt8(g >> 8); out[2 * k + 1] = UInt8(g & 0xFF) }
        return out
    }

    /// The address in its usual text: dotted for IPv4, RFC 5952 for IPv6.
    public var host: String {
        let b = bytes
        if !isIPv6 { return "\(b[12]).\(b[13]).\(b[14]).\(b[15])" }
        let g = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
        // The longest run of two or more zero groups becomes "::".
        var best = (start: -1, length: 0), k = 0
        while k < 8 {
            guard g[k] == 0 else { k += 1; continue }
            var e = k
            while e < 8 && g[e] == 0 { e += 1 }
            if e - k > best.length && e - k >= 2 { best = (k, e - k) }
            k = e
        }
        let hex = g.map { String($0, radix: 16) }
        if best.start < 0 { return hex.joined(separator: ":") }
        return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.length)...].joined(separator: ":")
    }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// One word into the hasher (the MAC table and the peer set hash these per frame): the
    /// address's words and the port folded together; equality still compares all three.
    @inline(__always) public func hash(into hasher: inout Hasher) {
        hasher.combine(hi ^ (lo &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(port))
    }
}

/// The MAC learning table (after Open vSwitch's lib/mac-learning): O(1) lookup, idle ageing
/// against a clock the caller passes in, a hard size limit, a per-location share of it against
/// MAC flooding, and static entries. Never allocates once created (capacity is reserved).
///
/// Flooding policy: when the table is full, or when the location the frame came from already
/// owns its share (`perLocationLimit`), a new address is refused: not learned, counted, and
/// its frames are still delivered by flooding. Existing entries are never evicted by newcomers,
/// so one port sending from random addresses cannot push out everyone else's.
public struct MACTable: Sendable {
    public struct Entry: Equatable, Sendable {
        public var location: Location
        public var lastSeenMs: UInt64
        public var isStatic: Bool
    }

    public struct Counters: Equatable, Sendable {
        public var learned = 0
        public var moved = 0
        public var expired = 0
        public var refused = 0
        public init() {}
    }

    public enum LearnResult: Equatable, Sendable {
        case learned, refreshed, moved(from: Location), refused, staticEntry, invalidSource
    }

    public let maxEntries: Int
    public let perLocationLimit: Int
    public let ageingMs: UInt64
    public private(set) var counters = Counters()
    private var entries: [UInt64: Entry]
    private var owned: [Location: Int]     // dynamic entries per location

    public init(maxEntries: Int = 8192, perLocationLimit: Int? = nil, ageingMs: UInt64 = 300_000) {
        precondition(maxEntries > 0)
        self.maxEntries = maxEntries
        self.perLocationLimit = perLocationLimit ?? max(1, maxEntries / 2)
        self.ageingMs = ageingMs
        entries = Dictionary(minimumCapacity: maxEntries)
        owned = Dictionary(minimumCapacity: 256)
    }

    public var count: Int { entries.count }

    /// Learns that `mac` was seen at `location` at `nowMs`.
    @discardableResult
    public mutating func learn(_ mac: MAC, at location: Location, nowMs: UInt64) -> LearnResult {
        if mac.isMulticast || mac.isZero { return .invalidSource }
        if var e = entries[mac.raw] {
            if e.isStatic { return .staticEntry }
            if e.location == location {
                e.lastSeenMs = nowMs
                entries[mac.raw] = e
                return .refreshed
            }
            if owned[location, default: 0] >= perLocationLimit {
                counters.refused += 1
                return .refused
            }
            let from = e.location
            owned[from, default: 1] -= 1
            owned[location, default: 0] += 1
            e.location = location
            e.lastSeenMs = nowMs
            entries[mac.raw] = e
            counters.moved += 1
            return .moved(from: from)
        }
        if entries.count >= maxEntries || owned[location, default: 0] >= perLocationLimit {
            counters.refused += 1
            return .refused
        }
        entries[mac.raw] = Entry(location: location, lastSeenMs: nowMs, isStatic: false)
        owned[location, default: 0] += 1
        counters.learned += 1
        return .learned
    }

    /// Where `mac` lives, if known and not idle for longer than the ageing time.
    @inline(__always)
    public func lookup(_ mac: MAC, nowMs: UInt64) -> Location? {
        guard let e = entries[mac.raw] else { return nil }
        if !e.isStatic && nowMs &- e.lastSeenMs > ageingMs { return nil }
        return e.location
    }

    /// What another table of the same switch (another forwarding thread's) saw: `mac` at
    /// `location`. A fresh sighting there (learned or moved) is learned as if seen here; a
    /// repeated one only keeps alive an entry at the same place (or makes a missing one), never
    /// moves it, since what this table saw itself may be newer.
    @discardableResult
    public mutating func heard(_ mac: MAC, at location: Location, nowMs: UInt64, fresh: Bool) -> LearnResult {
        if fresh { return learn(mac, at: location, nowMs: nowMs) }
        if let e = entries[mac.raw], e.isStatic || e.location != location { return .refused }
        return learn(mac, at: location, nowMs: nowMs)
    }

    /// Removes entries idle for longer than the ageing time; returns how many.
    @discardableResult
    public mutating func expire(nowMs: UInt64) -> Int {
        var gone = 0
        for (key, e) in entries where !e.isStatic && nowMs &- e.lastSeenMs > ageingMs {
            entries[key] = nil
            owned[e.location, default: 1] -= 1
            gone += 1
        }
        counters.expired += gone
        return gone
    }

    /// Forgets every dynamic entry at `location` (a port or a peer went away).
    public mutating func forget(_ location: Location) {
        for (key, e) in entries where e.location == location && !e.isStatic { entries[key] = nil }
        owned[location] = nil
    }

    /// A static entry: never ages, never moves by learning; replaces a dynamic one.
    public mutating func setStatic(_ mac: MAC, at location: Location, nowMs: UInt64) -> Bool {
        if let e = entries[mac.raw], !e.isStatic {
            owned[e.location, default: 1] -= 1
        } else if entries[mac.raw] == nil && entries.count >= maxEntries {
            return false
        }
        entries[mac.raw] = Entry(location: location, lastSeenMs: nowMs, isStatic: true)
        return true
    }

    public mutating func removeStatic(_ mac: MAC) -> Bool {
        guard let e = entries[mac.raw], e.isStatic else { return false }
        entries[mac.raw] = nil
        return true
    }

    public func entry(_ mac: MAC) -> Entry? { entries[mac.raw] }

    /// The dynamic entries seen at or after `sinceMs`, in no order (what one forwarding thread
    /// repeats to the others; no sort on the forwarding thread).
    public func seen(sinceMs: UInt64) -> [(mac: MAC, location: Location)] {
        entries.compactMap { $0.value.isStatic || $0.value.lastSeenMs < sinceMs ? nil : (MAC(raw: $0.key), $0.value.location) }
    }

    /// Every entry, sorted by address: the `fdb` view.
    public func dump() -> [(mac: MAC, entry: Entry)] {
        entries.map { (MAC(raw: $0.key), $0.value) }.sorted { $0.mac < $1.mac }
    }
}

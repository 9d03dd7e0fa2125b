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

/// A peer switch's underlay address: IPv4 (network byte order, as the socket gives it) and UDP port.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public let addressBE: UInt32
    public let port: UInt16

    public init(addressBE: UInt32, port: UInt16) {
        self.addressBE = addressBE
        self.port = port
    }

    /// "10.0.0.1:4789" (port optional, default 4789). Port 0 ("any free port") only for a
    /// local address to bind, with `allowAnyPort`.
    public init?(_ text: String, defaultPort: UInt16 = VXLAN.defaultPort, allowAnyPort: Bool = false) {
        let parts = text.split(separator: ":")
        guard parts.count == 1 || parts.count == 2 else { return nil }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var be: UInt32 = 0
        for (i, o) in octets.enumerated() {
            guard o.count <= 3, let v = UInt8(o) else { return nil }
            be |= UInt32(v) << (8 * UInt32(i))
        }
        var port = defaultPort
        if parts.count == 2 {
            guard let p = UInt16(parts[1]), p > 0 || allowAnyPort else { return nil }
            port = p
        }
        self.addressBE = be
        self.port = port
    }

    public var host: String {
        (0..<4).map { String((addressBE >> (8 * UInt32($0))) & 0xFF) }.joined(separator: ".")
    }

    public var description: String { "\(host):\(port)" }
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

    /// Every entry, sorted by address: the `fdb` view.
    public func dump() -> [(mac: MAC, entry: Entry)] {
        entries.map { (MAC(raw: $0.key), $0.value) }.sorted { $0.mac < $1.mac }
    }
}

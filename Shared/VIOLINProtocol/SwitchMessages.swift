/// `violin-switch`'s requests and events (PROTOCOL.md §8.1).
public enum SwitchAPI {
    /// Every request type the switch answers, in the document's order.
    public static let requests: [any RequestBody.Type] = [
        Stats.self, FDB.self, Ports.self, AddPort.self, RemovePort.self, Announce.self,
        SetPeers.self, AddPeer.self, RemovePeer.self, AddStatic.self, RemoveStatic.self, SetPortRate.self, Trace.self,
        Traffic.self,
    ]
    public static let events: [any EventBody.Type] = [PortAdded.self, PortRemoved.self, PeersChanged.self]

    public struct Stats: EmptyRequest {
        public static let msgType = "stats_request"
        public typealias Reply = StatsReply
        public static let idempotent = true
        public init() {}
    }

    public struct FDB: EmptyRequest {
        public static let msgType = "fdb_request"
        public typealias Reply = FDBReply
        public static let idempotent = true
        public init() {}
    }

    public struct Ports: EmptyRequest {
        public static let msgType = "ports_request"
        public typealias Reply = PortsReply
        public static let idempotent = true
        public init() {}
    }

    public struct AddPort: RequestBody {
        public enum Kind: Sendable, Equatable {
            case tap(mtu: Int?)
            /// A persistent TAP for a VM's NIC, named as the port, that QEMU opens.
            case vmTap(mtu: Int?)
            /// QEMU's UDP netdev: the switch's `local` address ("a.b.c.d:0": any port) and QEMU's `remote`.
            case udp(local: String, remote: String)
        }
        public static let msgType = "add_port_request"
        public static let fields: [FieldSpec] = [
            .required("name", .text), .optional("kind", .choice(["tap", "udp", "vm_tap"])), .optional("mtu", .integer(68...65_535)),
            .optional("local", .address(anyPort: true)), .optional("remote", .address(anyPort: false)), .optional("mac", .mac),
        ]
        public typealias Reply = AddPortReply
        public static let idempotent = false
        public static let example = AddPort(name: "vm1", kind: .udp(local: "127.0.0.1:0", remote: "127.0.0.1:20001"),
                                            mac: MACAddress("02:00:00:00:00:01"))
        public var name: String
        public var kind: Kind
        /// The VM's MAC, when it arrives by migration: the switch announces it at once.
        public var mac: MACAddress?

        public init(name: String, kind: Kind, mac: MACAddress? = nil) { self.name = name; self.kind = kind; self.mac = mac }

        public init(_ b: Body) throws(ProtocolError) {
            name = b.text("name")!
            mac = b.mac()
            if b.text("kind") == "udp" {
                guard let local = b.text("local") else { throw ProtocolError(.invalidBody, "local is required for a udp port") }
                guard let remote = b.text("remote") else { throw ProtocolError(.invalidBody, "remote is required for a udp port") }
                kind = .udp(local: local, remote: remote)
            } else if b.text("kind") == "vm_tap" {
                kind = .vmTap(mtu: b.integer("mtu"))
            } else {
                kind = .tap(mtu: b.integer("mtu"))
            }
        }

        public var json: JSONValue {
            var o: [String: JSONValue] = ["name": .string(name)]
            switch kind {
            case .tap(let mtu):
                o["kind"] = "tap"
                if let mtu { o["mtu"] = .number(Double(mtu)) }
            case .vmTap(let mtu):
                o["kind"] = "vm_tap"
                if let mtu { o["mtu"] = .number(Double(mtu)) }
            case .udp(let local, let remote):
                o["kind"] = "udp"; o["local"] = .string(local); o["remote"] = .string(remote)
            }
            if let mac { o["mac"] = .string(mac.description) }
            return .object(o)
        }
    }

    public struct RemovePort: RequestBody {
        /// After a migration: frames from peers for `mac` go on to `to` for `graceS` seconds.
        public struct Forward: Sendable, Equatable {
            public var mac: MACAddress
            public var to: String
            public var graceS: Double
            public init(mac: MACAddress, to: String, graceS: Double = 10) { self.mac = mac; self.to = to; self.graceS = graceS }
        }
        public static let msgType = "remove_port_request"
        public static let fields: [FieldSpec] = [
            .required("name", .text), .optional("mac", .mac), .optional("forward_to", .address(anyPort: false)),
            .optional("grace_s", .number(0...3600)),
        ]
        public typealias Reply = RemovePortReply
        public static let idempotent = false
        public static let example = RemovePort(name: "vm1", forward: Forward(mac: MACAddress("02:00:00:00:00:01")!, to: "10.0.0.2:4789", graceS: 5))
        public var name: String
        public var forward: Forward?

        public init(name: String, forward: Forward? = nil) { self.name = name; self.forward = forward }

        public init(_ b: Body) throws(ProtocolError) {
            name = b.text("name")!
            if let to = b.text("forward_to") {
                guard let mac = b.mac() else { throw ProtocolError(.invalidBody, "mac is required with forward_to") }
                forward = Forward(mac: mac, to: to, graceS: b.number("grace_s") ?? 10)
            }
        }

        public var json: JSONValue {
            var o: [String: JSONValue] = ["name": .string(name)]
            if let forward {
                o["mac"] = .string(forward.mac.description); o["forward_to"] = .string(forward.to)
                o["grace_s"] = .number(forward.graceS)
            }
            return .object(o)
        }
    }

    public struct Announce: RequestBody {
        public static let msgType = "announce_request"
        public static let fields: [FieldSpec] = [.required("port", .text), .required("mac", .mac)]
        public typealias Reply = AnnounceReply
        public static let idempotent = false
        public static let example = Announce(port: "vm1", mac: MACAddress("02:00:00:00:00:01")!)
        public var port: String
        public var mac: MACAddress
        public init(port: String, mac: MACAddress) { self.port = port; self.mac = mac }
        public init(_ b: Body) { port = b.text("port")!; mac = b.mac()! }
        public var json: JSONValue { ["port": .string(port), "mac": .string(mac.description)] }
    }

    public struct SetPeers: RequestBody {
        public static let msgType = "set_peers_request"
        public static let fields: [FieldSpec] = [.required("peers", .list(.address(anyPort: false)))]
        public typealias Reply = PeersReply
        public static let idempotent = true
        public static let example = SetPeers(peers: ["10.0.0.2:4789", "10.0.0.3"])
        public var peers: [String]
        public init(peers: [String]) { self.peers = peers }
        public init(_ b: Body) { peers = b.texts("peers")! }
        public var json: JSONValue { ["peers": .array(peers.map { .string($0) })] }
    }

    public struct AddPeer: RequestBody {
        public static let msgType = "add_peer_request"
        public static let fields: [FieldSpec] = [.required("peer", .address(anyPort: false))]
        public typealias Reply = PeersReply
        public static let idempotent = true
        public static let example = AddPeer(peer: "10.0.0.2:4789")
        public var peer: String
        public init(peer: String) { self.peer = peer }
        public init(_ b: Body) { peer = b.text("peer")! }
        public var json: JSONValue { ["peer": .string(peer)] }
    }

    public struct RemovePeer: RequestBody {
        public static let msgType = "remove_peer_request"
        public static let fields: [FieldSpec] = [.required("peer", .address(anyPort: false))]
        public typealias Reply = PeersReply
        public static let idempotent = false
        public static let example = RemovePeer(peer: "10.0.0.2:4789")
        public var peer: String
        public init(peer: String) { self.peer = peer }
        public init(_ b: Body) { peer = b.text("peer")! }
        public var json: JSONValue { ["peer": .string(peer)] }
    }

    public struct AddStatic: RequestBody {
        public enum Location: Sendable, Equatable { case port(String), peer(String) }
        public static let msgType = "add_static_request"
        public static let fields: [FieldSpec] = [.required("mac", .mac), .optional("port", .text), .optional("peer", .address(anyPort: false))]
        public typealias Reply = MACReply
        public static let idempotent = true
        public static let example = AddStatic(mac: MACAddress("02:00:00:00:00:09")!, at: .port("vm1"))
        public var mac: MACAddress
        public var at: Location
        public init(mac: MACAddress, at: Location) { self.mac = mac; self.at = at }
        public init(_ b: Body) throws(ProtocolError) {
            mac = b.mac()!
            if let port = b.text("port") { at = .port(port) } else if let peer = b.text("peer") { at = .peer(peer) } else {
                throw ProtocolError(.invalidBody, "give port (a name) or peer (an address)")
            }
        }
        public var json: JSONValue {
            switch at {
            case .port(let p): return ["mac": .string(mac.description), "port": .string(p)]
            case .peer(let p): return ["mac": .string(mac.description), "peer": .string(p)]
            }
        }
    }

    public struct RemoveStatic: RequestBody {
        public static let msgType = "remove_static_request"
        public static let fields: [FieldSpec] = [.required("mac", .mac)]
        public typealias Reply = MACReply
        public static let idempotent = false
        public static let example = RemoveStatic(mac: MACAddress("02:00:00:00:00:09")!)
        public var mac: MACAddress
        public init(mac: MACAddress) { self.mac = mac }
        public init(_ b: Body) { mac = b.mac()! }
        public var json: JSONValue { ["mac": .string(mac.description)] }
    }

    /// A cap on what a port's VM sends (its frames into the switch), a token bucket: frames
    /// beyond the rate wait in the port's own queue, where the kernel drops what overflows it.
    /// `mbit_s` 0 lifts the cap.
    public struct SetPortRate: RequestBody {
        public static let msgType = "set_port_rate_request"
        public static let fields: [FieldSpec] = [
            .required("port", .text), .required("mbit_s", .number(0...100_000)), .optional("burst_kb", .integer(16...65_536)),
        ]
        public typealias Reply = PortRateReply
        public static let idempotent = true
        public static let example = SetPortRate(port: "vm1", mbitS: 50)
        public var port: String
        public var mbitS: Double
        /// The bucket's size; nil: 20 ms at the rate, at least 64 KiB (one offloaded frame).
        public var burstKB: Int?
        public init(port: String, mbitS: Double, burstKB: Int? = nil) { self.port = port; self.mbitS = mbitS; self.burstKB = burstKB }
        public init(_ b: Body) { port = b.text("port")!; mbitS = b.number("mbit_s")!; burstKB = b.integer("burst_kb") }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["port": .string(port), "mbit_s": .number(mbitS)]
            if let burstKB { o["burst_kb"] = .number(Double(burstKB)) }
            return .object(o)
        }
        /// The bucket's size in bytes for a rate (`burst_kb` when given).
        public static func burstBytes(mbitS: Double, burstKB: Int?) -> Int {
            if let burstKB { return burstKB * 1024 }
            return max(65_536, Int(mbitS * 1_000_000 / 8 * 0.02))
        }
    }

    /// Who talks to whom through this switch: per (source, destination) MAC, the unicast frames
    /// its ports received from VMs, heaviest first.
    public struct Traffic: RequestBody {
        public static let msgType = "traffic_request"
        public static let fields: [FieldSpec] = [.optional("limit", .integer(1...1024))]
        public typealias Reply = TrafficReply
        public static let idempotent = true
        public static let example = Traffic(limit: 16)
        public var limit: Int
        public init(limit: Int = 64) { self.limit = limit }
        public init(_ b: Body) { limit = b.integer("limit") ?? 64 }
        public var json: JSONValue { ["limit": .number(Double(limit))] }
    }

    public struct TrafficReply: ReplyBody {
        public struct Pair: Codable, Sendable, Equatable {
            public var src: String, dst: String
            public var frames: Int, bytes: Int
            public init(src: String, dst: String, frames: Int, bytes: Int) { self.src = src; self.dst = dst; self.frames = frames; self.bytes = bytes }
        }
        public struct Other: Codable, Sendable, Equatable {
            public var frames: Int, bytes: Int
            public init(frames: Int, bytes: Int) { self.frames = frames; self.bytes = bytes }
        }
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("pairs", .list(.object)), .required("other", .object)]
        public var vni: UInt32
        public var pairs: [Pair]
        public var other: Other
        public init(vni: UInt32, pairs: [Pair], other: Other) { self.vni = vni; self.pairs = pairs; self.other = other }
    }

    /// What the switch would do with a frame from `src` to `dst` entering at a port or from a
    /// peer, and why; nothing is sent or learned.
    public struct Trace: RequestBody {
        public static let msgType = "trace_request"
        public static let fields: [FieldSpec] = [
            .optional("port", .text), .optional("peer", .address(anyPort: false)), .required("src", .text), .required("dst", .text),
            .optional("vni", .vni), .optional("ethertype", .integer(0...0xFFFF)),
        ]
        public typealias Reply = TraceReply
        public static let idempotent = true
        public static let example = Trace(at: .port("vm1"), src: "02:00:00:00:00:01", dst: "ff:ff:ff:ff:ff:ff")
        public var at: AddStatic.Location
        /// Any MAC, multicast and zero included (their frames are traced too).
        public var src: String
        public var dst: String
        /// For a frame from a peer: the VNI in its VXLAN header (default: the switch's).
        public var vni: UInt32?
        public var ethertype: Int?
        public init(at: AddStatic.Location, src: String, dst: String, vni: UInt32? = nil, ethertype: Int? = nil) {
            self.at = at; self.src = src; self.dst = dst; self.vni = vni; self.ethertype = ethertype
        }
        public init(_ b: Body) throws(ProtocolError) {
            switch (b.text("port"), b.text("peer")) {
            case (let port?, nil): at = .port(port)
            case (nil, let peer?): at = .peer(peer)
            default: throw ProtocolError(.invalidBody, "give port (a name) or peer (an address), one of them")
            }
            src = b.text("src")!; dst = b.text("dst")!
            vni = b.vni(); ethertype = b.integer("ethertype")
        }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["src": .string(src), "dst": .string(dst)]
            switch at {
            case .port(let p): o["port"] = .string(p)
            case .peer(let p): o["peer"] = .string(p)
            }
            if let vni { o["vni"] = .number(Double(vni)) }
            if let ethertype { o["ethertype"] = .number(Double(ethertype)) }
            return .object(o)
        }
    }

    // MARK: Replies

    public struct TraceReply: ReplyBody {
        public static let fields: [FieldSpec] = [
            .required("action", .choice(["port", "peer", "flood", "grace", "drop"])), .required("why", .list(.string)),
        ]
        /// `port`, `peer`, `flood`, `grace` (on to a migrated VM's new host) or `drop`.
        public var action: String
        /// The port or peer it goes to; for a flood, every port and peer.
        public var port: String?
        public var peer: String?
        public var ports: [String]?
        public var peers: [String]?
        /// A drop's reason, as `stats_request` counts it.
        public var reason: String?
        /// The table's entry for the destination, if it has one.
        public var learned: FDBReply.Entry?
        public var why: [String]
        public init(action: String, why: [String]) { self.action = action; self.why = why }
    }

    public struct PortRateReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("port", .text), .required("mbit_s", .number(0...100_000)),
                                                 .required("burst_kb", .count)]
        public var port: String
        /// 0: no cap.
        public var mbitS: Double
        public var burstKB: Int
        public init(port: String, mbitS: Double, burstKB: Int) { self.port = port; self.mbitS = mbitS; self.burstKB = burstKB }
        enum CodingKeys: String, CodingKey { case port, mbitS = "mbit_s", burstKB = "burst_kb" }
    }

    /// A port's counters: frames each way and the wall-clock ms of its first and latest frame
    /// (null before one).
    public struct PortCounters: Codable, Sendable, Equatable {
        public var rx: Int
        public var tx: Int
        public var firstRxMs: Int?
        public var lastRxMs: Int?
        /// Bytes the port received (frames from its VM) and sent (to it).
        public var rxBytes: Int?
        public var txBytes: Int?
        /// With a rate cap: the cap (Mbit/s) and how often the port waited for it.
        public var rateMbitS: Double?
        public var rateWaits: Int?
        public init(rx: Int, tx: Int, firstRxMs: Int?, lastRxMs: Int?, rxBytes: Int? = nil, txBytes: Int? = nil, rateMbitS: Double? = nil,
                    rateWaits: Int? = nil) {
            self.rx = rx; self.tx = tx; self.firstRxMs = firstRxMs; self.lastRxMs = lastRxMs
            self.rxBytes = rxBytes; self.txBytes = txBytes; self.rateMbitS = rateMbitS; self.rateWaits = rateWaits
        }
        enum CodingKeys: String, CodingKey {
            case rx, tx, firstRxMs = "first_rx_ms", lastRxMs = "last_rx_ms", rxBytes = "rx_bytes", txBytes = "tx_bytes", rateMbitS = "rate_mbit_s", rateWaits = "rate_waits"
        }
        /// Written with nulls, as the document says (the rate's fields only with a cap).
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(rx, forKey: .rx); try c.encode(tx, forKey: .tx)
            try c.encode(firstRxMs, forKey: .firstRxMs); try c.encode(lastRxMs, forKey: .lastRxMs)
            try c.encodeIfPresent(rxBytes, forKey: .rxBytes); try c.encodeIfPresent(txBytes, forKey: .txBytes)
            try c.encodeIfPresent(rateMbitS, forKey: .rateMbitS); try c.encodeIfPresent(rateWaits, forKey: .rateWaits)
        }
        static let fields: [FieldSpec] = [.optional("rx", .count), .optional("tx", .count), .optional("first_rx_ms", .count),
                                          .optional("last_rx_ms", .count), .optional("rx_bytes", .count), .optional("tx_bytes", .count),
                                          .optional("rate_mbit_s", .number(0...100_000)), .optional("rate_waits", .count)]
    }

    public struct StatsReply: ReplyBody {
        public static let fields: [FieldSpec] = [
            .required("vni", .vni), .required("tunnel", .text), .required("frames", .object), .required("port_failures", .count),
            .required("bytes", .object), .required("drops", .object), .required("ports", .object), .required("mac_table", .object),
            .required("peers", .list(.address(anyPort: false))), .optional("scheduling", .object), .optional("threads", .list(.object)),
        ]
        /// The forwarding thread's scheduling: `mode` `fair` or `realtime` (real-time while its
        /// host is busy), `fixed` (not adaptive); `realtime_entries`; `over_budget` (windows it
        /// used more of a core than its budget, and went back to fair); `refused` (why the
        /// kernel refused real-time; absent if it never did).
        public struct Scheduling: Codable, Sendable, Equatable {
            public var mode: String
            public var realtimeEntries: Int
            public var overBudget: Int
            public var refused: String?
            public init(mode: String, realtimeEntries: Int, overBudget: Int, refused: String?) {
                self.mode = mode; self.realtimeEntries = realtimeEntries; self.overBudget = overBudget; self.refused = refused
            }
            enum CodingKeys: String, CodingKey { case mode, realtimeEntries = "realtime_entries", overBudget = "over_budget", refused }
        }
        public var vni: UInt32
        public var tunnel: String
        /// `from_ports`, `from_peers`, `to_ports`, `to_peers`, `floods`, `grace_forwarded`, `merged`.
        public var frames: [String: Int]
        public var portFailures: Int
        /// `from_ports`, `from_peers`.
        public var bytes: [String: Int]
        /// Reason -> count.
        public var drops: [String: Int]
        public var ports: [String: PortCounters]
        /// `size`, `max`, `learned`, `moved`, `expired`, `refused`.
        public var macTable: [String: Int]
        public var peers: [String]
        public var scheduling: Scheduling?
        /// With more than one forwarding thread, what each read: `from_ports`, `from_peers`.
        public var threads: [[String: Int]]?
        public init(vni: UInt32, tunnel: String, frames: [String: Int], portFailures: Int, bytes: [String: Int], drops: [String: Int],
                    ports: [String: PortCounters], macTable: [String: Int], peers: [String], scheduling: Scheduling? = nil,
                    threads: [[String: Int]]? = nil) {
            self.vni = vni; self.tunnel = tunnel; self.frames = frames; self.portFailures = portFailures; self.bytes = bytes
            self.drops = drops; self.ports = ports; self.macTable = macTable; self.peers = peers; self.scheduling = scheduling
            self.threads = threads
        }
        enum CodingKeys: String, CodingKey {
            case vni, tunnel, frames, portFailures = "port_failures", bytes, drops, ports, macTable = "mac_table", peers, scheduling, threads
        }
    }

    public struct FDBReply: ReplyBody {
        public struct Entry: Codable, Sendable, Equatable {
            public var mac: String
            /// Where it lives: a port (its name) or a peer (its address).
            public var port: String?
            public var peer: String?
            public var ageS: Double
            public var `static`: Bool
            public init(mac: String, port: String?, peer: String?, ageS: Double, static isStatic: Bool) {
                self.mac = mac; self.port = port; self.peer = peer; self.ageS = ageS; self.static = isStatic
            }
            enum CodingKeys: String, CodingKey { case mac, port, peer, ageS = "age_s", `static` }
        }
        public static let fields: [FieldSpec] = [.required("entries", .list(.object))]
        public var entries: [Entry]
        public init(entries: [Entry]) { self.entries = entries }
    }

    /// A port as `ports_request` describes it.
    public struct PortInfo: Codable, Sendable, Equatable {
        public var name: String
        /// `tap` or `udp`.
        public var kind: String
        public var mac: String?
        public var local: String?
        public var remote: String?
        public init(name: String, kind: String, mac: String? = nil, local: String? = nil, remote: String? = nil) {
            self.name = name; self.kind = kind; self.mac = mac; self.local = local; self.remote = remote
        }
    }

    public struct PortsReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("ports", .list(.object))]
        public var ports: [PortInfo]
        public init(ports: [PortInfo]) { self.ports = ports }
    }

    /// A sequenced announcement of a MAC to every peer.
    public struct Announced: Codable, Sendable, Equatable {
        public var mac: String
        public var seq: Int
        public init(mac: String, seq: Int) { self.mac = mac; self.seq = seq }
    }

    public struct AddPortReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("port", .object), .optional("announced", .object)]
        public var port: PortInfo
        public var announced: Announced?
        public init(port: PortInfo, announced: Announced? = nil) { self.port = port; self.announced = announced }
    }

    public struct RemovePortReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("removed", .text)] + PortCounters.fields
        /// The port's name.
        public var removed: String
        /// Its last counters (absent when the forwarding thread did not answer).
        public var rx: Int?, tx: Int?, firstRxMs: Int?, lastRxMs: Int?
        public init(removed: String, last: PortCounters?) {
            self.removed = removed; rx = last?.rx; tx = last?.tx; firstRxMs = last?.firstRxMs; lastRxMs = last?.lastRxMs
        }
        public var last: PortCounters? { rx.map { PortCounters(rx: $0, tx: tx ?? 0, firstRxMs: firstRxMs, lastRxMs: lastRxMs) } }
        enum CodingKeys: String, CodingKey { case removed, rx, tx, firstRxMs = "first_rx_ms", lastRxMs = "last_rx_ms" }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(removed, forKey: .removed)
            if let last { try last.encode(to: encoder) }
        }
    }

    public struct AnnounceReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("announced", .object)]
        public var announced: Announced
        public init(announced: Announced) { self.announced = announced }
    }

    public struct PeersReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("peers", .list(.address(anyPort: false)))]
        public var peers: [String]
        public init(peers: [String]) { self.peers = peers }
    }

    public struct MACReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("mac", .mac)]
        public var mac: String
        public init(mac: String) { self.mac = mac }
    }

    // MARK: Events

    public struct PortAdded: EventBody {
        public static let topic = "switch.port_added"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("port", .object)]
        public var vni: UInt32
        /// The port as `ports_request` describes it.
        public var port: PortInfo
        public init(vni: UInt32, port: PortInfo) { self.vni = vni; self.port = port }
        public var json: JSONValue { ["vni": .number(Double(vni)), "port": JSONText.value(of: port)] }
    }

    public struct PortRemoved: EventBody {
        public static let topic = "switch.port_removed"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("name", .text)]
        public var vni: UInt32
        public var name: String
        public init(vni: UInt32, name: String) { self.vni = vni; self.name = name }
        public var json: JSONValue { ["vni": .number(Double(vni)), "name": .string(name)] }
    }

    public struct PeersChanged: EventBody {
        public static let topic = "switch.peers_changed"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("peers", .list(.address(anyPort: false)))]
        public var vni: UInt32
        public var peers: [String]
        public init(vni: UInt32, peers: [String]) { self.vni = vni; self.peers = peers }
        public var json: JSONValue { ["vni": .number(Double(vni)), "peers": .array(peers.map { .string($0) })] }
    }
}

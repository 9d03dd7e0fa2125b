/// `violin-mesh`'s requests and events (PROTOCOL.md §8.2).
public enum MeshAPI {
    public static let requests: [any RequestBody.Type] = [
        JoinViolin.self, LeaveViolin.self, AddPort.self, RemovePort.self, Announce.self, PortStats.self, SetPortRate.self, Members.self,
        Ports.self, MemberJoin.self, MemberAnnounce.self, MemberLeave.self, MemberHeartbeat.self,
    ]
    public static let events: [any EventBody.Type] = [
        MemberJoined.self, MemberLeft.self, SwitchStarted.self, SwitchAdopted.self, SwitchExited.self, Traffic.self,
    ]

    static let seedFields: [FieldSpec] = [.optional("seed", .endpoint), .optional("seed_key", .curveKey)]

    /// A VM's port on its VIOLIN's switch is named `vm-<VM name>` (as the executor makes it):
    /// what the monitor reads a VM's network from, and what the policy caps.
    public static let vmPortPrefix = "vm-"

    public struct JoinViolin: RequestBody {
        public static let msgType = "join_violin_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni)] + seedFields
        public typealias Reply = JoinReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = JoinViolin(vni: 9, seed: "tcp://10.0.0.1:7701")
        public var vni: UInt32
        /// A member's mesh endpoint to join through (none: this host starts the VIOLIN), and its key.
        public var seed: String?
        public var seedKey: String?
        public init(vni: UInt32, seed: String? = nil, seedKey: String? = nil) { self.vni = vni; self.seed = seed; self.seedKey = seedKey }
        public init(_ b: Body) { vni = b.vni()!; seed = b.text("seed"); seedKey = b.text("seed_key") }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["vni": .number(Double(vni))]
            if let seed { o["seed"] = .string(seed) }
            if let seedKey { o["seed_key"] = .string(seedKey) }
            return .object(o)
        }
    }

    public struct LeaveViolin: RequestBody {
        public static let msgType = "leave_violin_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni)]
        public typealias Reply = VNIReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = LeaveViolin(vni: 9)
        public var vni: UInt32
        public init(vni: UInt32) { self.vni = vni }
        public init(_ b: Body) { vni = b.vni()! }
        public var json: JSONValue { ["vni": .number(Double(vni))] }
    }

    /// A port on the VIOLIN's switch here (the VIOLIN is joined first, through `seed`, if it is
    /// not present): the switch's own `add_port_request` with the VIOLIN's id.
    public struct AddPort: RequestBody {
        public static let msgType = "add_port_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni)] + SwitchAPI.AddPort.fields + seedFields
        public typealias Reply = AddPortReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = AddPort(vni: 9, port: SwitchAPI.AddPort.example, seed: "tcp://10.0.0.1:7701")
        public var vni: UInt32
        public var port: SwitchAPI.AddPort
        public var seed: String?
        public var seedKey: String?
        public init(vni: UInt32, port: SwitchAPI.AddPort, seed: String? = nil, seedKey: String? = nil) {
            self.vni = vni; self.port = port; self.seed = seed; self.seedKey = seedKey
        }
        public init(_ b: Body) throws(ProtocolError) {
            vni = b.vni()!
            port = try SwitchAPI.AddPort(b)
            seed = b.text("seed"); seedKey = b.text("seed_key")
        }
        public var json: JSONValue {
            var o = port.json.objectValue ?? [:]
            o["vni"] = .number(Double(vni))
            if let seed { o["seed"] = .string(seed) }
            if let seedKey { o["seed_key"] = .string(seedKey) }
            return .object(o)
        }
    }

    public struct RemovePort: RequestBody {
        /// After a migration: frames for `mac` go on to the member `to` (here its mesh endpoint;
        /// the mesh hands its switch that member's tunnel).
        public typealias Forward = SwitchAPI.RemovePort.Forward
        public static let msgType = "remove_port_request"
        public static let fields: [FieldSpec] = [
            .required("vni", .vni), .required("name", .text), .optional("mac", .mac), .optional("forward_to", .endpoint),
            .optional("grace_s", .number(0...3600)),
        ]
        public typealias Reply = RemovePortReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = RemovePort(vni: 9, name: "vm-a1",
                                               forward: Forward(mac: MACAddress("52:54:00:0a:00:01")!, to: "tcp://10.0.0.2:7701", graceS: 5))
        public var vni: UInt32
        public var name: String
        public var forward: Forward?
        public init(vni: UInt32, name: String, forward: Forward? = nil) { self.vni = vni; self.name = name; self.forward = forward }
        public init(_ b: Body) throws(ProtocolError) {
            vni = b.vni()!
            name = b.text("name")!
            if let to = b.text("forward_to") {
                guard let mac = b.mac() else { throw ProtocolError(.invalidBody, "mac is required with forward_to") }
                forward = Forward(mac: mac, to: to, graceS: b.number("grace_s") ?? 10)
            }
        }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["vni": .number(Double(vni)), "name": .string(name)]
            if let forward {
                o["mac"] = .string(forward.mac.description); o["forward_to"] = .string(forward.to); o["grace_s"] = .number(forward.graceS)
            }
            return .object(o)
        }
    }

    public struct Announce: RequestBody {
        public static let msgType = "announce_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("name", .text), .required("mac", .mac)]
        public typealias Reply = AnnounceReply
        public static let idempotent = false
        public static let example = Announce(vni: 9, name: "vm-a1", mac: MACAddress("52:54:00:0a:00:01")!)
        public var vni: UInt32
        public var name: String
        public var mac: MACAddress
        public init(vni: UInt32, name: String, mac: MACAddress) { self.vni = vni; self.name = name; self.mac = mac }
        public init(_ b: Body) { vni = b.vni()!; name = b.text("name")!; mac = b.mac()! }
        public var json: JSONValue { ["vni": .number(Double(vni)), "name": .string(name), "mac": .string(mac.description)] }
    }

    public struct PortStats: RequestBody {
        public static let msgType = "port_stats_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("name", .text)]
        public typealias Reply = PortStatsReply
        public static let idempotent = true
        public static let example = PortStats(vni: 9, name: "vm-a1")
        public var vni: UInt32
        public var name: String
        public init(vni: UInt32, name: String) { self.vni = vni; self.name = name }
        public init(_ b: Body) { vni = b.vni()!; name = b.text("name")! }
        public var json: JSONValue { ["vni": .number(Double(vni)), "name": .string(name)] }
    }

    /// A cap on what a VM sends through its port (the switch's `set_port_rate_request` with the
    /// VIOLIN's id); kept by the mesh, so a restarted switch has it again.
    public struct SetPortRate: RequestBody {
        public static let msgType = "set_port_rate_request"
        public static let fields: [FieldSpec] = [
            .required("vni", .vni), .required("name", .text), .required("mbit_s", .number(0...100_000)), .optional("burst_kb", .integer(16...65_536)),
        ]
        public typealias Reply = PortRateReply
        public static let idempotent = true
        public static let example = SetPortRate(vni: 9, name: "vm-a1", mbitS: 50)
        public var vni: UInt32
        public var name: String
        public var mbitS: Double
        public var burstKB: Int?
        public init(vni: UInt32, name: String, mbitS: Double, burstKB: Int? = nil) {
            self.vni = vni; self.name = name; self.mbitS = mbitS; self.burstKB = burstKB
        }
        public init(_ b: Body) { vni = b.vni()!; name = b.text("name")!; mbitS = b.number("mbit_s")!; burstKB = b.integer("burst_kb") }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["vni": .number(Double(vni)), "name": .string(name), "mbit_s": .number(mbitS)]
            if let burstKB { o["burst_kb"] = .number(Double(burstKB)) }
            return .object(o)
        }
        /// The switch's request for it.
        public var forSwitch: SwitchAPI.SetPortRate { SwitchAPI.SetPortRate(port: name, mbitS: mbitS, burstKB: burstKB) }
    }

    public struct Members: RequestBody {
        public static let msgType = "members_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni)]
        public typealias Reply = MembersReply
        public static let idempotent = true
        public static let example = Members(vni: 9)
        public var vni: UInt32
        public init(vni: UInt32) { self.vni = vni }
        public init(_ b: Body) { vni = b.vni()! }
        public var json: JSONValue { ["vni": .number(Double(vni))] }
    }

    public struct Ports: EmptyRequest {
        public static let msgType = "ports_request"
        public typealias Reply = PortsReply
        public static let idempotent = true
        public init() {}
    }

    static let memberFields: [FieldSpec] = [.required("vni", .vni), .required("endpoint", .endpoint), .required("tunnel", .text),
                                            .optional("key", .curveKey)]

    /// Mesh to mesh: a host joining asks a member for the member list.
    public struct MemberJoin: RequestBody {
        public static let msgType = "member_join_request"
        public static let fields = memberFields
        public typealias Reply = MemberJoinReply
        public static let idempotent = true
        public static let example = MemberJoin(member: .example)
        public var member: Member
        public init(member: Member) { self.member = member }
        public init(_ b: Body) { member = Member(b) }
        public var json: JSONValue { member.json }
    }

    /// Mesh to mesh: a host that joined announces itself to each member.
    public struct MemberAnnounce: RequestBody {
        public static let msgType = "member_announce_request"
        public static let fields = memberFields
        public typealias Reply = EmptyReply
        public static let idempotent = true
        public static let example = MemberAnnounce(member: .example)
        public var member: Member
        public init(member: Member) { self.member = member }
        public init(_ b: Body) { member = Member(b) }
        public var json: JSONValue { member.json }
    }

    /// A member of a VIOLIN's mesh, as the member requests carry it.
    public struct Member: Sendable, Equatable {
        public var vni: UInt32
        /// Its mesh endpoint: its identity.
        public var endpoint: String
        /// Its switch's tunnel address.
        public var tunnel: String
        /// Its CURVE public key ("" without CURVE).
        public var key: String
        public init(vni: UInt32, endpoint: String, tunnel: String, key: String = "") {
            self.vni = vni; self.endpoint = endpoint; self.tunnel = tunnel; self.key = key
        }
        init(_ b: Body) { self.init(vni: b.vni()!, endpoint: b.text("endpoint")!, tunnel: b.text("tunnel")!, key: b.text("key") ?? "") }
        static let example = Member(vni: 9, endpoint: "tcp://10.0.0.2:7701", tunnel: "10.0.0.2:4789")
        var json: JSONValue {
            var o: [String: JSONValue] = ["vni": .number(Double(vni)), "endpoint": .string(endpoint), "tunnel": .string(tunnel)]
            if !key.isEmpty { o["key"] = .string(key) }
            return .object(o)
        }
    }

    public struct MemberLeave: RequestBody {
        public static let msgType = "member_leave_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("endpoint", .endpoint)]
        public typealias Reply = EmptyReply
        public static let idempotent = true
        public static let example = MemberLeave(vni: 9, endpoint: "tcp://10.0.0.2:7701")
        public var vni: UInt32
        public var endpoint: String
        public init(vni: UInt32, endpoint: String) { self.vni = vni; self.endpoint = endpoint }
        public init(_ b: Body) { vni = b.vni()!; endpoint = b.text("endpoint")! }
        public var json: JSONValue { ["vni": .number(Double(vni)), "endpoint": .string(endpoint)] }
    }

    public struct MemberHeartbeat: RequestBody {
        public static let msgType = "member_heartbeat_request"
        public static let fields: [FieldSpec] = [.required("endpoint", .endpoint), .optional("violins", .list(.vni))]
        public typealias Reply = HeartbeatReply
        public static let idempotent = true
        public static let example = MemberHeartbeat(endpoint: "tcp://10.0.0.2:7701", violins: [9])
        public var endpoint: String
        /// The VIOLINs in which the sender counts the receiver as a member (nil: not said).
        public var violins: [UInt32]?
        public init(endpoint: String, violins: [UInt32]? = nil) { self.endpoint = endpoint; self.violins = violins }
        public init(_ b: Body) {
            endpoint = b.text("endpoint")!
            if case .array(let list)? = b.value["violins"] { violins = list.compactMap { $0.intValue.map { UInt32($0) } } }
        }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["endpoint": .string(endpoint)]
            if let violins { o["violins"] = .array(violins.map { .number(Double($0)) }) }
            return .object(o)
        }
    }

    // MARK: Replies

    /// A member as `join_violin_request` and `members_request` list it.
    public struct MemberInfo: Codable, Sendable, Equatable {
        public var endpoint: String
        public var tunnel: String
        /// Whether its heartbeats arrive (absent in `member_join_request`'s list: all are).
        public var alive: Bool?
        public var key: String?
        public init(endpoint: String, tunnel: String, alive: Bool? = nil, key: String? = nil) {
            self.endpoint = endpoint; self.tunnel = tunnel; self.alive = alive; self.key = key
        }
    }

    public struct JoinReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("tunnel", .text), .required("members", .list(.object))]
        public var vni: UInt32
        public var tunnel: String
        public var members: [MemberInfo]
        public init(vni: UInt32, tunnel: String, members: [MemberInfo]) { self.vni = vni; self.tunnel = tunnel; self.members = members }
    }

    public struct VNIReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni)]
        public var vni: UInt32
        public init(vni: UInt32) { self.vni = vni }
    }

    public struct AddPortReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("port", .object)]
        public var vni: UInt32
        public var port: SwitchAPI.PortInfo
        public init(vni: UInt32, port: SwitchAPI.PortInfo) { self.vni = vni; self.port = port }
    }

    /// The switch's reply with the VIOLIN's id.
    public struct RemovePortReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni)] + SwitchAPI.RemovePortReply.fields
        public var vni: UInt32
        public var port: SwitchAPI.RemovePortReply
        public init(vni: UInt32, port: SwitchAPI.RemovePortReply) { self.vni = vni; self.port = port }
        enum CodingKeys: String, CodingKey { case vni }
        public init(from decoder: Decoder) throws {
            vni = try decoder.container(keyedBy: CodingKeys.self).decode(UInt32.self, forKey: .vni)
            port = try SwitchAPI.RemovePortReply(from: decoder)
        }
        public func encode(to encoder: Encoder) throws {
            try port.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(vni, forKey: .vni)
        }
    }

    public struct AnnounceReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("announced", .object)]
        public var vni: UInt32
        public var announced: SwitchAPI.Announced
        public init(vni: UInt32, announced: SwitchAPI.Announced) { self.vni = vni; self.announced = announced }
    }

    public struct PortStatsReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("name", .text)] + SwitchAPI.PortCounters.fields
        public var vni: UInt32
        public var name: String
        public var counters: SwitchAPI.PortCounters
        public init(vni: UInt32, name: String, counters: SwitchAPI.PortCounters) { self.vni = vni; self.name = name; self.counters = counters }
        enum CodingKeys: String, CodingKey { case vni, name }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            vni = try c.decode(UInt32.self, forKey: .vni); name = try c.decode(String.self, forKey: .name)
            counters = try SwitchAPI.PortCounters(from: decoder)
        }
        public func encode(to encoder: Encoder) throws {
            try counters.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(vni, forKey: .vni); try c.encode(name, forKey: .name)
        }
    }

    public struct PortRateReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("name", .text), .required("mbit_s", .number(0...100_000)),
                                                 .required("burst_kb", .count)]
        public var vni: UInt32
        public var name: String
        /// 0: no cap.
        public var mbitS: Double
        public var burstKB: Int
        public init(vni: UInt32, name: String, mbitS: Double, burstKB: Int) { self.vni = vni; self.name = name; self.mbitS = mbitS; self.burstKB = burstKB }
        enum CodingKeys: String, CodingKey { case vni, name, mbitS = "mbit_s", burstKB = "burst_kb" }
    }

    public struct MembersReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("members", .list(.object)),
                                                 .required("peers", .list(.address(anyPort: false)))]
        public var vni: UInt32
        public var members: [MemberInfo]
        /// The tunnel addresses the switch forwards to.
        public var peers: [String]
        public init(vni: UInt32, members: [MemberInfo], peers: [String]) { self.vni = vni; self.members = members; self.peers = peers }
    }

    public struct PortsReply: ReplyBody {
        public struct Violin: Codable, Sendable, Equatable {
            public var vni: UInt32
            public var tunnel: String
            /// The switch's control endpoint.
            public var `switch`: String
            public var pid: Int
            public var ports: [String]
            public init(vni: UInt32, tunnel: String, switch control: String, pid: Int, ports: [String]) {
                self.vni = vni; self.tunnel = tunnel; self.switch = control; self.pid = pid; self.ports = ports
            }
        }
        public static let fields: [FieldSpec] = [.required("violins", .list(.object))]
        public var violins: [Violin]
        public init(violins: [Violin]) { self.violins = violins }
    }

    public struct MemberJoinReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("members", .list(.object))]
        public var members: [MemberInfo]
        public init(members: [MemberInfo]) { self.members = members }
    }

    public struct HeartbeatReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("violins", .list(.vni)), .optional("unknown", .list(.vni))]
        /// The VIOLINs present on the answering host.
        public var violins: [UInt32]
        /// Of the request's `violins`, those present here in which the sender is no member here
        /// (an announcement of it was lost): the sender announces itself again.
        public var unknown: [UInt32]?
        public init(violins: [UInt32], unknown: [UInt32]? = nil) { self.violins = violins; self.unknown = unknown }
    }

    // MARK: Events

    /// Who talks to whom through this host's switch of a VIOLIN (its `traffic_request`), every
    /// `traffic_interval` seconds while its VMs send: cumulative counters, heaviest pairs first.
    public struct Traffic: EventBody {
        public static let topic = "mesh.traffic"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("pairs", .list(.object)), .required("other", .object)]
        public var vni: UInt32
        public var pairs: [SwitchAPI.TrafficReply.Pair]
        public var other: SwitchAPI.TrafficReply.Other
        public init(vni: UInt32, pairs: [SwitchAPI.TrafficReply.Pair], other: SwitchAPI.TrafficReply.Other) {
            self.vni = vni; self.pairs = pairs; self.other = other
        }
        /// Pairs one event carries at most (the heaviest); an event with more is refused whole.
        public static let maxPairs = 64
        public var json: JSONValue {
            ["vni": .number(Double(vni)),
             "pairs": .array(pairs.map { ["src": .string($0.src), "dst": .string($0.dst), "frames": .number(Double($0.frames)), "bytes": .number(Double($0.bytes))] }),
             "other": ["frames": .number(Double(other.frames)), "bytes": .number(Double(other.bytes))]]
        }
        /// Read back from an event body: every pair's MACs and counters checked (a pair that is
        /// not one is left out); nil without a VNI, or with more than `maxPairs` pairs.
        public static func read(_ body: JSONValue) -> Traffic? {
            guard let vni = body["vni"].flatMap(FieldSpec.Kind.integer), (1..<(1 << 24)).contains(vni) else { return nil }
            guard (body["pairs"]?.items.count ?? 0) <= maxPairs else { return nil }
            func count(_ v: JSONValue?) -> Int? { v.flatMap(FieldSpec.Kind.integer).flatMap { (0...(1 << 62)).contains($0) ? $0 : nil } }
            let pairs: [SwitchAPI.TrafficReply.Pair] = (body["pairs"]?.items ?? []).compactMap { p in
                guard let s = p["src"]?.stringValue, MACAddress(s) != nil, let d = p["dst"]?.stringValue, MACAddress(d) != nil,
                      let f = count(p["frames"]), let b = count(p["bytes"]) else { return nil }
                return .init(src: s.lowercased(), dst: d.lowercased(), frames: f, bytes: b)
            }
            let other = SwitchAPI.TrafficReply.Other(frames: count(body["other"]?["frames"]) ?? 0, bytes: count(body["other"]?["bytes"]) ?? 0)
            return Traffic(vni: UInt32(vni), pairs: pairs, other: other)
        }
    }

    public struct MemberJoined: EventBody {
        public static let topic = "mesh.member_joined"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("member", .endpoint)]
        public var vni: UInt32, member: String
        public init(vni: UInt32, member: String) { self.vni = vni; self.member = member }
        public var json: JSONValue { ["vni": .number(Double(vni)), "member": .string(member)] }
    }

    public struct MemberLeft: EventBody {
        public static let topic = "mesh.member_left"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("member", .endpoint), .required("reason", .choice(["left", "timeout"]))]
        public var vni: UInt32, member: String, reason: String
        public init(vni: UInt32, member: String, reason: String) { self.vni = vni; self.member = member; self.reason = reason }
        public var json: JSONValue { ["vni": .number(Double(vni)), "member": .string(member), "reason": .string(reason)] }
    }

    public struct SwitchStarted: EventBody {
        public static let topic = "mesh.switch_started"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("pid", .integer(1...Int(Int32.max))), .required("tunnel", .text)]
        public var vni: UInt32, pid: Int32, tunnel: String
        public init(vni: UInt32, pid: Int32, tunnel: String) { self.vni = vni; self.pid = pid; self.tunnel = tunnel }
        public var json: JSONValue { ["vni": .number(Double(vni)), "pid": .number(Double(pid)), "tunnel": .string(tunnel)] }
    }

    public struct SwitchAdopted: EventBody {
        public static let topic = "mesh.switch_adopted"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("pid", .integer(1...Int(Int32.max))), .required("tunnel", .text)]
        public var vni: UInt32, pid: Int32, tunnel: String
        public init(vni: UInt32, pid: Int32, tunnel: String) { self.vni = vni; self.pid = pid; self.tunnel = tunnel }
        public var json: JSONValue { ["vni": .number(Double(vni)), "pid": .number(Double(pid)), "tunnel": .string(tunnel)] }
    }

    public struct SwitchExited: EventBody {
        public static let topic = "mesh.switch_exited"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("status", .integer(-1...255))]
        public var vni: UInt32
        /// Its exit status; -1 for an adopted switch (not the mesh's child).
        public var status: Int
        public init(vni: UInt32, status: Int) { self.vni = vni; self.status = status }
        public var json: JSONValue { ["vni": .number(Double(vni)), "status": .number(Double(status))] }
    }
}

/// `violin-switch`'s requests and events (PROTOCOL.md §8.1).
public enum SwitchAPI {
    /// Every request type the switch answers, in the document's order.
    public static let requests: [any RequestBody.Type] = [
        Stats.self, FDB.self, Ports.self, AddPort.self, RemovePort.self, Announce.self,
        SetPeers.self, AddPeer.self, RemovePeer.self, AddStatic.self, RemoveStatic.self,
    ]
    public static let events: [any EventBody.Type] = [PortAdded.self, PortRemoved.self, PeersChanged.self]

    public struct Stats: EmptyRequest {
        public static let msgType = "stats_request"
        public static let replyFields = ["vni", "tunnel", "frames", "port_failures", "bytes", "drops", "ports", "mac_table", "peers"]
        public static let idempotent = true
        public init() {}
    }

    public struct FDB: EmptyRequest {
        public static let msgType = "fdb_request"
        public static let replyFields = ["entries"]
        public static let idempotent = true
        public init() {}
    }

    public struct Ports: EmptyRequest {
        public static let msgType = "ports_request"
        public static let replyFields = ["ports"]
        public static let idempotent = true
        public init() {}
    }

    public struct AddPort: RequestBody {
        public enum Kind: Sendable, Equatable {
            case tap(mtu: Int?)
            /// QEMU's UDP netdev: the switch's `local` address ("a.b.c.d:0": any port) and QEMU's `remote`.
            case udp(local: String, remote: String)
        }
        public static let msgType = "add_port_request"
        public static let fields: [FieldSpec] = [
            .required("name", .text), .optional("kind", .choice(["tap", "udp"])), .optional("mtu", .integer(68...65_535)),
            .optional("local", .address(anyPort: true)), .optional("remote", .address(anyPort: false)), .optional("mac", .mac),
        ]
        public static let replyFields = ["port", "announced"]
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
        public static let replyFields = ["removed", "rx", "tx", "first_rx_ms", "last_rx_ms"]
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
        public static let replyFields = ["announced"]
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
        public static let replyFields = ["peers"]
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
        public static let replyFields = ["peers"]
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
        public static let replyFields = ["peers"]
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
        public static let replyFields = ["mac"]
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
        public static let replyFields = ["mac"]
        public static let idempotent = false
        public static let example = RemoveStatic(mac: MACAddress("02:00:00:00:00:09")!)
        public var mac: MACAddress
        public init(mac: MACAddress) { self.mac = mac }
        public init(_ b: Body) { mac = b.mac()! }
        public var json: JSONValue { ["mac": .string(mac.description)] }
    }

    // MARK: Events

    public struct PortAdded: EventBody {
        public static let topic = "switch.port_added"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .required("port", .object)]
        public var vni: UInt32
        /// The port as `ports_request` describes it.
        public var port: JSONValue
        public init(vni: UInt32, port: JSONValue) { self.vni = vni; self.port = port }
        public var json: JSONValue { ["vni": .number(Double(vni)), "port": port] }
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

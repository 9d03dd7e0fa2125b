import Foundation
import SwitchCore
import VIOLINProtocol

/// The switch's control side: the authoritative configuration (ports, peers, static entries),
/// the requests of PROTOCOL.md §8.1, and the snapshots it hands to the forwarder. Runs on the
/// service's request thread only.
public final class SwitchController: @unchecked Sendable {
    public let forwarder: Forwarder
    public let defaultMTU: Int
    private var ports: [PortHandle] = []
    private var peers: [PeerAddress] = []
    private var statics: [MAC: Location] = [:]
    private var moved: [MAC: MovedMAC] = [:]
    private var nextPortID: UInt32 = 1
    private var generation: UInt64 = 0
    /// Events to publish (`switch.<name>`); set by the service.
    public var emit: (String, JSONValue) -> Void = { _, _ in }

    public init(forwarder: Forwarder, defaultMTU: Int = 1450) {
        self.forwarder = forwarder
        self.defaultMTU = defaultMTU
    }

    private func commit() {
        generation += 1
        let now = forwarder.now
        moved = moved.filter { $0.value.untilMs > now }
        forwarder.apply(SwitchSnapshot(generation: generation, ports: ports, peers: peers, statics: statics, moved: moved))
    }

    // MARK: - Operations (also used for command-line configuration)

    public func addTAP(_ name: String, mtu: Int? = nil) throws(ProtocolError) -> PortHandle {
        try checkNewName(name)
        let port: PortHandle
        do { port = try PortHandle.tap(id: nextPortID, name: name, mtu: mtu ?? defaultMTU,
                                      offload: forwarder.options.offload) } catch {
            throw ProtocolError(.unavailable, error.description)
        }
        return added(port)
    }

    public func addUDP(_ name: String, local: PeerAddress, remote: PeerAddress) throws(ProtocolError) -> PortHandle {
        try checkNewName(name)
        let port: PortHandle
        do { port = try PortHandle.udp(id: nextPortID, name: name, local: local, remote: remote) } catch {
            throw ProtocolError(.unavailable, error.description)
        }
        return added(port)
    }

    private func checkNewName(_ name: String) throws(ProtocolError) {
        guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else {
            throw ProtocolError(.invalidBody, "port name must be 1-15 characters without '/' or spaces")
        }
        guard !ports.contains(where: { $0.name == name }) else {
            throw ProtocolError(.conflict, "a port named \(name) exists")
        }
    }

    private func added(_ port: PortHandle) -> PortHandle {
        nextPortID += 1
        ports.append(port)
        commit()
        emit("port_added", ["vni": .number(Double(forwarder.options.vni)), "port": describe(port)])
        return port
    }

    public func removePort(_ name: String) throws(ProtocolError) {
        guard let i = ports.firstIndex(where: { $0.name == name }) else {
            throw ProtocolError(.notFound, "no port named \(name)")
        }
        let id = ports[i].id
        ports.remove(at: i)
        statics = statics.filter { $0.value != .port(id) }
        commit()   // the fd closes once the forwarder lets go of the old snapshot
        emit("port_removed", ["vni": .number(Double(forwarder.options.vni)), "name": .string(name)])
    }

    public func setPeers(_ list: [PeerAddress]) {
        var seen = Set<PeerAddress>()
        peers = list.filter { $0 != forwarder.tunnelAddress && seen.insert($0).inserted }
        statics = statics.filter { if case .peer(let p) = $0.value { return seen.contains(p) } else { return true } }
        commit()
        emit("peers_changed", ["vni": .number(Double(forwarder.options.vni)), "peers": .array(peers.map { .string($0.description) })])
    }

    public var portList: [PortHandle] { ports }
    public var peerList: [PeerAddress] { peers }

    // MARK: - Requests

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        let b = request.body
        switch request.header.msgType {
        case "stats_request": return try stats()
        case "fdb_request": return try fdb()
        case "ports_request": return Replies.ok(["ports": .array(ports.map(describe))])
        case "add_port_request":
            let name = try field(b, "name")
            let vmMAC = b["mac"] == nil ? nil : try macField(b)
            let port: PortHandle
            switch b["kind"]?.stringValue ?? "tap" {
            case "tap":
                let mtu = b["mtu"]?.intValue
                if let mtu, !(68...65_535).contains(mtu) { throw ProtocolError(.invalidBody, "mtu must be 68-65535") }
                port = try addTAP(name, mtu: mtu)
            case "udp":
                port = try addUDP(name, local: try address(b, "local", port: 0), remote: try address(b, "remote"))
            default:
                throw ProtocolError(.invalidBody, "kind must be tap or udp")
            }
            var reply: [String: JSONValue] = ["port": describe(port)]
            // The VM behind the port is known (it arrives by migration): tell the peers now.
            if let vmMAC, let seq = forwarder.announceMove(vmMAC, portID: port.id) {
                reply["announced"] = ["mac": .string(vmMAC.description), "seq": .number(Double(seq))]
            }
            return Replies.ok(reply)
        case "remove_port_request":
            let name = try field(b, "name")
            // The VM behind it migrated: late frames for its MAC go on to its new host for a while.
            var forward: (MAC, PeerAddress, Double)?
            if b["forward_to"] != nil {
                let grace = b["grace_s"]?.numberValue ?? 10
                guard grace >= 0, grace <= 3600 else { throw ProtocolError(.invalidBody, "grace_s must be 0..3600") }
                forward = (try macField(b), try address(b, "forward_to"), grace)
            }
            guard ports.contains(where: { $0.name == name }) else { throw ProtocolError(.notFound, "no port named \(name)") }
            // The port's last counters, for the caller's blackout measurement.
            let last = forwarder.statistics()?.perPort[name]
            if let (mac, peer, grace) = forward { moved[mac] = MovedMAC(peer: peer, untilMs: forwarder.now + UInt64(grace * 1000)) }
            try removePort(name)
            var reply: [String: JSONValue] = ["removed": .string(name)]
            if let last { reply.merge(Self.portCounters(last).objectValue!) { a, _ in a } }
            return Replies.ok(reply)
        case "announce_request":
            let name = try field(b, "port")
            let mac = try macField(b)
            guard let port = ports.first(where: { $0.name == name }) else { throw ProtocolError(.notFound, "no port named \(name)") }
            guard let seq = forwarder.announceMove(mac, portID: port.id) else {
                throw ProtocolError(.unavailable, "the forwarding thread did not answer")
            }
            return Replies.ok(["announced": ["mac": .string(mac.description), "seq": .number(Double(seq))]])
        case "set_peers_request":
            guard case .array(let items) = b["peers"] ?? .null else {
                throw ProtocolError(.invalidBody, "peers must be a list of \"a.b.c.d:port\"")
            }
            var list: [PeerAddress] = []
            for item in items {
                guard let text = item.stringValue, let p = PeerAddress(text) else {
                    throw ProtocolError(.invalidBody, "bad peer address \(JSONText.string(item))")
                }
                list.append(p)
            }
            setPeers(list)
            return peersReply()
        case "add_peer_request":
            let p = try address(b, "peer")
            if !peers.contains(p) { setPeers(peers + [p]) }
            return peersReply()
        case "remove_peer_request":
            let p = try address(b, "peer")
            guard peers.contains(p) else { throw ProtocolError(.notFound, "\(p) is not a peer") }
            setPeers(peers.filter { $0 != p })
            return peersReply()
        case "add_static_request":
            let mac = try macField(b)
            let location: Location
            if let name = b["port"]?.stringValue {
                guard let port = ports.first(where: { $0.name == name }) else { throw ProtocolError(.notFound, "no port named \(name)") }
                location = .port(port.id)
            } else if b["peer"] != nil {
                let p = try address(b, "peer")
                guard peers.contains(p) else { throw ProtocolError(.notFound, "\(p) is not a peer") }
                location = .peer(p)
            } else {
                throw ProtocolError(.invalidBody, "give port (a name) or peer (an address)")
            }
            statics[mac] = location
            commit()
            return Replies.ok(["mac": .string(mac.description)])
        case "remove_static_request":
            let mac = try macField(b)
            guard statics.removeValue(forKey: mac) != nil else { throw ProtocolError(.notFound, "no static entry for \(mac)") }
            commit()
            return Replies.ok(["mac": .string(mac.description)])
        default:
            return nil
        }
    }

    private func peersReply() -> JSONValue { Replies.ok(["peers": .array(peers.map { .string($0.description) })]) }

    private func field(_ b: JSONValue, _ key: String) throws(ProtocolError) -> String {
        guard let v = b[key]?.stringValue, !v.isEmpty else { throw ProtocolError(.invalidBody, "\(key) (a string) is required") }
        return v
    }

    private func address(_ b: JSONValue, _ key: String, port: UInt16 = VXLAN.defaultPort) throws(ProtocolError) -> PeerAddress {
        let text = try field(b, key)
        guard let a = PeerAddress(text, defaultPort: port, allowAnyPort: port == 0) else {
            throw ProtocolError(.invalidBody, "\(key) must be an IPv4 address with a port, e.g. 10.0.0.1:4789")
        }
        return a
    }

    private func macField(_ b: JSONValue) throws(ProtocolError) -> MAC {
        guard let mac = MAC(try field(b, "mac")), !mac.isMulticast, !mac.isZero else {
            throw ProtocolError(.invalidBody, "mac must be a unicast address like 02:00:00:00:00:01")
        }
        return mac
    }

    public func describe(_ p: PortHandle) -> JSONValue {
        var o: [String: JSONValue] = ["name": .string(p.name), "kind": .string(p.kind.name)]
        if let mac = p.mac { o["mac"] = .string(mac.description) }
        if case .udp(let local, let remote) = p.kind {
            o["local"] = .string(local.description)
            o["remote"] = .string(remote.description)
        }
        return .object(o)
    }

    private func locationJSON(_ l: Location) -> (String, JSONValue) {
        switch l {
        case .port(let id): return ("port", .string(ports.first { $0.id == id }?.name ?? "#\(id)"))
        case .peer(let p): return ("peer", .string(p.description))
        }
    }

    private func fdb() throws(ProtocolError) -> JSONValue {
        guard let entries = forwarder.fdb() else { throw ProtocolError(.unavailable, "the forwarding thread did not answer") }
        return Replies.ok(["entries": .array(entries.map { e in
            let (k, v) = locationJSON(e.location)
            return .object(["mac": .string(e.mac.description), k: v, "age_s": .number((e.ageS * 10).rounded() / 10),
                            "static": .bool(e.isStatic)])
        })])
    }

    public func stats() throws(ProtocolError) -> JSONValue {
        guard let s = forwarder.statistics() else { throw ProtocolError(.unavailable, "the forwarding thread did not answer") }
        var drops: [String: JSONValue] = [:]
        for r in DropReason.allCases { drops[r.rawValue] = .number(Double(s.drops[r.rawValue] ?? 0)) }
        var perPort: [String: JSONValue] = [:]
        for (name, c) in s.perPort { perPort[name] = Self.portCounters(c) }
        return Replies.ok([
            "vni": .number(Double(forwarder.options.vni)),
            "tunnel": .string(forwarder.tunnelAddress.description),
            "frames": ["from_ports": .number(Double(s.framesFromPorts)), "from_peers": .number(Double(s.framesFromPeers)),
                       "to_ports": .number(Double(s.framesToPorts)), "to_peers": .number(Double(s.framesToPeers)),
                       "floods": .number(Double(s.floods)), "grace_forwarded": .number(Double(s.graceForwarded)),
                       "merged": .number(Double(s.merged))],
            "port_failures": .number(Double(s.portFailures)),
            "bytes": ["from_ports": .number(Double(s.bytesFromPorts)), "from_peers": .number(Double(s.bytesFromPeers))],
            "drops": .object(drops),
            "ports": .object(perPort),
            "mac_table": ["size": .number(Double(s.tableSize)), "max": .number(Double(forwarder.options.maxMACs)),
                          "learned": .number(Double(s.table.learned)), "moved": .number(Double(s.table.moved)),
                          "expired": .number(Double(s.table.expired)), "refused": .number(Double(s.table.refused))],
            "peers": .array(peers.map { .string($0.description) }),
        ])
    }

    static func portCounters(_ c: SwitchStats.PortCounters) -> JSONValue {
        ["rx": .number(Double(c.rx)), "tx": .number(Double(c.tx)),
         "first_rx_ms": c.firstRxMs == 0 ? .null : .number(Double(c.firstRxMs)),
         "last_rx_ms": c.lastRxMs == 0 ? .null : .number(Double(c.lastRxMs))]
    }
}

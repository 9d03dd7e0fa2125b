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
    /// Events to publish; set by the service.
    public var emit: (any EventBody) -> Void = { _ in }

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
        emit(SwitchAPI.PortAdded(vni: forwarder.options.vni, port: describe(port)))
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
        emit(SwitchAPI.PortRemoved(vni: forwarder.options.vni, name: name))
    }

    public func setPeers(_ list: [PeerAddress]) {
        var seen = Set<PeerAddress>()
        peers = list.filter { $0 != forwarder.tunnelAddress && seen.insert($0).inserted }
        statics = statics.filter { if case .peer(let p) = $0.value { return seen.contains(p) } else { return true } }
        commit()
        emit(SwitchAPI.PeersChanged(vni: forwarder.options.vni, peers: peers.map(\.description)))
    }

    public var portList: [PortHandle] { ports }
    public var peerList: [PeerAddress] { peers }

    // MARK: - Requests

    /// The requests of PROTOCOL.md §8.1, one handler per type.
    public private(set) lazy var requests: RequestTable = {
        var t = RequestTable()
        t.on(SwitchAPI.Stats.self) { [unowned self] _ in try self.stats() }
        t.on(SwitchAPI.FDB.self) { [unowned self] _ in try self.fdb() }
        t.on(SwitchAPI.Ports.self) { [unowned self] _ in Replies.ok(["ports": .array(self.ports.map(self.describe))]) }
        t.on(SwitchAPI.AddPort.self) { [unowned self] r in try self.addPort(r) }
        t.on(SwitchAPI.RemovePort.self) { [unowned self] r in try self.removePort(r) }
        t.on(SwitchAPI.Announce.self) { [unowned self] r in
            let mac = try Self.mac(r.mac)
            guard let port = self.ports.first(where: { $0.name == r.port }) else { throw ProtocolError(.notFound, "no port named \(r.port)") }
            guard let seq = self.forwarder.announceMove(mac, portID: port.id) else {
                throw ProtocolError(.unavailable, "the forwarding thread did not answer")
            }
            return Replies.ok(["announced": ["mac": .string(mac.description), "seq": .number(Double(seq))]])
        }
        t.on(SwitchAPI.SetPeers.self) { [unowned self] r in
            var list: [PeerAddress] = []
            for text in r.peers { list.append(try Self.address(text)) }
            self.setPeers(list)
            return self.peersReply()
        }
        t.on(SwitchAPI.AddPeer.self) { [unowned self] r in
            let p = try Self.address(r.peer)
            if !self.peers.contains(p) { self.setPeers(self.peers + [p]) }
            return self.peersReply()
        }
        t.on(SwitchAPI.RemovePeer.self) { [unowned self] r in
            let p = try Self.address(r.peer)
            guard self.peers.contains(p) else { throw ProtocolError(.notFound, "\(p) is not a peer") }
            self.setPeers(self.peers.filter { $0 != p })
            return self.peersReply()
        }
        t.on(SwitchAPI.AddStatic.self) { [unowned self] r in
            let mac = try Self.mac(r.mac)
            let location: Location
            switch r.at {
            case .port(let name):
                guard let port = self.ports.first(where: { $0.name == name }) else { throw ProtocolError(.notFound, "no port named \(name)") }
                location = .port(port.id)
            case .peer(let text):
                let p = try Self.address(text)
                guard self.peers.contains(p) else { throw ProtocolError(.notFound, "\(p) is not a peer") }
                location = .peer(p)
            }
            self.statics[mac] = location
            self.commit()
            return Replies.ok(["mac": .string(mac.description)])
        }
        t.on(SwitchAPI.RemoveStatic.self) { [unowned self] r in
            let mac = try Self.mac(r.mac)
            guard self.statics.removeValue(forKey: mac) != nil else { throw ProtocolError(.notFound, "no static entry for \(mac)") }
            self.commit()
            return Replies.ok(["mac": .string(mac.description)])
        }
        return t
    }()

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try requests.handle(request) }

    private func addPort(_ r: SwitchAPI.AddPort) throws(ProtocolError) -> JSONValue {
        let vmMAC = try r.mac.map { m throws(ProtocolError) in try Self.mac(m) }
        let port: PortHandle
        switch r.kind {
        case .tap(let mtu): port = try addTAP(r.name, mtu: mtu)
        case .udp(let local, let remote):
            port = try addUDP(r.name, local: try Self.address(local, port: 0), remote: try Self.address(remote))
        }
        var reply: [String: JSONValue] = ["port": describe(port)]
        // The VM behind the port is known (it arrives by migration): tell the peers now.
        if let vmMAC, let seq = forwarder.announceMove(vmMAC, portID: port.id) {
            reply["announced"] = ["mac": .string(vmMAC.description), "seq": .number(Double(seq))]
        }
        return Replies.ok(reply)
    }

    private func removePort(_ r: SwitchAPI.RemovePort) throws(ProtocolError) -> JSONValue {
        // The VM behind it migrated: late frames for its MAC go on to its new host for a while.
        var forward: (MAC, PeerAddress, Double)?
        if let f = r.forward { forward = (try Self.mac(f.mac), try Self.address(f.to), f.graceS) }
        guard ports.contains(where: { $0.name == r.name }) else { throw ProtocolError(.notFound, "no port named \(r.name)") }
        // The port's last counters, for the caller's blackout measurement.
        let last = forwarder.statistics()?.perPort[r.name]
        if let (mac, peer, grace) = forward { moved[mac] = MovedMAC(peer: peer, untilMs: forwarder.now + UInt64(grace * 1000)) }
        try removePort(r.name)
        var reply: [String: JSONValue] = ["removed": .string(r.name)]
        if let last { reply.merge(Self.portCounters(last).objectValue!) { a, _ in a } }
        return Replies.ok(reply)
    }

    private func peersReply() -> JSONValue { Replies.ok(["peers": .array(peers.map { .string($0.description) })]) }

    /// A validated protocol address as the data plane's (a missing port is VXLAN's; 0 only where
    /// `port` is 0, which lets the kernel choose).
    private static func address(_ text: String, port: UInt16 = VXLAN.defaultPort) throws(ProtocolError) -> PeerAddress {
        guard let a = PeerAddress(text, defaultPort: port, allowAnyPort: port == 0) else {
            throw ProtocolError(.invalidBody, "\(text) is not an IPv4 address with a port, e.g. 10.0.0.1:4789")
        }
        return a
    }

    private static func mac(_ m: MACAddress) throws(ProtocolError) -> MAC {
        guard let mac = MAC(m.description) else { throw ProtocolError(.invalidBody, "\(m) is not a MAC address") }
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

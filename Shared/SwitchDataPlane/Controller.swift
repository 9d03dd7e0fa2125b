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
    /// Rate caps by port id.
    private var rates: [UInt32: PortRate] = [:]
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
        forwarder.apply(SwitchSnapshot(generation: generation, ports: ports, peers: peers, statics: statics, moved: moved, rates: rates))
    }

    // MARK: - Operations (also used for command-line configuration)

    public func addTAP(_ name: String, mtu: Int? = nil) throws(ProtocolError) -> PortHandle {
        try checkNewName(name)
        let port: PortHandle
        do { port = try PortHandle.tap(id: nextPortID, name: name, mtu: mtu ?? defaultMTU,
                                      offload: forwarder.options.offload, queues: forwarder.options.queues) } catch {
            throw ProtocolError(.unavailable, error.description)
        }
        return added(port)
    }

    /// A port on network device `device`, made by someone else (a VM's TAP NIC, a veth).
    public func addPacket(_ name: String, device: String) throws(ProtocolError) -> PortHandle {
        if let same = ports.first(where: { $0.name == name }), same.kind == .packet(device: device) { return same }
        try checkNewName(name)
        let port: PortHandle
        do { port = try PortHandle.packet(id: nextPortID, name: name, device: device, queues: forwarder.options.queues) } catch {
            throw ProtocolError(.unavailable, error.description)
        }
        return added(port)
    }

    /// A TAP device for a VM's NIC, made by the switch and opened by QEMU (PortKind.vmTap).
    public func addVMTap(_ name: String, mtu: Int? = nil) throws(ProtocolError) -> PortHandle {
        // Asked again (a resend, a migration's port prepared twice): the port there is the answer.
        if let same = ports.first(where: { $0.name == name }), same.kind == .vmTap { return same }
        try checkNewName(name)
        let port: PortHandle
        do { port = try PortHandle.vmTap(id: nextPortID, name: name, mtu: mtu ?? defaultMTU, queues: forwarder.options.queues) } catch {
            throw ProtocolError(error.code == EINVAL ? .conflict : .unavailable, error.description)
        }
        return added(port)
    }

    public func addUDP(_ name: String, local: PeerAddress, remote: PeerAddress) throws(ProtocolError) -> PortHandle {
        // The same port asked for again (a resend after a timeout, a VM made again after an
        // attempt cut short): the port there is the answer, not a conflict.
        if let same = ports.first(where: { $0.name == name }), case .udp(let l, let r) = same.kind, l == local, r == remote {
            return same
        }
        try checkNewName(name)
        let port: PortHandle
        do { port = try PortHandle.udp(id: nextPortID, name: name, local: local, remote: remote) } catch {
            throw ProtocolError(.unavailable, error.description)
        }
        return added(port)
    }

    /// A port of the in-memory network the forwarder's tunnel belongs to (tests, no devices).
    public func addMemory(_ name: String, network: MemoryNetwork, vnet: Bool = false) throws(ProtocolError) -> PortHandle {
        try checkNewName(name)
        return added(PortHandle.memory(id: nextPortID, name: name, network: network, vnet: vnet))
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
        rates[id] = nil
        commit()   // the fd closes once the forwarder lets go of the old snapshot
        emit(SwitchAPI.PortRemoved(vni: forwarder.options.vni, name: name))
    }

    /// Caps what port `name` receives from its VM at `mbitS` (0: no cap), in bursts of up to
    /// `burstKB` (nil: 20 ms at the rate, at least 64 KiB).
    public func setPortRate(_ name: String, mbitS: Double, burstKB: Int? = nil) throws(ProtocolError) -> SwitchAPI.PortRateReply {
        guard let port = ports.first(where: { $0.name == name }) else { throw ProtocolError(.notFound, "no port named \(name)") }
        guard mbitS.isFinite, (0...100_000).contains(mbitS) else { throw ProtocolError(.invalidBody, "mbit_s must be 0-100000") }
        if mbitS == 0 {
            rates[port.id] = nil
            commit()
            return SwitchAPI.PortRateReply(port: name, mbitS: 0, burstKB: 0)
        }
        let burst = SwitchAPI.SetPortRate.burstBytes(mbitS: mbitS, burstKB: burstKB)
        rates[port.id] = PortRate(bytesPerSecond: mbitS * 1_000_000 / 8, burstBytes: Double(burst))
        commit()
        return SwitchAPI.PortRateReply(port: name, mbitS: mbitS, burstKB: burst / 1024)
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
        t.on(SwitchAPI.Traffic.self) { [unowned self] r in
            guard let t = self.forwarder.traffic(limit: r.limit) else { throw ProtocolError(.unavailable, "the forwarding thread did not answer") }
            return SwitchAPI.TrafficReply(vni: self.forwarder.options.vni,
                                          pairs: t.pairs.map { .init(src: $0.src.description, dst: $0.dst.description, frames: $0.frames, bytes: $0.bytes) },
                                          other: .init(frames: t.otherFrames, bytes: t.otherBytes))
        }
        t.on(SwitchAPI.Ports.self) { [unowned self] _ in SwitchAPI.PortsReply(ports: self.ports.map(self.describe)) }
        t.on(SwitchAPI.AddPort.self) { [unowned self] r in try self.addPort(r) }
        t.on(SwitchAPI.RemovePort.self) { [unowned self] r in try self.removePort(r) }
        t.on(SwitchAPI.Announce.self) { [unowned self] r in
            let mac = try Self.mac(r.mac)
            guard let port = self.ports.first(where: { $0.name == r.port }) else { throw ProtocolError(.notFound, "no port named \(r.port)") }
            guard let seq = self.forwarder.announceMove(mac, portID: port.id) else {
                throw ProtocolError(.unavailable, "the forwarding thread did not answer")
            }
            return SwitchAPI.AnnounceReply(announced: .init(mac: mac.description, seq: Int(seq)))
        }
        t.on(SwitchAPI.SetPeers.self) { [unowned self] r in
            var list: [PeerAddress] = []
            for text in r.peers { list.append(try self.peer(text)) }
            self.setPeers(list)
            return self.peersReply()
        }
        t.on(SwitchAPI.AddPeer.self) { [unowned self] r in
            let p = try self.peer(r.peer)
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
                let p = try self.peer(text)
                guard self.peers.contains(p) else { throw ProtocolError(.notFound, "\(p) is not a peer") }
                location = .peer(p)
            }
            self.statics[mac] = location
            self.commit()
            return SwitchAPI.MACReply(mac: mac.description)
        }
        t.on(SwitchAPI.SetPortRate.self) { [unowned self] r in try self.setPortRate(r.port, mbitS: r.mbitS, burstKB: r.burstKB) }
        t.on(SwitchAPI.Trace.self) { [unowned self] r in try self.trace(r) }
        t.on(SwitchAPI.RemoveStatic.self) { [unowned self] r in
            let mac = try Self.mac(r.mac)
            guard self.statics.removeValue(forKey: mac) != nil else { throw ProtocolError(.notFound, "no static entry for \(mac)") }
            self.commit()
            return SwitchAPI.MACReply(mac: mac.description)
        }
        return t
    }()

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try requests.handle(request) }

    private func addPort(_ r: SwitchAPI.AddPort) throws(ProtocolError) -> SwitchAPI.AddPortReply {
        let vmMAC = try r.mac.map { m throws(ProtocolError) in try Self.mac(m) }
        let port: PortHandle
        switch r.kind {
        case .tap(let mtu): port = try addTAP(r.name, mtu: mtu)
        case .vmTap(let mtu): port = try addVMTap(r.name, mtu: mtu)
        case .udp(let local, let remote):
            port = try addUDP(r.name, local: try Self.udpAddress(local, port: 0), remote: try Self.udpAddress(remote))
        }
        var reply = SwitchAPI.AddPortReply(port: describe(port))
        // The VM behind the port is known (it arrives by migration): tell the peers now.
        if let vmMAC, let seq = forwarder.announceMove(vmMAC, portID: port.id) {
            reply.announced = .init(mac: vmMAC.description, seq: Int(seq))
        }
        return reply
    }

    private func removePort(_ r: SwitchAPI.RemovePort) throws(ProtocolError) -> SwitchAPI.RemovePortReply {
        // The VM behind it migrated: late frames for its MAC go on to its new host for a while.
        var forward: (MAC, PeerAddress, Double)?
        if let f = r.forward { forward = (try Self.mac(f.mac), try peer(f.to), f.graceS) }
        guard ports.contains(where: { $0.name == r.name }) else { throw ProtocolError(.notFound, "no port named \(r.name)") }
        // The port's last counters, for the caller's blackout measurement.
        let last = forwarder.statistics()?.perPort[r.name]
        if let (mac, peer, grace) = forward { moved[mac] = MovedMAC(peer: peer, untilMs: forwarder.now + UInt64(grace * 1000)) }
        try removePort(r.name)
        return SwitchAPI.RemovePortReply(removed: r.name, last: last.map(Self.portCounters))
    }

    private func peersReply() -> SwitchAPI.PeersReply { SwitchAPI.PeersReply(peers: peers.map(\.description)) }

    /// A validated protocol address as the data plane's (a missing port is VXLAN's; 0 only where
    /// `port` is 0, which lets the kernel choose).
    private static func address(_ text: String, port: UInt16 = VXLAN.defaultPort) throws(ProtocolError) -> PeerAddress {
        guard let a = PeerAddress(text, defaultPort: port, allowAnyPort: port == 0) else {
            throw ProtocolError(.invalidBody, "\(text) is not an address with a port, e.g. 10.0.0.1:4789 or [2001:db8::1]:4789")
        }
        return a
    }

    /// A peer switch's address: of the tunnel's family (one VIOLIN's switches share one).
    private func peer(_ text: String) throws(ProtocolError) -> PeerAddress {
        let a = try Self.address(text)
        let tunnel = forwarder.tunnelAddress
        guard a.isIPv6 == tunnel.isIPv6 else {
            throw ProtocolError(.invalidBody, "\(a) is \(a.isIPv6 ? "IPv6" : "IPv4") but this switch's tunnel \(tunnel) is \(tunnel.isIPv6 ? "IPv6" : "IPv4"): "
                                + "a VIOLIN's switches use one address family")
        }
        return a
    }

    /// A UDP port's own address or its VM's: IPv4 (QEMU's UDP socket NIC on this host).
    private static func udpAddress(_ text: String, port: UInt16 = VXLAN.defaultPort) throws(ProtocolError) -> PeerAddress {
        let a = try address(text, port: port)
        guard !a.isIPv6 else { throw ProtocolError(.invalidBody, "\(a): a UDP port's addresses are IPv4 (the host's own, e.g. 127.0.0.1)") }
        return a
    }

    private static func mac(_ m: MACAddress) throws(ProtocolError) -> MAC {
        guard let mac = MAC(m.description) else { throw ProtocolError(.invalidBody, "\(m) is not a MAC address") }
        return mac
    }

    public func describe(_ p: PortHandle) -> SwitchAPI.PortInfo {
        var info = SwitchAPI.PortInfo(name: p.name, kind: p.kind.name, mac: p.mac?.description)
        if case .udp(let local, let remote) = p.kind {
            info.local = local.description
            info.remote = remote.description
        }
        if case .packet(let device) = p.kind { info.local = device }
        return info
    }

    /// `Trace.trace` over what the switch holds now: its ports and peers, the table's entry for
    /// the destination (from the forwarding thread), a migrated VM's grace forwarding.
    private func trace(_ r: SwitchAPI.Trace) throws(ProtocolError) -> SwitchAPI.TraceReply {
        guard let src = MAC(r.src) else { throw ProtocolError(.invalidBody, "src: \(r.src) is not a MAC address") }
        guard let dst = MAC(r.dst) else { throw ProtocolError(.invalidBody, "dst: \(r.dst) is not a MAC address") }
        let entry: Trace.Entry
        switch r.at {
        case .port(let name):
            guard let port = ports.first(where: { $0.name == name }) else { throw ProtocolError(.notFound, "no port named \(name)") }
            entry = .port(port.id)
        case .peer(let text): entry = .peer(try peer(text))
        }
        guard let entries = forwarder.fdb() else { throw ProtocolError(.unavailable, "the forwarding thread did not answer") }
        let known = entries.first { $0.mac == dst }
        var state = Trace.State(vni: forwarder.options.vni, ports: ports.map(\.id), peers: peers,
                                known: known.map { ($0.location, $0.ageS, $0.isStatic) })
        if let m = moved[dst] { state.moved = (m.peer, (Double(m.untilMs) - Double(forwarder.now)) / 1000) }
        func name(_ id: UInt32) -> String { ports.first { $0.id == id }?.name ?? "#\(id)" }
        let result = Trace.trace(entry, vni: r.vni ?? forwarder.options.vni, src: src, dst: dst, state, portName: name)
        let why = result.why
        var reply = SwitchAPI.TraceReply(action: "drop", why: (r.ethertype.map { [String(format: "ethertype 0x%04x (not a forwarding rule's input)", $0)] } ?? []) + why)
        switch result.outcome {
        case .port(let id): reply.action = "port"; reply.port = name(id)
        case .peer(let p): reply.action = "peer"; reply.peer = p.description
        case .flood(let ps, let peers): reply.action = "flood"; reply.ports = ps.map(name); reply.peers = peers.map(\.description)
        case .grace(let p): reply.action = "grace"; reply.peer = p.description
        case .drop(let reason): reply.reason = reason.rawValue
        }
        if let known {
            var port: String?, peer: String?
            switch known.location {
            case .port(let id): port = name(id)
            case .peer(let p): peer = p.description
            }
            reply.learned = .init(mac: dst.description, port: port, peer: peer, ageS: (known.ageS * 10).rounded() / 10, static: known.isStatic)
        }
        return reply
    }

    private func fdb() throws(ProtocolError) -> SwitchAPI.FDBReply {
        guard let entries = forwarder.fdb() else { throw ProtocolError(.unavailable, "the forwarding thread did not answer") }
        return SwitchAPI.FDBReply(entries: entries.map { e in
            var port: String?, peer: String?
            switch e.location {
            case .port(let id): port = ports.first { $0.id == id }?.name ?? "#\(id)"
            case .peer(let p): peer = p.description
            }
            return .init(mac: e.mac.description, port: port, peer: peer, ageS: (e.ageS * 10).rounded() / 10, static: e.isStatic)
        })
    }

    public func stats() throws(ProtocolError) -> SwitchAPI.StatsReply {
        guard let s = forwarder.statistics() else { throw ProtocolError(.unavailable, "the forwarding thread did not answer") }
        var drops: [String: Int] = [:]
        for r in DropReason.allCases { drops[r.rawValue] = Int(s.drops[r.rawValue] ?? 0) }
        return SwitchAPI.StatsReply(
            vni: forwarder.options.vni, tunnel: forwarder.tunnelAddress.description,
            frames: ["from_ports": Int(s.framesFromPorts), "from_peers": Int(s.framesFromPeers), "to_ports": Int(s.framesToPorts),
                     "to_peers": Int(s.framesToPeers), "floods": Int(s.floods), "grace_forwarded": Int(s.graceForwarded),
                     "merged": Int(s.merged)],
            portFailures: Int(s.portFailures),
            bytes: ["from_ports": Int(s.bytesFromPorts), "from_peers": Int(s.bytesFromPeers)],
            drops: drops, ports: s.perPort.mapValues(Self.portCounters),
            macTable: ["size": Int(s.tableSize), "max": Int(forwarder.options.maxMACs), "learned": Int(s.table.learned),
                       "moved": Int(s.table.moved), "expired": Int(s.table.expired), "refused": Int(s.table.refused)],
            peers: peers.map(\.description),
            scheduling: .init(mode: s.schedulingMode, realtimeEntries: s.realtimeEntries, overBudget: s.overBudget, refused: s.realtimeRefused),
            threads: s.perThread.isEmpty ? nil : s.perThread.map { ["from_ports": $0.framesFromPorts, "from_peers": $0.framesFromPeers] })
    }

    static func portCounters(_ c: SwitchStats.PortCounters) -> SwitchAPI.PortCounters {
        SwitchAPI.PortCounters(rx: Int(c.rx), tx: Int(c.tx), firstRxMs: c.firstRxMs == 0 ? nil : Int(c.firstRxMs),
                               lastRxMs: c.lastRxMs == 0 ? nil : Int(c.lastRxMs), rxBytes: c.rxBytes, txBytes: c.txBytes,
                               rateMbitS: c.rate.map { ($0.bytesPerSecond * 8 / 1_000_000 * 1000).rounded() / 1000 },
                               rateWaits: c.rate == nil ? nil : c.rateWaits)
    }
}

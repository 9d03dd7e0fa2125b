/// What the switch would do with one frame, and why (`violin switch trace`, in the manner of
/// `ovs-appctl ofproto/trace`): the forwarding thread's own steps, in its order, over what the
/// switch holds now — the same `Forwarding.decide`, never a second copy of its rules. Pure.
public enum Trace {
    /// Where the frame comes in: a local port, or a peer (nil address: one the switch does not have).
    public enum Entry: Equatable, Sendable {
        case port(UInt32)
        case peer(PeerAddress)
    }

    /// What the switch holds that the steps read.
    public struct State: Sendable {
        public var vni: UInt32
        public var ports: [UInt32]
        public var peers: [PeerAddress]
        /// The table's entry for the destination: where, how long since it was last heard, and
        /// whether it is static.
        public var known: (location: Location, ageS: Double, isStatic: Bool)?
        /// A VM that migrated away: its MAC's late frames from peers go on to `peer` for `leftS` more seconds.
        public var moved: (peer: PeerAddress, leftS: Double)?
        public init(vni: UInt32, ports: [UInt32], peers: [PeerAddress], known: (location: Location, ageS: Double, isStatic: Bool)? = nil,
                    moved: (peer: PeerAddress, leftS: Double)? = nil) {
            self.vni = vni; self.ports = ports; self.peers = peers; self.known = known; self.moved = moved
        }
    }

    public enum Outcome: Equatable, Sendable {
        case port(UInt32)
        case peer(PeerAddress)
        /// Copies to these ports and peers (the ports in the switch's order).
        case flood(ports: [UInt32], peers: [PeerAddress])
        /// A late frame for a VM that migrated: on to its new host.
        case grace(PeerAddress)
        case drop(DropReason)
    }

    public struct Result: Equatable, Sendable {
        public var outcome: Outcome
        /// One line per step, in order.
        public var why: [String]
    }

    /// The steps of the forwarding thread for a frame of `vni` from `src` to `dst` entering at
    /// `entry` (`vni` counts only for a frame from a peer: a port's frames are the switch's own VNI).
    /// `portName` names a port in the steps (default `#<id>`).
    public static func trace(_ entry: Entry, vni: UInt32, src: MAC, dst: MAC, _ s: State,
                             portName: (UInt32) -> String = { "#\($0)" }) -> Result {
        var why: [String] = []
        func place(_ l: Location) -> String {
            switch l {
            case .port(let id): return "port \(portName(id))"
            case .peer(let p): return "peer \(p)"
            }
        }
        func done(_ o: Outcome, _ line: String) -> Result { why.append(line); return Result(outcome: o, why: why) }
        let source: Location
        switch entry {
        case .port(let id):
            guard s.ports.contains(id) else { return done(.drop(.noRoute), "no port \(portName(id)) here") }
            source = .port(id)
            why.append("from local port \(portName(id))")
        case .peer(let p):
            guard s.peers.contains(p) else { return done(.drop(.unknownPeer), "\(p) is not a peer of this switch: dropped (unknown_peer)") }
            guard vni == s.vni else { return done(.drop(.wrongVNI), "VNI \(vni) is not this switch's \(s.vni): dropped (wrong_vni)") }
            source = .peer(p)
            why.append("from peer \(p), VNI \(vni)")
        }
        if src.isMulticast || src.isZero { return done(.drop(.badSource), "source \(src) is multicast or zero: dropped (bad_source), not learned") }
        why.append("source \(src) learned at \(place(source))")
        // The destination as the table answers after learning the source (which may be it).
        let known: Location? = dst.isMulticast ? nil : (dst == src ? source : s.known?.location)
        why.append(destination(dst, src: src, s.known, place: place))
        if case .peer(let from) = source, !dst.isMulticast, let m = s.moved, m.leftS > 0, m.peer != from {
            return done(.grace(m.peer), "its VM migrated to \(m.peer): on to it, \(tenths(m.leftS)) s of grace left")
        }
        switch Forwarding.decide(from: source, destination: dst, source: src, known: known) {
        case .port(let id):
            guard s.ports.contains(id) else { return done(.drop(.noRoute), "port \(portName(id)) is gone: dropped (no_route)") }
            return done(.port(id), "unicast to local port \(portName(id))")
        case .peer(let p):
            guard s.peers.contains(p) else { return done(.drop(.noRoute), "\(p) is no longer a peer: dropped (no_route)") }
            return done(.peer(p), "unicast to peer \(p)")
        case .flood(let except, let toPeers):
            let ports = s.ports.filter { $0 != except }
            let peers = toPeers ? s.peers : []
            let rule = toPeers ? "from a port: flooded to the other local ports and every peer"
                : "from a peer: flooded to local ports only, never back into the mesh"
            return done(.flood(ports: ports, peers: peers), rule + " (\(ports.count) ports, \(peers.count) peers)")
        case .drop(let reason):
            let line: String
            switch reason {
            case .samePort: line = "the destination is on the port it came from: dropped (same_port)"
            case .misdirected: line = "from a peer, for an address behind a peer: dropped (misdirected)"
            default: line = "dropped (\(reason.rawValue))"
            }
            return done(.drop(reason), line)
        }
    }

    /// What the table says of the destination, as one step of the trace.
    static func destination(_ dst: MAC, src: MAC, _ known: (location: Location, ageS: Double, isStatic: Bool)?,
                            place: (Location) -> String) -> String {
        if dst.isMulticast { return "destination \(dst) is \(dst == .broadcast ? "broadcast" : "multicast")" }
        if dst == src { return "destination \(dst) is the source itself" }
        guard let k = known else { return "destination \(dst) is not in the table" }
        return "destination \(dst) learned at \(place(k.location))\(k.isStatic ? " (static)" : ", heard \(tenths(k.ageS)) s ago")"
    }

    /// "3.5" (one decimal, without Foundation).
    static func tenths(_ x: Double) -> String {
        let t = Int((x * 10).rounded())
        return "\(t / 10).\(abs(t % 10))"
    }
}

/// The forwarding decision for one frame: pure, and the whole of the switch's intelligence.
/// The forwarding loop turns it into I/O.
public enum Decision: Equatable, Sendable {
    /// Known unicast at a local port.
    case port(UInt32)
    /// Known unicast behind a peer.
    case peer(PeerAddress)
    /// To every local port but `exceptPort`, and to every peer when `toPeers`.
    case flood(exceptPort: UInt32?, toPeers: Bool)
    case drop(DropReason)
}

public enum DropReason: String, CaseIterable, Sendable {
    case malformed            // shorter than an Ethernet header, or a bad VXLAN header
    case wrongVNI = "wrong_vni"
    case unknownPeer = "unknown_peer"
    case badSource = "bad_source"          // multicast or zero source address
    case samePort = "same_port"            // destination lives on the port it came from
    case misdirected          // from a peer, for an address behind another peer
    case noRoute = "no_route" // known location that no longer exists
    case congested            // a port or the socket could not take it
    case badChecksum = "bad_checksum"      // from a peer, with a wrong inner IPv4/TCP/UDP checksum
}

public enum Forwarding {
    /// The paper's rules (§2.1.2). `known` is the table's answer for the destination.
    @inline(__always)
    public static func decide(from source: Location, destination: MAC, source sourceMAC: MAC,
                              known: Location?) -> Decision {
        if sourceMAC.isMulticast || sourceMAC.isZero { return .drop(.badSource) }
        switch source {
        case .port(let inPort):
            guard !destination.isMulticast, let where_ = known else {
                return .flood(exceptPort: inPort, toPeers: true)
            }
            switch where_ {
            case .port(let p): return p == inPort ? .drop(.samePort) : .port(p)
            case .peer(let peer): return .peer(peer)
            }
        case .peer:
            // From a peer: local ports only, never back into the mesh.
            guard !destination.isMulticast, let where_ = known else {
                return .flood(exceptPort: nil, toPeers: false)
            }
            switch where_ {
            case .port(let p): return .port(p)
            case .peer: return .drop(.misdirected)
            }
        }
    }
}

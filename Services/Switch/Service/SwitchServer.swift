import Foundation
import ServiceKit
import SwitchCore
import SwitchDataPlane
import VIOLINProtocol

/// violin-switch's logic: the data plane of one VIOLIN on one host — its forwarder (tunnel
/// socket and forwarding thread) and the controller that answers PROTOCOL.md §8.1. `main`
/// only parses flags into `Settings` and wires the server to the runtime.
public final class SwitchServer: RequestHandler {
    /// What the command line sets.
    public struct Settings: Sendable {
        public var vni: UInt32
        public var tunnel = "0.0.0.0:4789"
        public var peers: [String] = []
        public var taps: [String] = []
        /// NAME=LOCAL_ADDR:PORT,REMOTE_ADDR:PORT
        public var udpPorts: [String] = []
        /// Network devices made by someone else, each a port by its own name (a packet socket).
        public var packetPorts: [String] = []
        /// MAC=PORTNAME or MAC=PEER_ADDR:PORT
        public var statics: [String] = []
        public var mtu = 1450
        public var forwarding: Forwarder.Options

        public init(vni: UInt32) {
            self.vni = vni
            forwarding = Forwarder.Options(vni: vni)
        }

        /// The first thing wrong with the settings, as a flag would name it; nil when all is well.
        public var problem: String? {
            guard (1...VXLAN.maxVNI).contains(vni) else { return "--vni must be 1-16777215" }
            guard let local = PeerAddress(tunnel, allowAnyPort: true) else { return "--tunnel must be a.b.c.d:port or [IPv6]:port" }
            for p in peers {
                guard let peer = PeerAddress(p) else { return "--peer \(p) must be a.b.c.d[:port] or [IPv6][:port]" }
                if peer.isIPv6 != local.isIPv6 {
                    return "--peer \(p) is \(peer.isIPv6 ? "IPv6" : "IPv4") but --tunnel \(tunnel) is \(local.isIPv6 ? "IPv6" : "IPv4"): a VIOLIN's switches use one address family"
                }
            }
            for d in packetPorts where d.isEmpty || d.utf8.count > 15 || d.contains("/") || d.contains(" ") {
                return "--packet-port \(d) must be a network device's name (1-15 characters, no '/' or space)"
            }
            guard (68...65_535).contains(mtu) else { return "--mtu must be 68-65535" }
            guard (0...19).contains(forwarding.niceness) else { return "--nice must be 0-19, not \(forwarding.niceness)" }
            let slice = forwarding.sliceMicros
            guard slice == 0 || (100...100_000).contains(slice) else { return "--slice-us must be 0 or 100-100000, not \(slice)" }
            guard (1...16).contains(forwarding.queues) else { return "--queues must be 1-16, not \(forwarding.queues)" }
            guard forwarding.maxMACs > 0, forwarding.ageingMs > 0, (1...1024).contains(forwarding.batch) else {
                return "--max-macs, --ageing must be positive and --batch 1-1024"
            }
            return nil
        }
    }

    public let controller: SwitchController
    public var forwarder: Forwarder { controller.forwarder }
    private let tunnelSockets: [TunnelSocket]

    /// Opens the tunnel socket and sets up the ports, peers and static entries the settings
    /// name; forwarding starts with `start()`.
    public init(_ s: Settings) throws {
        tunnelSockets = try TunnelSocket.group(bind: PeerAddress(s.tunnel, allowAnyPort: true)!, gro: s.forwarding.offload,
                                               count: s.forwarding.queues)
        controller = SwitchController(forwarder: Forwarder(options: s.forwarding, tunnels: tunnelSockets), defaultMTU: s.mtu)
        try configure(s)
    }

    public var tunnel: PeerAddress { tunnelSockets[0].local }

    private func configure(_ s: Settings) throws {
        let c = controller
        c.setPeers(s.peers.compactMap { PeerAddress($0) })
        for name in s.taps { _ = try c.addTAP(name) }
        for device in s.packetPorts { _ = try c.addPacket(device, device: device) }
        for spec in s.udpPorts {
            let parts = spec.split(separator: "=", maxSplits: 1)
            let ends = parts.count == 2 ? parts[1].split(separator: ",") : []
            guard ends.count == 2, let local = PeerAddress(String(ends[0]), defaultPort: 0, allowAnyPort: true),
                  let remote = PeerAddress(String(ends[1])) else {
                throw SwitchSetupError("--udp-port \(spec): expected NAME=LOCAL:PORT,REMOTE:PORT")
            }
            _ = try c.addUDP(String(parts[0]), local: local, remote: remote)
        }
        for spec in s.statics {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw SwitchSetupError("--static \(spec): expected MAC=PORT or MAC=ADDR:PORT") }
            guard let mac = MACAddress(parts[0]), mac.isUnicast else { throw SwitchSetupError("--static \(spec): \(parts[0]) is not a unicast MAC") }
            let at: SwitchAPI.AddStatic.Location = PeerAddress(parts[1]) != nil && parts[1].contains(".") ? .peer(parts[1]) : .port(parts[1])
            _ = try c.requests.call(SwitchAPI.AddStatic(mac: mac, at: at))
        }
    }

    /// Starts the forwarding thread; why it runs without its scheduling, if it does.
    public func start() -> String? {
        forwarder.start()
        return forwarder.schedulingError()
    }

    public func stop() { forwarder.stop() }

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try controller.handle(request) }

    public var state: JSONValue {
        ["vni": .number(Double(forwarder.options.vni)),
         "tunnel": .string(forwarder.tunnelAddress.description),
         "ports": .array(controller.portList.map { .string($0.name) }),
         "peers": .array(controller.peerList.map { .string($0.description) })]
    }
}

/// A setting that cannot be carried out, named as its flag.
public struct SwitchSetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

import CNetShim
import SwitchCore
#if canImport(Glibc)
import Glibc
#endif

/// A system error from the data plane's syscalls.
public struct NetError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32
    public var description: String { "\(operation): \(String(cString: strerror(code)))" }

    static func check(_ rc: Int32, _ op: String) throws(NetError) -> Int32 {
        if rc < 0 { throw NetError(operation: op, code: -rc) }
        return rc
    }
}

/// How a VM reaches the switch.
public enum PortKind: Equatable, Sendable {
    /// A TAP device the switch creates (and removes) by name.
    case tap
    /// QEMU's UDP socket netdev (libvirt `<interface type='udp'>`): one raw Ethernet frame per
    /// datagram, from QEMU's `remote` to our `local` and back.
    case udp(local: PeerAddress, remote: PeerAddress)
    /// A network device someone else made — a VM's TAP NIC held by QEMU (with vhost-net), a
    /// veth — read and written through a packet socket, one frame at a time.
    case packet(device: String)
    /// A port of a `MemoryNetwork` (tests).
    case memory

    public var name: String {
        switch self {
        case .tap: return "tap"
        case .udp: return "udp"
        case .packet: return "packet"
        case .memory: return "memory"
        }
    }
}

/// One open port. The fd closes when the last snapshot holding the port is gone, so the
/// forwarding thread never writes to a closed or reused descriptor.
public final class PortHandle: @unchecked Sendable {
    public let id: UInt32
    public let name: String
    public let kind: PortKind
    public let fd: Int32
    public let mac: MAC?
    /// Frames on this fd carry a virtio_net_hdr (a TAP with offloads).
    public let vnet: Bool

    /// The network a memory port belongs to (which owns its descriptor).
    private let network: MemoryNetwork?

    init(id: UInt32, name: String, kind: PortKind, fd: Int32, mac: MAC?, vnet: Bool = false, network: MemoryNetwork? = nil) {
        self.id = id
        self.name = name
        self.kind = kind
        self.fd = fd
        self.mac = mac
        self.vnet = vnet
        self.network = network
    }

    deinit { if let network { network.close(fd) } else { _ = vn_close(fd) } }

    /// A port of an in-memory network: frames the test injects arrive as from a VM; what the
    /// switch writes waits for the test to take.
    /// With `vnet`, its frames carry a virtio_net_hdr, as a TAP's with offloads.
    public static func memory(id: UInt32, name: String, network: MemoryNetwork, vnet: Bool = false) -> PortHandle {
        PortHandle(id: id, name: name, kind: .memory, fd: network.open(), mac: nil, vnet: vnet, network: network)
    }

    /// Creates TAP device `name` (up, with `mtu`); with `offload`, with a virtio_net_hdr and the
    /// kernel's checksum and TCPv4 segmentation offloads.
    public static func tap(id: UInt32, name: String, mtu: Int, offload: Bool = true) throws(NetError) -> PortHandle {
        var actual = [CChar](repeating: 0, count: 16)
        let fd = try NetError.check(offload ? vn_tap_open_offload(name, &actual) : vn_tap_open(name, &actual),
                                    "open TAP \(name)")
        let real = String(cString: actual)
        let rc = vn_link_configure(real, Int32(mtu), nil)
        if rc < 0 {
            _ = vn_close(fd)
            throw NetError(operation: "configure \(real)", code: -rc)
        }
        var mac = [UInt8](repeating: 0, count: 6)
        let hasMAC = vn_link_mac(real, &mac) == 0
        return PortHandle(id: id, name: real, kind: .tap, fd: fd, mac: hasMAC ? MAC(octets: mac) : nil, vnet: offload)
    }

    /// Attaches to network device `device` (which must exist) with a packet socket.
    public static func packet(id: UInt32, name: String, device: String) throws(NetError) -> PortHandle {
        let fd = try NetError.check(vn_packet_open(device, 4 << 20), "attach to device \(device)")
        var mac = [UInt8](repeating: 0, count: 6)
        let hasMAC = vn_link_mac(device, &mac) == 0
        return PortHandle(id: id, name: name, kind: .packet(device: device), fd: fd, mac: hasMAC ? MAC(octets: mac) : nil, vnet: true)
    }

    /// Binds `local` and connects to `remote`: the QEMU UDP netdev's other end.
    public static func udp(id: UInt32, name: String, local: PeerAddress, remote: PeerAddress) throws(NetError) -> PortHandle {
        let fd = try NetError.check(vn_udp_open(local.addressBE, local.port, 4 << 20), "bind UDP port \(local)")
        let rc = vn_udp_connect(fd, remote.addressBE, remote.port)
        if rc < 0 {
            _ = vn_close(fd)
            throw NetError(operation: "connect UDP port to \(remote)", code: -rc)
        }
        let bound = vn_udp_local_port(fd)
        let actualLocal = PeerAddress(addressBE: local.addressBE, port: bound > 0 ? UInt16(bound) : local.port)
        return PortHandle(id: id, name: name, kind: .udp(local: actualLocal, remote: remote), fd: fd, mac: nil)
    }
}

/// The switch's tunnel socket: VXLAN over UDP.
public final class TunnelSocket: @unchecked Sendable {
    public let fd: Int32
    public let local: PeerAddress

    /// With `gro`, the kernel may hand over trains of datagrams coalesced into one (UDP_GRO).
    public let gro: Bool

    /// The in-memory network this tunnel belongs to, if it is one (tests).
    public let network: MemoryNetwork?

    public init(bind address: PeerAddress, gro: Bool = true) throws(NetError) {
        fd = try NetError.check(vn_udp_open16(address.hi, address.lo, address.port, 8 << 20), "bind tunnel \(address)")
        self.gro = gro && vn_udp_set_gro(fd) == 0
        let p = vn_udp_local_port(fd)
        local = PeerAddress(hi: address.hi, lo: address.lo, port: p > 0 ? UInt16(p) : address.port)
        network = nil
    }

    /// A tunnel of an in-memory network, as if bound at `address`.
    public init(memory network: MemoryNetwork, address: PeerAddress) {
        fd = network.open()
        local = address
        gro = false
        self.network = network
    }

    deinit { if let network { network.close(fd) } else { _ = vn_close(fd) } }
}

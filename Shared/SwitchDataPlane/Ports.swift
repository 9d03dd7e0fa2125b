import Foundation
import Primitives
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
    /// A persistent TAP device the switch makes for a VM's NIC, named as the port, which QEMU
    /// opens (libvirt `<interface type='ethernet'>`, vhost-net where the host has it); read and
    /// written like `packet`. Made before the VM arrives by migration; removed with the port once
    /// no VM holds it.
    case vmTap
    /// A port of a `MemoryNetwork` (tests).
    case memory

    public var name: String {
        switch self {
        case .tap: return "tap"
        case .udp: return "udp"
        case .packet: return "packet"
        case .vmTap: return "vm_tap"
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
    /// A multi-queue TAP's queues, or a packet port's fanout sockets (the first is `fd`); empty
    /// for every other port.
    let queueFDs: [Int32]

    /// The network a memory port belongs to (which owns its descriptor).
    private let network: MemoryNetwork?

    init(id: UInt32, name: String, kind: PortKind, fd: Int32, mac: MAC?, vnet: Bool = false, network: MemoryNetwork? = nil,
         queueFDs: [Int32] = []) {
        self.queueFDs = queueFDs
        self.id = id
        self.name = name
        self.kind = kind
        self.fd = fd
        self.mac = mac
        self.vnet = vnet
        self.network = network
    }

    /// Whether forwarding thread `shard` reads this port: its queue of a multi-queue TAP or its
    /// socket of a packet port's fanout group; thread 0 alone any other port.
    @inline(__always) func reads(shard: Int) -> Bool { shard < max(1, queueFDs.count) }

    /// The descriptor thread `shard` reads and writes: its queue, or the port's one.
    @inline(__always) func fd(shard: Int) -> Int32 { shard < queueFDs.count ? queueFDs[shard] : fd }

    /// Queues of a multi-queue TAP (sockets of a packet port's fanout group), 1 otherwise.
    public var queues: Int { max(1, queueFDs.count) }

    deinit {
        for q in queueFDs.dropFirst() { _ = vn_close(q) }
        if let network { network.close(fd) } else { _ = vn_close(fd) }
        // A VM's TAP goes with its port, unless a VM still holds it (then it stays for the VM).
        if kind == .vmTap, vn_vmtap_remove(name) == -EBUSY { VMTapReaper.shared.remove(name) }
    }

    /// A port of an in-memory network: frames the test injects arrive as from a VM; what the
    /// switch writes waits for the test to take.
    /// With `vnet`, its frames carry a virtio_net_hdr, as a TAP's with offloads.
    public static func memory(id: UInt32, name: String, network: MemoryNetwork, vnet: Bool = false) -> PortHandle {
        PortHandle(id: id, name: name, kind: .memory, fd: network.open(), mac: nil, vnet: vnet, network: network)
    }

    /// Creates TAP device `name` (up, with `mtu`); with `offload`, with a virtio_net_hdr and the
    /// kernel's checksum and TCPv4 segmentation offloads.
    /// With `queues` above 1, a multi-queue TAP: one queue per forwarding thread.
    public static func tap(id: UInt32, name: String, mtu: Int, offload: Bool = true, queues: Int = 1) throws(NetError) -> PortHandle {
        var actual = [CChar](repeating: 0, count: 16)
        var fds = [Int32](repeating: -1, count: max(1, queues))
        if queues > 1 {
            _ = try NetError.check(vn_tap_open_mq(name, Int32(queues), offload ? 1 : 0, &fds, &actual), "open TAP \(name) with \(queues) queues")
        } else {
            fds[0] = try NetError.check(offload ? vn_tap_open_offload(name, &actual) : vn_tap_open(name, &actual), "open TAP \(name)")
        }
        let real = String(cString: actual)
        let rc = vn_link_configure(real, Int32(mtu), nil)
        if rc < 0 {
            for fd in fds { _ = vn_close(fd) }
            throw NetError(operation: "configure \(real)", code: -rc)
        }
        var mac = [UInt8](repeating: 0, count: 6)
        let hasMAC = vn_link_mac(real, &mac) == 0
        return PortHandle(id: id, name: real, kind: .tap, fd: fds[0], mac: hasMAC ? MAC(octets: mac) : nil, vnet: offload,
                          queueFDs: queues > 1 ? fds : [])
    }

    /// Attaches to network device `device` (which must exist) with a packet socket; with
    /// `queues` above 1, with that many in a fanout group that steers the device's frames by
    /// flow as the tunnel's sockets do (`vn_packet_open_group`): one per forwarding thread.
    public static func packet(id: UInt32, name: String, device: String, queues: Int = 1) throws(NetError) -> PortHandle {
        let fds = try packetSockets(device, queues: queues)
        var mac = [UInt8](repeating: 0, count: 6)
        let hasMAC = vn_link_mac(device, &mac) == 0
        return PortHandle(id: id, name: name, kind: .packet(device: device), fd: fds[0], mac: hasMAC ? MAC(octets: mac) : nil, vnet: true,
                          queueFDs: fds.count > 1 ? fds : [])
    }

    private static func packetSockets(_ device: String, queues: Int) throws(NetError) -> [Int32] {
        var fds = [Int32](repeating: -1, count: max(1, queues))
        let n = try NetError.check(vn_packet_open_group(device, 4 << 20, Int32(fds.count), &fds), "attach to device \(device)")
        return Array(fds.prefix(Int(n)))
    }

    /// Makes persistent TAP device `name` for a VM's NIC (or takes the one a VM holds already:
    /// after a switch restart) and attaches to it with a packet socket.
    public static func vmTap(id: UInt32, name: String, mtu: Int, queues: Int = 1) throws(NetError) -> PortHandle {
        let made = vn_vmtap_make(name, Int32(mtu))
        if made == -EINVAL { throw NetError(operation: "make TAP \(name) (a device of that name that is no TAP exists)", code: EINVAL) }
        _ = try NetError.check(made, "make TAP \(name)")
        var fds = [Int32](repeating: -1, count: max(1, queues))
        let rc = vn_packet_open_group(name, 4 << 20, Int32(fds.count), &fds)
        if rc < 0 {
            if made == 0 { _ = vn_vmtap_remove(name) }
            throw NetError(operation: "attach to TAP \(name)", code: -rc)
        }
        fds = Array(fds.prefix(Int(rc)))
        var mac = [UInt8](repeating: 0, count: 6)
        let hasMAC = vn_link_mac(name, &mac) == 0
        return PortHandle(id: id, name: name, kind: .vmTap, fd: fds[0], mac: hasMAC ? MAC(octets: mac) : nil, vnet: true,
                          queueFDs: fds.count > 1 ? fds : [])
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

    private init(fd: Int32, local: PeerAddress, gro: Bool) {
        self.fd = fd
        self.local = local
        self.gro = gro
        network = nil
    }

    /// `count` sockets bound to `address` (port 0: a free one, the same for all) with
    /// SO_REUSEPORT, among which the kernel steers each datagram by its inner flow
    /// (`vn_udp_open_group`): one per forwarding thread.
    public static func group(bind address: PeerAddress, gro: Bool = true, count: Int) throws(NetError) -> [TunnelSocket] {
        guard count > 1 else { return [try TunnelSocket(bind: address, gro: gro)] }
        var fds = [Int32](repeating: -1, count: count)
        _ = try NetError.check(vn_udp_open_group(address.hi, address.lo, address.port, 8 << 20, Int32(count), &fds),
                               "bind \(count) tunnel sockets at \(address)")
        let p = vn_udp_local_port(fds[0])
        let local = PeerAddress(hi: address.hi, lo: address.lo, port: p > 0 ? UInt16(p) : address.port)
        return fds.map { TunnelSocket(fd: $0, local: local, gro: gro && vn_udp_set_gro($0) == 0) }
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

/// Removes VM TAP devices whose port went while a VM still held them (a VM destroyed just
/// after its port): retried every second for two minutes on a thread of its own, so a device
/// goes once its last holder does and nothing waits for it.
final class VMTapReaper: @unchecked Sendable {
    static let shared = VMTapReaper()
    private let lock = NSLockLite()
    private var pending: [String: Int] = [:]
    private var running = false

    func remove(_ name: String) {
        let start: Bool = lock.withLock {
            pending[name] = 120
            defer { running = true }
            return !running
        }
        guard start else { return }
        let t = Thread { [self] in
            while true {
                sleep(1)
                let names = lock.withLock { Array(pending.keys) }
                for n in names {
                    let rc = vn_vmtap_remove(n)
                    lock.withLock {
                        if rc != -EBUSY { pending[n] = nil } else { pending[n, default: 1] -= 1; if pending[n]! <= 0 { pending[n] = nil } }
                    }
                }
                let done: Bool = lock.withLock { if pending.isEmpty { running = false; return true } else { return false } }
                if done { return }
            }
        }
        t.name = "vmtap-reaper"
        t.start()
    }
}

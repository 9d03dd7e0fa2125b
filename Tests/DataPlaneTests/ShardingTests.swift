import CNetShim
import Foundation
import TestSupport
import Testing
import SwitchCore
import SwitchDataPlane
import VIOLINProtocol

/// A VXLAN datagram (VNI 7) carrying an IPv4 segment of `proto` from `sport` to `dport`, its IP
/// header `options` words longer than 20 octets; or an IPv6 one; or an ARP request.
func steeringProbe(sport: UInt16, dport: UInt16, proto: UInt8 = 6, options: Int = 0, ipv6: Bool = false, arp: Bool = false) -> [UInt8] {
    var b: [UInt8] = [0x08, 0, 0, 0, 0, 0, 7, 0] + [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]
    let ports = [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF)] + [UInt8](repeating: 0, count: 16)
    if arp { return b + [0x08, 0x06] + [UInt8](repeating: 0, count: 28) }
    if ipv6 { return b + [0x86, 0xDD, 0x60, 0, 0, 0, 0, 20, proto, 64] + [UInt8](repeating: 0xFD, count: 32) + ports }
    b += [0x08, 0x00, 0x45 + UInt8(options), 0, 0, UInt8(40 + 4 * options), 0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
    return b + [UInt8](repeating: 1, count: 4 * options) + ports
}

/// A UDP socket of either family that sends datagrams to the group.
final class SteeringSender {
    let fd: Int32
    init(_ host: String) throws {
        let any = PeerAddress(host + ":0", allowAnyPort: true)!
        fd = vn_udp_open16(any.hi, any.lo, 0, 1 << 20)
        guard fd >= 0 else { throw LabError("udp open \(host)") }
    }
    deinit { _ = vn_close(fd) }
    func send(_ bytes: [UInt8], to: PeerAddress) { _ = vn_udp_send16(fd, bytes, bytes.count, to.hi, to.lo, to.port) }
}

/// Which of the group's sockets the next datagram reaches (within 2 s), read off it.
func socketReached(_ group: [TunnelSocket]) -> Int? {
    var fds = group.map(\.fd)
    var ready = [UInt8](repeating: 0, count: fds.count)
    guard vn_poll_readable(&fds, &ready, Int32(fds.count), 2000) > 0, let k = ready.firstIndex(where: { $0 != 0 }) else { return nil }
    var buf = [UInt8](repeating: 0, count: 2048)
    _ = vn_read(fds[k], &buf, buf.count)
    return k
}

extension UDPPortTests {
    /// The tunnel's sockets of a two-thread switch: the kernel steers a TCP or UDP flow (IPv4 with
    /// and without IP options, IPv6) and its replies to the same socket, whichever UDP source port
    /// each came from (a kernel vxlan peer picks one per flow); different flows spread over both
    /// sockets; frames without ports (ARP) go to the first.
    /// Over an IPv4 underlay and an IPv6 one.
    @Test(arguments: ["127.0.0.1", "[::1]"]) func theTunnelSteersAFlowAndItsRepliesToOneSocket(host: String) throws {
        let group = try TunnelSocket.group(bind: PeerAddress(host + ":0", allowAnyPort: true)!, gro: false, count: 2)
        #expect(group.count == 2 && group[0].local == group[1].local, "one address for both: \(group.map(\.local))")
        let a = try SteeringSender(host), b = try SteeringSender(host)
        var rng = SystemRandomNumberGenerator()
        var reached: [Int: Int] = [:]
        for i in 0..<48 {
            let sport = UInt16.random(in: 32_768...60_999, using: &rng), dport: UInt16 = i % 2 == 0 ? 5201 : .random(in: 1...65_535, using: &rng)
            let proto: UInt8 = i % 3 == 0 ? 17 : 6
            let shape = (options: i % 4 == 1 ? 3 : 0, ipv6: i % 4 == 3)
            a.send(steeringProbe(sport: sport, dport: dport, proto: proto, options: shape.options, ipv6: shape.ipv6), to: group[0].local)
            let there = try #require(socketReached(group), "flow \(i) reached no socket")
            b.send(steeringProbe(sport: dport, dport: sport, proto: proto, options: shape.options, ipv6: shape.ipv6), to: group[0].local)
            let back = try #require(socketReached(group), "reply \(i) reached no socket")
            #expect(there == back, "flow \(sport)->\(dport) (\(proto), \(shape)) on socket \(there), its reply on \(back)")
            reached[there, default: 0] += 1
        }
        #expect(reached.count == 2 && reached.values.allSatisfy { $0 >= 8 }, "48 flows spread over both sockets: \(reached)")
        for e in [a, b] {
            e.send(steeringProbe(sport: 0, dport: 0, arp: true), to: group[0].local)
            #expect(socketReached(group) == 0, "ARP on the first socket")
        }
    }

    /// Two forwarding threads over one in-memory network: the ports are read by the first, the
    /// second tunnel socket by the second. A MAC the second learns from a peer is known to the
    /// first: a VM's frame to it goes to that peer alone instead of being flooded to every peer.
    @Test func whatOneForwardingThreadLearnsTheOtherUses() throws {
        let net = MemoryNetwork()
        let here = PeerAddress("10.0.0.1:4789")!
        let tunnels = [TunnelSocket(memory: net, address: here), TunnelSocket(memory: net, address: here)]
        var options = Forwarder.Options(vni: 7)
        options.queues = 2
        let forwarder = Forwarder(options: options, tunnels: tunnels)
        forwarder.start()
        defer { forwarder.stop() }
        let controller = SwitchController(forwarder: forwarder)
        let vm1 = try controller.addMemory("vm1", network: net).fd
        let peerA = PeerAddress("10.0.0.2:4789")!, peerB = PeerAddress("10.0.0.3:4789")!
        controller.setPeers([peerA, peerB])
        let m1 = MAC("02:00:00:00:07:01")!, mA = MAC("02:00:00:00:07:0a")!
        func collect(_ fd: Int32, count: Int) throws -> [(to: PeerAddress?, bytes: [UInt8])] {
            var got: [(to: PeerAddress?, bytes: [UInt8])] = []
            _ = try eventually(deadline: 5) { got += net.take(fd); return got.count >= count }
            return got
        }
        net.inject(tunnels[1].fd, [0x08, 0, 0, 0, 0, 0, 7, 0] + frame(dst: .broadcast, src: mA, payload: "from-a"), from: peerA)
        #expect(try collect(vm1, count: 1).map { payloadText($0.bytes) } == ["from-a"])
        net.inject(vm1, frame(dst: mA, src: m1, payload: "to-a"))
        net.inject(vm1, frame(dst: .broadcast, src: m1, payload: "marker"))
        let sent = try collect(tunnels[0].fd, count: 3)
        #expect(sent.map { "\($0.to!)=\(payloadText(inner($0.bytes)))" }.sorted()
                == ["\(peerA)=marker", "\(peerA)=to-a", "\(peerB)=marker"], "the frame for mA was flooded")
        let threads = try #require(try controller.stats().threads)
        #expect(threads.map { $0["from_ports"] ?? -1 } == [2, 0] && threads.map { $0["from_peers"] ?? -1 } == [0, 1], "\(threads)")
    }
}

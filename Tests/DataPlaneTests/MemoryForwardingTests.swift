import Foundation
import TestSupport
import Testing
import SwitchCore
import SwitchDataPlane
import VIOLINProtocol

/// A switch whose ports and tunnel are a `MemoryNetwork`: no privileges, no devices, no
/// sockets. The forwarding thread runs as in production; only its reads and writes land in
/// memory. Part of the UDP port suite, which runs one test at a time.
final class MemorySwitch {
    let net = MemoryNetwork()
    let tunnel: TunnelSocket
    let forwarder: Forwarder
    let controller: SwitchController
    static let here = PeerAddress("10.0.0.1:4789")!

    init(vni: UInt32) {
        tunnel = TunnelSocket(memory: net, address: Self.here)
        forwarder = Forwarder(options: .init(vni: vni), tunnel: tunnel)
        forwarder.start()
        controller = SwitchController(forwarder: forwarder)
    }

    func stop() { forwarder.stop() }

    func port(_ name: String, vnet: Bool = false) throws -> Int32 { try controller.addMemory(name, network: net, vnet: vnet).fd }

    /// What arrives at `fd` (a port's frames, or the tunnel's datagrams with their peers) until
    /// `count` have come, within the deadline.
    func collect(_ fd: Int32, count: Int) throws -> [(to: PeerAddress?, bytes: [UInt8])] {
        var got: [(to: PeerAddress?, bytes: [UInt8])] = []
        _ = try eventually(deadline: 5) { got += net.take(fd); return got.count >= count }
        return got
    }
}

func inner(_ datagram: [UInt8]) -> [UInt8] { Array(datagram.dropFirst(8)) }
func payloadText(_ frame: [UInt8]) -> String { String(decoding: frame.dropFirst(14).prefix { $0 != 0 }, as: UTF8.self) }

extension UDPPortTests {
    /// Learning, the paper's flood rules, and drops by reason, all in memory.
    @Test func forwardingInMemory() throws {
        let sw = MemorySwitch(vni: 7)
        defer { sw.stop() }
        let vm1 = try sw.port("vm1"), vm2 = try sw.port("vm2")
        let peerA = PeerAddress("10.0.0.2:4789")!, peerB = PeerAddress("10.0.0.3:4789")!
        sw.controller.setPeers([peerA, peerB])
        let m1 = MAC("02:00:00:00:07:01")!, m2 = MAC("02:00:00:00:07:02")!, mA = MAC("02:00:00:00:07:0a")!
        func vx(_ f: [UInt8], vni: UInt8 = 7) -> [UInt8] { [0x08, 0, 0, 0, 0, 0, vni, 0] + f }

        // A broadcast from vm1: vm2 and both peers (VXLAN, VNI 7); vm1 is learned.
        sw.net.inject(vm1, frame(dst: .broadcast, src: m1, payload: "hello"))
        #expect(try sw.collect(vm2, count: 1).map { payloadText($0.bytes) } == ["hello"])
        let flooded = try sw.collect(sw.tunnel.fd, count: 2)
        #expect(Set(flooded.compactMap(\.to)) == [peerA, peerB] && flooded.allSatisfy { Array($0.bytes.prefix(8)) == [8, 0, 0, 0, 0, 0, 7, 0] })
        // vm2 to vm1: unicast to vm1 alone; a marker broadcast behind it shows the peers got nothing else.
        sw.net.inject(vm2, frame(dst: m1, src: m2, payload: "reply"))
        sw.net.inject(vm2, frame(dst: .broadcast, src: m2, payload: "marker"))
        #expect(try sw.collect(vm1, count: 2).map { payloadText($0.bytes) } == ["reply", "marker"])
        #expect(try sw.collect(sw.tunnel.fd, count: 2).map { payloadText(inner($0.bytes)) } == ["marker", "marker"])

        // From peer A: a broadcast reaches both VMs and never peer B; mA is learned behind A.
        sw.net.inject(sw.tunnel.fd, vx(frame(dst: .broadcast, src: mA, payload: "from-a")), from: peerA)
        #expect(try sw.collect(vm1, count: 1).map { payloadText($0.bytes) } == ["from-a"])
        #expect(try sw.collect(vm2, count: 1).map { payloadText($0.bytes) } == ["from-a"])
        sw.net.inject(vm1, frame(dst: mA, src: m1, payload: "to-a"))
        sw.net.inject(vm1, frame(dst: .broadcast, src: m1, payload: "marker-2"))
        let sent = try sw.collect(sw.tunnel.fd, count: 3)
        #expect(sent.map { "\($0.to!)=\(payloadText(inner($0.bytes)))" }.sorted()
                == ["\(peerA)=marker-2", "\(peerA)=to-a", "\(peerB)=marker-2"], "peer B got peer A's broadcast or the unicast for mA")
        _ = try sw.collect(vm2, count: 1)

        // Drops: a stranger, a wrong VNI, a short datagram, a multicast source.
        sw.net.inject(sw.tunnel.fd, vx(frame(dst: m1, src: mA, payload: "stranger")), from: PeerAddress("10.9.9.9:4789")!)
        sw.net.inject(sw.tunnel.fd, vx(frame(dst: m1, src: mA, payload: "wrong-vni"), vni: 8), from: peerA)
        sw.net.inject(sw.tunnel.fd, [8, 0, 0], from: peerA)
        sw.net.inject(vm2, frame(dst: m1, src: MAC("01:00:5e:00:00:01")!, payload: "bad-source"))
        sw.net.inject(sw.tunnel.fd, vx(frame(dst: m1, src: mA, payload: "marker-3")), from: peerA)
        #expect(try sw.collect(vm1, count: 1).map { payloadText($0.bytes) } == ["marker-3"], "a dropped frame reached vm1")
        let s = try sw.controller.stats()
        #expect(s.drops["unknown_peer"] == 1 && s.drops["wrong_vni"] == 1 && s.drops["malformed"] == 1 && s.drops["bad_source"] == 1, "\(s.drops)")
    }

    /// After a migration: late frames from a peer for the moved MAC go on to its new host
    /// during the grace period, counted.
    @Test func graceForwardingInMemory() throws {
        let sw = MemorySwitch(vni: 9)
        defer { sw.stop() }
        let vm = try sw.port("vm")
        let peerA = PeerAddress("10.0.0.2:4789")!, newHost = PeerAddress("10.0.0.3:4789")!
        sw.controller.setPeers([peerA, newHost])
        let mVM = MAC("02:00:00:00:09:01")!, mA = MAC("02:00:00:00:09:0a")!
        sw.net.inject(vm, frame(dst: .broadcast, src: mVM, payload: "i-am-here"))
        _ = try sw.collect(sw.tunnel.fd, count: 2)
        _ = try sw.controller.requests.call(SwitchAPI.RemovePort(name: "vm", forward: .init(mac: MACAddress(mVM.description)!, to: newHost.description, graceS: 30)))
        sw.net.inject(sw.tunnel.fd, [8, 0, 0, 0, 0, 0, 9, 0] + frame(dst: mVM, src: mA, payload: "late"), from: peerA)
        let forwarded = try sw.collect(sw.tunnel.fd, count: 1)
        #expect(forwarded.first?.to == newHost && payloadText(inner(forwarded.first?.bytes ?? [])) == "late")
        #expect(try sw.controller.stats().frames["grace_forwarded"] == 1)
    }

    /// A VM's TSO frame (virtio_net_hdr with GSO TCPv4, TCP checksum left partial) on a port
    /// with offloads: cut into MSS-sized VXLAN datagrams to the peer, full checksums, in order.
    @Test func tsoCutInMemory() throws {
        let sw = MemorySwitch(vni: 5)
        defer { sw.stop() }
        let vm = try sw.port("vm", vnet: true)
        let peer = PeerAddress("10.0.0.2:4789")!
        sw.controller.setPeers([peer])
        let mss = 1400
        let f = tsoFrame(dst: MAC("02:00:00:00:05:02")!, src: MAC("02:00:00:00:05:01")!, seq: 1_000, payload: 10 * mss + 123)
        var packet = [UInt8](repeating: 0, count: VirtioNetHeader.length) + f
        packet.withUnsafeMutableBytes {
            VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4, headerLength: 54,
                            gsoSize: UInt16(mss), checksumStart: 34, checksumOffset: 16).write(to: $0.baseAddress!)
        }
        sw.net.inject(vm, packet)
        let segments = try sw.collect(sw.tunnel.fd, count: 11).map { inner($0.bytes) }
        #expect(segments.count == 11)
        #expect(segments.allSatisfy(checksumsValid), "a segment with a wrong checksum")
        #expect(segments.map(tcpSequence) == (0..<11).map { 1_000 + UInt32($0 * mss) })
        #expect(segments.map { $0.count - 54 } == Array(repeating: mss, count: 10) + [123])
    }

    /// Consecutive TCP segments of one flow from a peer, read in one batch, reach a port with
    /// offloads as one large frame (a virtio_net_hdr with GSO TCPv4 and the flow's MSS): the
    /// segments' payload, in order, once.
    @Test func segmentsFromAPeerAreCoalescedInMemory() throws {
        let sw = MemorySwitch(vni: 6)
        defer { sw.stop() }
        let vm = try sw.port("vm", vnet: true)
        let peer = PeerAddress("10.0.0.2:4789")!
        sw.controller.setPeers([peer])
        let mVM = MAC("02:00:00:00:06:01")!, mR = MAC("02:00:00:00:06:0a")!
        // The VM's MAC is learned at its port first (the frame, with its virtio_net_hdr, floods to the peer).
        sw.net.inject(vm, [UInt8](repeating: 0, count: VirtioNetHeader.length) + frame(dst: .broadcast, src: mVM, payload: "hello"))
        _ = try sw.collect(sw.tunnel.fd, count: 1)
        let mss = 1000
        let segments = (0..<4).map { k in dataSegment(dst: mVM, src: mR, seq: 5_000 + UInt32(k * mss), payload: mss) }
        #expect(segments.allSatisfy(checksumsValid))
        sw.net.inject(sw.tunnel.fd, all: segments.map { [8, 0, 0, 0, 0, 0, 6, 0] + $0 }, from: peer)
        let written = try sw.collect(vm, count: 1)
        let total = written.reduce(0) { $0 + $1.bytes.count }
        #expect(written.count == 1, "\(written.count) writes for 4 segments (\(total) octets)")
        let merged = written[0].bytes
        let vh = merged.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) }
        #expect(vh.gsoType == VirtioNetHeader.gsoTCPv4 && Int(vh.gsoSize) == mss, "\(vh)")
        let payload = Array(merged.dropFirst(VirtioNetHeader.length + 54))
        #expect(payload == (0..<(4 * mss)).map { UInt8(truncatingIfNeeded: 5_000 + $0) }, "the segments' payload, in order (\(payload.count) octets)")
        #expect(try sw.controller.stats().frames["merged"] ?? 0 >= 1)
    }
}

/// A TCPv4 data segment (ACK only) of `payload` octets with valid IP and TCP checksums.
func dataSegment(dst: MAC, src: MAC, seq: UInt32, payload: Int) -> [UInt8] {
    var f = tsoFrame(dst: dst, src: src, seq: seq, payload: payload, flags: 0x10)
    f.withUnsafeMutableBytes { b in
        let p = b.baseAddress!
        Checksum.store(Checksum.pseudoIPv4(p + 14, protocol: 6, length: 20 + payload) &+ Checksum.add(p + 34, 20 + payload), at: p + 50)
    }
    return f
}

extension UDPPortTests {
    /// `trace_request` says what the switch then does with the same frame: for a learned
    /// destination, an unknown one, a broadcast from a port and one from a peer, and a drop —
    /// the copies that arrive, and the switch's own counters, match the trace.
    @Test func aTraceSaysWhatTheSwitchThenDoes() throws {
        let sw = MemorySwitch(vni: 7)
        defer { sw.stop() }
        let fds = ["vm1": try sw.port("vm1"), "vm2": try sw.port("vm2"), "vm3": try sw.port("vm3")]
        let peerA = PeerAddress("10.0.0.2:4789")!, peerB = PeerAddress("10.0.0.3:4789")!
        sw.controller.setPeers([peerA, peerB])
        let m1 = MAC("02:00:00:00:07:01")!, m2 = MAC("02:00:00:00:07:02")!, mA = MAC("02:00:00:00:07:0a")!, nobody = MAC("02:00:00:00:07:99")!
        var judged = 0

        /// Traces the frame, sends it, and checks that what arrived is what the trace said.
        func check(_ at: SwitchAPI.AddStatic.Location, src: MAC, dst: MAC, expect action: String, _ label: String) throws {
            let t = try sw.controller.requests.call(SwitchAPI.Trace(at: at, src: src.description, dst: dst.description))
            #expect(t.action == action, "\(label): \(t)")
            let ports = t.action == "port" ? [t.port!] : t.ports ?? []
            let peers = t.action == "peer" ? [t.peer!] : t.peers ?? []
            let before = try sw.controller.stats()
            let payload = "trace-\(judged)"
            switch at {
            case .port(let name): sw.net.inject(fds[name]!, frame(dst: dst, src: src, payload: payload))
            case .peer(let p): sw.net.inject(sw.tunnel.fd, [8, 0, 0, 0, 0, 0, 7, 0] + frame(dst: dst, src: src, payload: payload), from: PeerAddress(p)!)
            }
            for name in ports { #expect(try sw.collect(fds[name]!, count: 1).map { payloadText($0.bytes) } == [payload], "\(label): \(name)") }
            if !peers.isEmpty {
                let sent = try sw.collect(sw.tunnel.fd, count: peers.count)
                #expect(Set(sent.compactMap { $0.to?.description }) == Set(peers), "\(label): \(sent.map(\.to))")
            }
            if t.action == "drop" {
                _ = try eventually(deadline: 5) { (try sw.controller.stats().drops[t.reason!] ?? 0) > (before.drops[t.reason!] ?? 0) }
            }
            // Every copy the switch made is one the trace named.
            let after = try sw.controller.stats()
            #expect((after.frames["to_ports"] ?? 0) - (before.frames["to_ports"] ?? 0) == ports.count, "\(label): copies to ports")
            #expect((after.frames["to_peers"] ?? 0) - (before.frames["to_peers"] ?? 0) == peers.count, "\(label): copies to peers")
            if let reason = t.reason { #expect((after.drops[reason] ?? 0) - (before.drops[reason] ?? 0) == 1, "\(label): \(reason)") }
            judged += 1
        }
        try check(.port("vm1"), src: m1, dst: .broadcast, expect: "flood", "a broadcast from a port")
        try check(.port("vm2"), src: m2, dst: nobody, expect: "flood", "an unknown destination")
        try check(.port("vm2"), src: m2, dst: m1, expect: "port", "a learned destination")
        try check(.peer(peerA.description), src: mA, dst: .broadcast, expect: "flood", "a broadcast from a peer")
        try check(.port("vm1"), src: m1, dst: mA, expect: "peer", "a destination behind a peer")
        try check(.port("vm1"), src: m1, dst: m1, expect: "drop", "a frame to its own port")
        let learned = try sw.controller.requests.call(SwitchAPI.Trace(at: .port("vm3"), src: m2.description, dst: m1.description))
        #expect(learned.learned?.port == "vm1" && learned.why.contains { $0.contains("learned at") && $0.contains("vm1") }, "\(learned)")
        #expect(judged == 6)
    }
}

import CNetShim
import Foundation
import Testing
import SwitchCore
import SwitchDataPlane
import VIOLINProtocol

/// The paper's forwarding rules on a forwarder in this process, with no privileges and no
/// devices: "VMs" are loopback UDP endpoints behind QEMU-style UDP ports, "peers" are loopback
/// UDP sockets. Every check that something did not arrive is made with a marker sent behind
/// it on the same path (one path's frames keep their order), never with a wait. Part of the
/// UDP port suite, which runs one test at a time (one of its tests reads back the scheduling
/// of every forwarding thread in this process).
extension UDPPortTests {

    func vxlan(_ inner: [UInt8], vni: UInt32 = forwardingVNI) -> [UInt8] {
        [0x08, 0, 0, 0, UInt8(vni >> 16), UInt8(vni >> 8 & 0xFF), UInt8(vni & 0xFF), 0] + inner
    }

    /// The payload of the next frame at `e` (inside VXLAN when `tunnelled`).
    func payload(_ e: Endpoint, tunnelled: Bool = false) throws -> String {
        let bytes = try #require(e.receive(), "nothing arrived")
        let inner = tunnelled ? Array(bytes.dropFirst(8)) : bytes
        return String(decoding: inner.dropFirst(14).prefix { $0 != 0 }, as: UTF8.self)
    }

    /// One VM port and two peers: a peer's broadcast reaches the VM but never the other peer
    /// (split horizon); datagrams from strangers, with a wrong VNI or too short are dropped and
    /// counted by reason; a frame from a port with a multicast source is refused.
    @Test func peersGetNothingFromPeersAndStrangersAreDropped() throws {
        let sw = try LocalSwitch(vni: forwardingVNI)
        defer { sw.stop() }
        let vm = try Endpoint(), peerA = try Endpoint(), peerB = try Endpoint(), stranger = try Endpoint()
        let p = try sw.call("add_port", ["name": "vm", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(vm.address.description)])
        let port = try #require(PeerAddress(p["port"]?["local"]?.stringValue ?? ""))
        _ = try sw.call("set_peers", ["peers": [.string(peerA.address.description), .string(peerB.address.description)]])
        let mVM = MAC("02:00:00:00:02:01")!, mA = MAC("02:00:00:00:02:0a")!, mX = MAC("02:00:00:00:02:0f")!

        // From peer A, a broadcast: the VM gets it; peer B must not (the next thing B gets is
        // the VM's marker broadcast, which goes to both peers).
        peerA.send(vxlan(frame(dst: .broadcast, src: mA, payload: "from-a")), to: sw.tunnel.local)
        #expect(try payload(vm) == "from-a")
        vm.send(frame(dst: .broadcast, src: mVM, payload: "marker-1"), to: port)
        #expect(try payload(peerB, tunnelled: true) == "marker-1", "peer B got peer A's broadcast")
        #expect(try payload(peerA, tunnelled: true) == "marker-1")

        // A stranger's datagram, a wrong VNI and a short one: none reaches the VM.
        stranger.send(vxlan(frame(dst: mVM, src: mX, payload: "stranger")), to: sw.tunnel.local)
        peerA.send(vxlan(frame(dst: mVM, src: mA, payload: "wrong-vni"), vni: forwardingVNI + 1), to: sw.tunnel.local)
        peerA.send([0x08, 0, 0, 0], to: sw.tunnel.local)
        peerA.send(vxlan(frame(dst: mVM, src: mA, payload: "marker-2")), to: sw.tunnel.local)
        #expect(try payload(vm) == "marker-2", "a dropped datagram reached the VM")

        // A frame whose source is a multicast address is refused at the port.
        vm.send(frame(dst: .broadcast, src: MAC("01:00:5e:00:00:01")!, payload: "bad-source"), to: port)
        vm.send(frame(dst: .broadcast, src: mVM, payload: "marker-3"), to: port)
        #expect(try payload(peerA, tunnelled: true) == "marker-3", "a frame with a multicast source was forwarded")

        let stats = try SwitchAPI.StatsReply.decode(try sw.call("stats", [:]))
        #expect(stats.drops["unknown_peer"] == 1 && stats.drops["wrong_vni"] == 1 && stats.drops["malformed"] == 1, "\(stats.drops)")
        #expect(stats.drops["bad_source"] == 1, "\(stats.drops)")
        #expect(stats.frames["floods"] ?? 0 >= 2)
    }

    /// Learning: a MAC heard from peer A is sent to peer A alone; when the same MAC is heard
    /// at a local port (the VM moved here), frames for it stay local.
    @Test func learnedAddressesAreSentToWhereTheyWereHeard() throws {
        let sw = try LocalSwitch(vni: forwardingVNI)
        defer { sw.stop() }
        let vm = try Endpoint(), moved = try Endpoint(), peerA = try Endpoint(), peerB = try Endpoint()
        let p1 = try sw.call("add_port", ["name": "vm", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(vm.address.description)])
        let p2 = try sw.call("add_port", ["name": "moved", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(moved.address.description)])
        let port = try #require(PeerAddress(p1["port"]?["local"]?.stringValue ?? ""))
        let movedPort = try #require(PeerAddress(p2["port"]?["local"]?.stringValue ?? ""))
        _ = try sw.call("set_peers", ["peers": [.string(peerA.address.description), .string(peerB.address.description)]])
        let mVM = MAC("02:00:00:00:03:01")!, mR = MAC("02:00:00:00:03:0a")!

        peerA.send(vxlan(frame(dst: .broadcast, src: mR, payload: "hello")), to: sw.tunnel.local)
        #expect(try payload(vm) == "hello")
        #expect(try payload(moved) == "hello")
        // Unicast to mR: to peer A only. Peer B's next datagram must be the marker broadcast.
        vm.send(frame(dst: mR, src: mVM, payload: "to-r"), to: port)
        #expect(try payload(peerA, tunnelled: true) == "to-r")
        vm.send(frame(dst: .broadcast, src: mVM, payload: "marker-1"), to: port)
        #expect(try payload(peerB, tunnelled: true) == "marker-1", "peer B got a frame learned behind peer A")
        #expect(try payload(peerA, tunnelled: true) == "marker-1")
        _ = try payload(moved)

        // mR shows up on the local port "moved": frames for it now stay on this host.
        moved.send(frame(dst: .broadcast, src: mR, payload: "i-am-here"), to: movedPort)
        #expect(try payload(vm) == "i-am-here")
        _ = try payload(peerA, tunnelled: true); _ = try payload(peerB, tunnelled: true)
        vm.send(frame(dst: mR, src: mVM, payload: "now-local"), to: port)
        #expect(try payload(moved) == "now-local")
        vm.send(frame(dst: .broadcast, src: mVM, payload: "marker-2"), to: port)
        #expect(try payload(peerA, tunnelled: true) == "marker-2", "the frame for the moved MAC still went to peer A")
        let learned = try SwitchAPI.StatsReply.decode(try sw.call("stats", [:])).macTable
        #expect(learned["moved"] ?? 0 >= 1, "\(learned)")
    }
}

let forwardingVNI: UInt32 = 33

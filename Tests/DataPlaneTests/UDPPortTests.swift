import CNetShim
import Foundation
import ServiceKit
import TestSupport
import Testing
import SwitchCore
import SwitchDataPlane
import VIOLINProtocol

/// A UDP socket standing in for one QEMU (its UDP netdev) or one peer switch.
final class Endpoint {
    let fd: Int32
    let address: PeerAddress
    init(port: UInt16 = 0) throws {
        var lo: UInt32 = 0
        _ = vn_parse_ipv4("127.0.0.1", &lo)
        fd = vn_udp_open(lo, port, 1 << 20)
        guard fd >= 0 else { throw LabError("udp open") }
        address = PeerAddress(addressBE: lo, port: UInt16(vn_udp_local_port(fd)))
    }
    deinit { _ = vn_close(fd) }

    func send(_ bytes: [UInt8], to: PeerAddress) { _ = vn_udp_send(fd, bytes, bytes.count, to.addressBE, to.port) }

    /// The next datagram within `timeoutMs`, or nil.
    func receive(timeoutMs: Int32 = 2000) -> [UInt8]? {
        var ready: UInt8 = 0
        var f = fd
        guard vn_poll_readable(&f, &ready, 1, timeoutMs) > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: 65_536)
        let n = vn_read(fd, &buf, buf.count)
        return n > 0 ? Array(buf.prefix(Int(n))) : nil
    }
}

struct LabError: Error { let text: String; init(_ t: String) { text = t } }

func frame(dst: MAC, src: MAC, payload: String) -> [UInt8] {
    dst.octets + src.octets + [0x88, 0xB5] + Array(payload.utf8) + [UInt8](repeating: 0, count: 40)
}

/// A switch (forwarder and controller) in this process, its tunnel on loopback.
final class LocalSwitch {
    let tunnel: TunnelSocket
    let forwarder: Forwarder
    let controller: SwitchController
    private var factory = MessageFactory(sender: "test")

    init(vni: UInt32) throws {
        var lo: UInt32 = 0
        _ = vn_parse_ipv4("127.0.0.1", &lo)
        tunnel = try TunnelSocket(bind: PeerAddress(addressBE: lo, port: 0))
        forwarder = Forwarder(options: .init(vni: vni), tunnel: tunnel)
        forwarder.start()
        controller = SwitchController(forwarder: forwarder)
    }

    func stop() { forwarder.stop() }

    /// A request as the control socket would take it; nil for an unknown type.
    func handle(_ type: String, _ body: JSONValue) throws(ProtocolError) -> JSONValue? {
        try controller.handle(factory.request(type, body: body))
    }

    func call(_ type: String, _ body: JSONValue) throws -> JSONValue {
        try #require(try handle(type, body))
    }
}

// One test at a time: one test reads back the scheduling of every forwarding thread in this process.
@Suite(.serialized) struct UDPPortTests {
    /// Two "QEMU" UDP ports and one peer on a forwarder in this process: flooding, learning,
    /// unicast, VXLAN towards the peer, and the request interface, with no privileges.
    @Test func qemuUDPPortsAndAPeer() throws {
        let sw = try LocalSwitch(vni: 77)
        defer { sw.stop() }
        let tunnel = sw.tunnel
        let qemu1 = try Endpoint(), qemu2 = try Endpoint(), peer = try Endpoint()
        let call = sw.call
        #expect(sw.controller.requests.msgTypes == Set(SwitchAPI.requests.map { $0.msgType }), "a switch request without a handler")
        let p1 = try call("add_port", ["name": "vm1", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(qemu1.address.description)])
        let p2 = try call("add_port", ["name": "vm2", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(qemu2.address.description)])
        _ = try call("set_peers", ["peers": [.string(peer.address.description)]])
        let port1 = try #require(PeerAddress(p1["port"]?["local"]?.stringValue ?? ""))
        let port2 = try #require(PeerAddress(p2["port"]?["local"]?.stringValue ?? ""))
        let m1 = MAC("02:00:00:00:01:01")!, m2 = MAC("02:00:00:00:01:02")!

        // A broadcast from vm1 reaches vm2 and the peer (inside VXLAN, VNI 77).
        qemu1.send(frame(dst: .broadcast, src: m1, payload: "hello"), to: port1)
        let atVM2 = try #require(qemu2.receive())
        #expect(Array(atVM2.prefix(12)) == MAC.broadcast.octets + m1.octets)
        let atPeer = try #require(peer.receive())
        #expect(Array(atPeer.prefix(8)) == [0x08, 0, 0, 0, 0, 0, 77, 0])
        #expect(Array(atPeer.dropFirst(8)) == atVM2)

        // vm2 answers vm1 by unicast: only vm1 gets it (learned), the peer does not.
        qemu2.send(frame(dst: m1, src: m2, payload: "reply"), to: port2)
        let atVM1 = try #require(qemu1.receive())
        #expect(Array(atVM1.prefix(12)) == m1.octets + m2.octets)
        // Then a broadcast from vm2, which the peer must get: it must be the peer's next datagram
        // (one port's frames go out in order), so the unicast never went there.
        qemu2.send(frame(dst: .broadcast, src: m2, payload: "marker-1"), to: port2)
        #expect(try #require(peer.receive()).dropFirst(8).prefix(12) == ArraySlice(MAC.broadcast.octets + m2.octets),
                "the peer got the unicast for vm1")
        _ = try #require(qemu1.receive())   // the marker, at vm1

        // From the peer, for vm2: delivered to vm2 alone, never back to the mesh.
        let m3 = MAC("02:00:00:00:01:03")!
        var vx: [UInt8] = [0x08, 0, 0, 0, 0, 0, 77, 0] + frame(dst: m2, src: m3, payload: "from-peer")
        peer.send(vx, to: tunnel.local)
        #expect(try #require(qemu2.receive()).dropFirst(6).prefix(6) == ArraySlice(m3.octets))
        // The same with another VNI: dropped and counted.
        vx[6] = 78
        peer.send(vx, to: tunnel.local)
        // A good datagram behind it must be vm2's next frame.
        peer.send([0x08, 0, 0, 0, 0, 0, 77, 0] + frame(dst: m2, src: m3, payload: "marker-2"), to: tunnel.local)
        #expect(try #require(qemu2.receive()).dropFirst(14).prefix(8) == ArraySlice("marker-2".utf8), "the wrong VNI got through")

        let fdb = try call("fdb", [:])
        guard case .array(let entries)? = fdb["entries"] else { Issue.record("no entries"); return }
        let places = Dictionary(uniqueKeysWithValues: entries.map { ($0["mac"]?.stringValue ?? "", $0["port"]?.stringValue ?? $0["peer"]?.stringValue ?? "") })
        #expect(places[m1.description] == "vm1" && places[m2.description] == "vm2" && places[m3.description] == peer.address.description)
        let stats = try call("stats", [:])
        #expect(stats["drops"]?["wrong_vni"]?.intValue == 1)
        #expect(stats["ports"]?["vm1"]?["rx"]?.intValue == 1 && stats["ports"]?["vm2"]?["tx"]?.intValue == 3)

        // The same UDP port asked for again (a resend after a timeout) is the port there: no conflict, no second port.
        let again = try call("add_port", ["name": "vm1", "kind": "udp", "local": p1["port"]?["local"] ?? .null, "remote": .string(qemu1.address.description)])
        #expect(again["port"]?["local"] == p1["port"]?["local"], "\(again)")
        #expect(try call("ports", [:])["ports"]?.items.count == 2, "the port was added twice")
        // Bad requests get clear errors and change nothing.
        for (type, body, code) in [("add_port", ["name": "vm1", "kind": "udp", "local": "127.0.0.1:0", "remote": "127.0.0.1:9"] as JSONValue, ErrorCode.conflict),
                                   ("add_port", ["name": "x", "kind": "floppy"], .invalidBody),
                                   ("add_port", ["name": "y", "kind": "udp", "remote": "nowhere"], .invalidBody),
                                   ("remove_port", ["name": "nope"], .notFound),
                                   ("set_peers", ["peers": "10.0.0.1"], .invalidBody),
                                   ("add_static", ["mac": "ff:ff:ff:ff:ff:ff", "port": "vm1"], .invalidBody),
                                   ("add_static", ["mac": "02:00:00:00:00:09", "port": "nope"], .notFound)] {
            do { _ = try sw.handle(type, body); Issue.record("\(type) \(body) accepted") }
            catch { #expect(error.code == code, "\(type) \(body): \(error)") }
        }
        let ports = try call("ports", [:])
        if case .array(let list)? = ports["ports"] { #expect(list.count == 2) } else { Issue.record("no ports") }

        // A static entry sends vm9's frames to vm1 without learning.
        _ = try call("add_static", ["mac": "02:00:00:00:00:09", "port": "vm1"])
        qemu2.send(frame(dst: MAC("02:00:00:00:00:09")!, src: m2, payload: "to-static"), to: port2)
        #expect(try #require(qemu1.receive()).prefix(6) == ArraySlice(MAC("02:00:00:00:00:09")!.octets))
        qemu2.send(frame(dst: .broadcast, src: m2, payload: "marker-3"), to: port2)
        #expect(try #require(peer.receive()).dropFirst(8).prefix(6) == ArraySlice(MAC.broadcast.octets),
                "the frame for the static MAC went to the peer too")
        _ = try #require(qemu1.receive())
        _ = try call("remove_port", ["name": "vm1"])
        #expect(try call("ports", [:])["ports"]?.items.count == 1)

        // A VM arriving by migration: its port is added with its MAC, and the peers hear a
        // sequenced RARP announcement from it at once.
        let qemu3 = try Endpoint()
        let moved = MAC("02:00:00:00:01:07")!
        let added = try call("add_port", ["name": "vm3", "kind": "udp", "local": "127.0.0.1:0",
                                          "remote": .string(qemu3.address.description), "mac": .string(moved.description)])
        #expect(added["announced"]?["seq"]?.intValue == 1)
        let notice = try #require(peer.receive())
        #expect(Array(notice.prefix(8)) == [0x08, 0, 0, 0, 0, 0, 77, 0])
        #expect(Array(notice[8..<20]) == MAC.broadcast.octets + moved.octets && notice[20] == 0x80 && notice[21] == 0x35)
        #expect(Array(notice[50..<54]) == [0, 0, 0, 1], "sequence number")
        // The table already knows the VM is here: a frame for it goes straight to its port.
        qemu2.send(frame(dst: moved, src: m2, payload: "to-moved"), to: port2)
        #expect(try #require(qemu3.receive()).prefix(6) == ArraySlice(moved.octets))
        qemu2.send(frame(dst: .broadcast, src: m2, payload: "marker-4"), to: port2)
        #expect(try #require(peer.receive()).dropFirst(8).prefix(6) == ArraySlice(MAC.broadcast.octets),
                "the frame for the moved VM was flooded to the peer")
    }

    /// After a VM migrated away, frames for it that still arrive from a peer are sent on to its
    /// new host during the grace period (and dropped after it); the port's first and last frame
    /// times are kept for the blackout measurement, and the removal reports them.
    @Test func graceForwardingAfterAMigrationAndFrameTimes() throws {
        let sw = try LocalSwitch(vni: 5)
        defer { sw.stop() }
        let tunnel = sw.tunnel
        let qemu = try Endpoint(), other = try Endpoint(), newHost = try Endpoint()
        let call = sw.call
        let vm = MAC("02:00:00:00:05:01")!, far = MAC("02:00:00:00:05:02")!
        let p = try call("add_port", ["name": "vm", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(qemu.address.description)])
        let port = try #require(PeerAddress(p["port"]?["local"]?.stringValue ?? ""))
        _ = try call("set_peers", ["peers": [.string(other.address.description), .string(newHost.address.description)]])
        let before = wallClock()
        qemu.send(frame(dst: far, src: vm, payload: "first"), to: port)
        _ = other.receive(); _ = newHost.receive()       // flooded to both peers
        let stats = try call("stats", [:])
        let first = try #require(stats["ports"]?["vm"]?["first_rx_ms"]?.numberValue)
        #expect(first >= before - 1 && first <= wallClock() + 1, "first frame time \(first), test began \(before)")

        // The VM migrated to newHost: its port goes, with 1 s of forwarding to newHost.
        let removed = try call("remove_port", ["name": "vm", "mac": .string(vm.description),
                                               "forward_to": .string(newHost.address.description), "grace_s": 1])
        #expect(removed["last_rx_ms"]?.numberValue == first && removed["rx"]?.intValue == 1, "\(removed)")
        // A peer that has not heard yet sends a frame for the VM here: it goes on to newHost.
        let late: [UInt8] = [0x08, 0, 0, 0, 0, 0, 5, 0] + frame(dst: vm, src: far, payload: "late")
        other.send(late, to: tunnel.local)
        #expect(newHost.receive() == late, "not forwarded to the VM's new host")
        // A frame from another VM of this switch floods to both peers: `other`'s next datagram
        // must be that one, not the late frame sent back.
        let p2 = try call("add_port", ["name": "vm2", "kind": "udp", "local": "127.0.0.1:0", "remote": .string(qemu.address.description)])
        let port2 = try #require(PeerAddress(p2["port"]?["local"]?.stringValue ?? ""))
        qemu.send(frame(dst: .broadcast, src: MAC("02:00:00:00:05:03")!, payload: "marker-5"), to: port2)
        #expect(try #require(other.receive()).dropFirst(8).prefix(6) == ArraySlice(MAC.broadcast.octets),
                "the late frame went back to where it came from")
        _ = try #require(newHost.receive())
        #expect(try call("stats", [:])["frames"]?["grace_forwarded"]?.intValue == 1)
        // After the grace period the rule is the paper's again: nothing from a peer goes to a peer.
        // Each round: the late frame, then a broadcast from vm2 that reaches newHost anyway;
        // once the grace is over, the broadcast is the first thing newHost gets.
        #expect(eventually(deadline: 3) {
            other.send(late, to: tunnel.local)
            qemu.send(frame(dst: .broadcast, src: MAC("02:00:00:00:05:03")!, payload: "marker-6"), to: port2)
            _ = other.receive()
            var lateArrived = false
            while let d = newHost.receive() {
                if d == late { lateArrived = true; continue }
                break
            }
            return !lateArrived
        }, "frames from a peer still go to a peer after the grace period")
        // A bad forwarding request changes nothing.
        do {
            _ = try sw.handle("remove_port", ["name": "vm2", "mac": "ff:ff:ff:ff:ff:ff", "forward_to": "127.0.0.1:9"])
            Issue.record("a multicast MAC was accepted")
        } catch { #expect(error.code == .invalidBody) }
        #expect(try call("ports", [:])["ports"]?.items.count == 1)
    }

    /// A QEMU UDP port whose QEMU is not there yet: the switch's sends to it come back as
    /// ECONNREFUSED on the port's socket. That is passing — once QEMU is up, its frames flow.
    @Test func aQEMUPortWorksOnceQEMUIsThere() throws {
        let sw = try LocalSwitch(vni: 78)
        defer { sw.stop() }
        let peer = try Endpoint()
        let qemuPort = try Endpoint().address.port      // a free port, closed again at once
        let p = try sw.call("add_port", ["name": "vm1", "kind": "udp", "local": "127.0.0.1:0",
                                         "remote": .string("127.0.0.1:\(qemuPort)")])
        _ = try sw.call("set_peers", ["peers": [.string(peer.address.description)]])
        let port = try #require(PeerAddress(p["port"]?["local"]?.stringValue ?? ""))
        let m1 = MAC("02:00:00:00:02:01")!, m2 = MAC("02:00:00:00:02:02")!
        // Flooded towards the absent QEMU twice: the kernel answers with port unreachable.
        for _ in 0..<2 {
            peer.send([0x08, 0, 0, 0, 0, 0, 78, 0] + frame(dst: .broadcast, src: m2, payload: "anyone"), to: sw.tunnel.local)
        }
        #expect(eventually(deadline: 3) { (sw.forwarder.statistics()?.framesToPorts ?? 0) >= 1 })
        let qemu = try Endpoint(port: qemuPort)
        qemu.send(frame(dst: m2, src: m1, payload: "up now"), to: port)
        let atPeer = try #require(peer.receive())
        #expect(Array(atPeer.dropFirst(8).prefix(12)) == m2.octets + m1.octets)
        #expect(sw.forwarder.statistics()?.portFailures == 0)
    }

    /// A TAP deleted from outside while the switch holds it (its namespace went away, say):
    /// the port is counted as failed and no longer read, and the loop goes back to sleeping
    /// instead of spinning on the error the dead descriptor keeps reporting.
    @Test func aDeletedTAPIsDroppedNotSpunOn() throws {
        let sw = try LocalSwitch(vni: 9)
        defer { sw.stop() }
        let name = "vdead\(getpid() % 100_000)"
        _ = try sw.controller.addTAP(name)
        let status = try ChildProcess("/usr/sbin/ip", ["link", "del", name]).wait(timeout: 10)
        #expect(status == 0, "ip link del \(name): exit status \(String(describing: status))")
        let deadline = Date().addingTimeInterval(5)
        var stats = sw.forwarder.statistics()
        while stats?.portFailures != 1 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
            stats = sw.forwarder.statistics()
        }
        let failed = try #require(stats)
        #expect(failed.portFailures == 1)
        // Measured over half a second: an idle switch wakes a few times (its sweep timer, these
        // requests); one spinning on the dead descriptor would go round hundreds of thousands.
        Thread.sleep(forTimeInterval: 0.5)
        let later = try #require(sw.forwarder.statistics())
        #expect(later.batches - failed.batches < 20, "\(later.batches - failed.batches) wake-ups in 0.5 s")
    }

    /// (tid, nice, policy) of every thread of this process named violin-forward.
    private func forwardingThreads() -> [(tid: Int32, nice: Int, policy: Int)] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { tid in
            guard let id = Int32(tid),
                  let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == "violin-forward",
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // Fields after the command name start at field 3; nice is field 19, policy 41.
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 38, let nice = Int(f[16]), let policy = Int(f[38]) else { return nil }
            return (id, nice, policy)
        }
    }

    /// The forwarding thread runs under SCHED_BATCH at nice 10 by default (the host's own work
    /// wins the CPU when it is short), as read back from the kernel.
    @Test func forwardingThreadYieldsToTheHostsWork() throws {
        let sw = try LocalSwitch(vni: 11)
        defer { sw.stop() }
        // Every forwarding thread of this process (the suite runs one test at a time).
        let settled = eventually(deadline: 5) {
            let t = forwardingThreads()
            return !t.isEmpty && t.allSatisfy { $0.nice == 10 && $0.policy == 3 /* SCHED_BATCH */ }
        }
        #expect(settled, "\(forwardingThreads())")
        #expect(sw.forwarder.schedulingError() == nil)
    }

    /// For a busy host: SCHED_OTHER at nice 0 with a 100 us slice, as the kernel reports it for
    /// the forwarding thread.
    @Test func aShortSliceIsTheThreadsOwn() throws {
        var o = Forwarder.Options(vni: 13)
        o.batchScheduling = false
        o.niceness = 0
        o.sliceMicros = 100
        var lo: UInt32 = 0
        _ = vn_parse_ipv4("127.0.0.1", &lo)
        let f = Forwarder(options: o, tunnel: try TunnelSocket(bind: PeerAddress(addressBE: lo, port: 0)))
        f.start()
        defer { f.stop() }
        #expect(f.schedulingError() == nil)
        // A thread of a forwarder an earlier test stopped may take a moment to exit.
        var threads = forwardingThreads()
        #expect(eventually(deadline: 5) { threads = forwardingThreads(); return threads.count == 1 }, "\(threads)")
        for t in threads {
            #expect(t.nice == 0 && t.policy == 0 /* SCHED_OTHER */, "\(t)")
            #expect(vn_thread_slice_us(t.tid) == 100)
        }
        #expect(f.statistics() != nil, "the loop runs")
    }

    /// Scheduling the kernel refuses is reported by the forwarder, not passed over: the switch
    /// logs it. The thread still forwards.
    @Test(arguments: [(Int32(25), UInt32(0)), (0, 50), (0, 200_000)])
    func refusedSchedulingIsReported(nice: Int32, slice: UInt32) throws {
        var o = Forwarder.Options(vni: 12)
        o.niceness = nice
        o.sliceMicros = slice
        var lo: UInt32 = 0
        _ = vn_parse_ipv4("127.0.0.1", &lo)
        let f = Forwarder(options: o, tunnel: try TunnelSocket(bind: PeerAddress(addressBE: lo, port: 0)))
        f.start()
        defer { f.stop() }
        let error = f.schedulingError()
        #expect(error != nil && error!.contains("Invalid argument"), "\(String(describing: error))")
        #expect(f.statistics() != nil, "the loop runs")
    }
}

func wallClock() -> Double { Date().timeIntervalSince1970 * 1000 }

import Foundation
import TestSupport
import Testing
import VIOLINProtocol

/// A UDP socket on loopback standing in for a QEMU netdev or a peer switch.
final class LoopbackUDP {
    let fd: Int32
    let port: UInt16
    var address: String { "127.0.0.1:\(port)" }

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard s >= 0 else { throw LabError(description: "socket: errno \(errno)") }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { close(s); throw LabError(description: "bind: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        fd = s
        port = UInt16(bigEndian: a.sin_port)
    }
    deinit { close(fd) }

    func send(_ bytes: [UInt8], to address: String) {
        let parts = address.split(separator: ":")
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr(String(parts[0]))
        a.sin_port = UInt16(parts[1])!.bigEndian
        let sent = withUnsafePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(sent == bytes.count, "send to \(address): errno \(errno)")
    }

    /// The next datagram within `timeoutMs`, or nil.
    func receive(timeoutMs: Int32 = 3000) -> [UInt8]? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: 65_536)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? Array(buf.prefix(n)) : nil
    }
}

/// The control requests and drop reasons of a running `violin-switch`, and its `switch.*`
/// events on a real bus: UDP ports and peers on loopback, no privileges needed.
@Suite(.serialized) struct SwitchControlTests {
    static let vni: UInt8 = 42

    func mac(_ s: String) -> [UInt8] { s.split(separator: ":").map { UInt8($0, radix: 16)! } }
    func frame(dst: String, src: String, _ payload: String) -> [UInt8] {
        mac(dst) + mac(src) + [0x88, 0xB5] + Array(payload.utf8) + [UInt8](repeating: 0, count: 40)
    }
    func vxlan(_ inner: [UInt8]) -> [UInt8] { [0x08, 0, 0, 0, 0, 0, Self.vni, 0] + inner }

    @Test(.timeLimit(.minutes(2))) func peersStaticsDropsAndEvents() throws {
        let scratch = try Scratch("swctl")
        defer { scratch.cleanup() }
        let bus = try Spawned("violin-bus", ["--listen", scratch.ipc("bus"), "--publishers", scratch.ipc("pub"),
                                             "--subscribers", scratch.ipc("sub")])
        defer { bus.destroy() }
        let watch = try Spawned("violin", ["watch", "--bus", scratch.ipc("sub"), "switch.", "--timeout", "60"])
        defer { watch.destroy() }
        // The watcher's subscription has reached the bus before anything is published.
        #expect(eventually(deadline: 20) {
            (metricsCounter((try? run("violin", ["metrics", "--to", scratch.ipc("bus")]))?.out ?? "", "bus_subscriptions_forwarded") ?? 0) >= 1
        }, "the watcher did not subscribe")
        let control = scratch.ipc("sw")
        let sw = try Spawned("violin-switch", ["--vni", "\(Self.vni)", "--tunnel", "127.0.0.1:0", "--listen", control,
                                               "--bus", scratch.ipc("pub")])
        defer { sw.destroy() }
        func call(_ type: String, _ body: String) throws -> (status: Int32, out: JSONValue, err: String) {
            let r = try run("violin", ["call", control, type, body, "--timeout", "5"])
            return (r.status, (try? JSONText.parse(Array(r.out.utf8))) ?? .null, r.err)
        }
        #expect(eventually(deadline: 20) { (try? call("ping", "{}"))?.status == 0 }, "the switch answers")
        let tunnel = try #require(try switchStats(control)["tunnel"]?.stringValue)

        let qemu1 = try LoopbackUDP(), qemu2 = try LoopbackUDP(), peerA = try LoopbackUDP(), peerB = try LoopbackUDP()
        var portAddress: [String: String] = [:]
        for (name, q) in [("vm1", qemu1), ("vm2", qemu2)] {
            let r = try call("add_port", #"{"name":"\#(name)","kind":"udp","local":"127.0.0.1:0","remote":"\#(q.address)"}"#)
            try #require(r.status == 0, "add_port \(name): \(r.err)")
            portAddress[name] = try #require(r.out["port"]?["local"]?.stringValue)
        }
        let addedA = try call("add_peer", #"{"peer":"\#(peerA.address)"}"#)
        #expect(addedA.status == 0 && addedA.out["peers"] == [.string(peerA.address)], "\(addedA)")
        let addedB = try call("add_peer", #"{"peer":"\#(peerB.address)"}"#)
        #expect(addedB.out["peers"] == [.string(peerA.address), .string(peerB.address)], "\(addedB)")
        #expect(try call("add_peer", #"{"peer":"\#(peerB.address)"}"#).out["peers"]?.items.count == 2, "adding a peer twice keeps one")

        // bad_source: a multicast source address.
        qemu1.send(frame(dst: "ff:ff:ff:ff:ff:ff", src: "01:00:5e:00:00:01", "bad-source"), to: portAddress["vm1"]!)
        // vm1 speaks (learned at vm1, flooded to vm2 and both peers) ...
        let m1 = "02:42:00:00:00:01"
        qemu1.send(frame(dst: "ff:ff:ff:ff:ff:ff", src: m1, "hello"), to: portAddress["vm1"]!)
        for end in [qemu2, peerA, peerB] { #expect(end.receive() != nil, "the broadcast was flooded") }
        // ... then sends a frame for itself: same_port.
        qemu1.send(frame(dst: m1, src: "02:42:00:00:00:11", "same-port"), to: portAddress["vm1"]!)
        // A MAC learned behind peer A, then peer B sends a frame for it: misdirected.
        let behindA = "02:42:00:00:00:0a"
        peerA.send(vxlan(frame(dst: m1, src: behindA, "from-a")), to: tunnel)
        #expect(qemu1.receive() != nil, "peer A's frame reached vm1")
        peerB.send(vxlan(frame(dst: behindA, src: "02:42:00:00:00:0b", "misdirected")), to: tunnel)
        // A static entry towards peer B; then peer B goes, and its static entry and the MACs
        // learned behind it with it: a frame for one of those floods to the peers that remain.
        // (`no_route` only guards a frame decided against a table older than the port list.)
        let pinned = "02:42:00:00:00:99"
        #expect(try call("add_static", #"{"mac":"\#(pinned)","peer":"\#(peerB.address)"}"#).status == 0)
        let removed = try call("remove_peer", #"{"peer":"\#(peerB.address)"}"#)
        #expect(removed.status == 0 && removed.out["peers"] == [.string(peerA.address)], "\(removed)")
        qemu1.send(frame(dst: "02:42:00:00:00:0b", src: m1, "forgotten"), to: portAddress["vm1"]!)
        #expect(peerA.receive().map { String(decoding: $0.dropFirst(22).prefix(9), as: UTF8.self) } == "forgotten")
        #expect(qemu2.receive() != nil, "flooded to vm2 too")
        // A static entry to a port holds until removed; what is not there is reported as such.
        #expect(try call("add_static", #"{"mac":"02:42:00:00:00:77","port":"vm2"}"#).status == 0)
        #expect(try call("remove_static", #"{"mac":"02:42:00:00:00:77"}"#).status == 0)
        for (type, body) in [("remove_static", #"{"mac":"02:42:00:00:00:77"}"#), ("remove_static", #"{"mac":"\#(pinned)"}"#),
                             ("remove_peer", #"{"peer":"\#(peerB.address)"}"#),
                             ("add_static", #"{"mac":"02:42:00:00:00:98","peer":"\#(peerB.address)"}"#)] {
            let r = try call(type, body)
            #expect(r.status == 1 && r.err.contains("not_found"), "\(type) \(body): \(r.err)")
        }
        // Every frame above has been handled once a last one, behind them on vm1, arrives.
        qemu1.send(frame(dst: "ff:ff:ff:ff:ff:ff", src: m1, "last"), to: portAddress["vm1"]!)
        #expect(peerA.receive().map { String(decoding: $0.dropFirst(22).prefix(4), as: UTF8.self) } == "last")
        #expect(qemu2.receive().map { String(decoding: $0.dropFirst(14).prefix(4), as: UTF8.self) } == "last")
        let drops = try #require(try switchStats(control)["drops"])
        for reason in ["bad_source", "same_port", "misdirected"] {
            #expect(drops[reason]?.intValue == 1, "\(reason): \(drops)")
        }
        #expect(drops["no_route"]?.intValue == 0 && drops["unknown_peer"]?.intValue == 0, "\(drops)")
        // A VM that arrived by migration announces itself: each remaining peer hears a RARP
        // from its MAC with the next sequence number, and the table has the MAC at its port.
        let arrived = "02:42:00:00:00:a1"
        let announced = try call("announce", #"{"port":"vm2","mac":"\#(arrived)"}"#)
        #expect(announced.status == 0 && announced.out["announced"]?["seq"]?.intValue == 1, "\(announced)")
        let rarp = try #require(peerA.receive(), "no announcement at peer A")
        #expect(Array(rarp[8..<20]) == mac("ff:ff:ff:ff:ff:ff") + mac(arrived) && rarp[20] == 0x80 && rarp[21] == 0x35, "\(rarp.prefix(24))")
        qemu1.send(frame(dst: arrived, src: m1, "to-arrived"), to: portAddress["vm1"]!)
        #expect(qemu2.receive().map { Array($0.prefix(6)) } == mac(arrived), "the announced MAC is at vm2")
        let second = try call("announce", #"{"port":"vm2","mac":"\#(arrived)"}"#)
        #expect(second.out["announced"]?["seq"]?.intValue == 2, "\(second)")
        _ = peerA.receive()
        for body in [#"{"port":"nope","mac":"\#(arrived)"}"#, #"{"port":"vm2","mac":"ff:ff:ff:ff:ff:ff"}"#] {
            let r = try call("announce", body)
            #expect(r.status == 1 && (r.err.contains("not_found") || r.err.contains("invalid_body")), "announce \(body): \(r.err)")
        }
        #expect(try call("remove_port", #"{"name":"vm2"}"#).status == 0)

        // The bus carried each change, in order.
        var seen: [String] = []
        let all = watch.waitForLine(timeout: 20) { line in
            guard let v = try? JSONText.parse(Array(line.utf8)), let topic = v["topic"]?.stringValue else { return false }
            let b = v["body"] ?? .null
            switch topic {
            case "switch.port_added": seen.append("added \(b["port"]?["name"]?.stringValue ?? "?")")
            case "switch.port_removed": seen.append("removed \(b["name"]?.stringValue ?? "?")")
            case "switch.peers_changed": seen.append("peers \(b["peers"]?.items.count ?? -1)")
            default: return false
            }
            #expect(b["vni"]?.intValue == Int(Self.vni), "\(line)")
            return topic == "switch.port_removed"
        }
        #expect(all != nil && seen == ["added vm1", "added vm2", "peers 1", "peers 2", "peers 1", "removed vm2"], "\(seen)")
    }
}

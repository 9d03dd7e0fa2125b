import CNetShim
import Foundation
import Glibc
import TestSupport
import Testing
import SwitchCore
import SwitchDataPlane

/// A TCPv4 frame of `payload` octets (a counting pattern from `seq`), with a valid IP checksum;
/// its TCP checksum is left for the segmenter, as the kernel leaves it with NEEDS_CSUM.
func tsoFrame(dst: MAC, src: MAC, seq: UInt32, payload: Int, flags: UInt8 = 0x18) -> [UInt8] {
    var f = dst.octets + src.octets + [0x08, 0x00]
    let total = 20 + 20 + payload
    f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]
    f += [0x9C, 0x40, 0x14, 0x51] + withUnsafeBytes(of: seq.bigEndian, Array.init) + [0, 0, 0, 1, 0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]
    f += (0..<payload).map { UInt8(truncatingIfNeeded: Int(seq) &+ $0) }
    f.withUnsafeMutableBytes { Checksum.store(Checksum.add($0.baseAddress! + 14, 20), at: $0.baseAddress! + 24) }
    return f
}

/// A packet socket on interface `name` that hands frames with a virtio_net_hdr to the device
/// for transmission: a GSO frame sent here reaches a TAP's reader whole, as a VM's TSO frame.
private final class Injector {
    let fd: Int32
    init(_ name: String) throws {
        // From <linux/if_packet.h> and <linux/if_ether.h>, which Glibc's module does not carry.
        let ethAll = UInt16(0x0003).bigEndian, solPacket: Int32 = 263, packetVnetHdr: Int32 = 15
        fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(ethAll))
        guard fd >= 0 else { throw LabError("AF_PACKET socket: errno \(errno)") }
        var on: Int32 = 1
        guard setsockopt(fd, solPacket, packetVnetHdr, &on, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw LabError("PACKET_VNET_HDR: errno \(errno)")
        }
        // struct sockaddr_ll: family, protocol (network order), ifindex, then 12 octets unused here.
        let index = Int32(if_nametoindex(name))
        var sll = [UInt8](repeating: 0, count: 20)
        sll.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt16(AF_PACKET), toByteOffset: 0, as: UInt16.self)
            b.storeBytes(of: ethAll, toByteOffset: 2, as: UInt16.self)
            b.storeBytes(of: index, toByteOffset: 4, as: Int32.self)
        }
        let rc = sll.withUnsafeBytes { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        guard index > 0, rc == 0 else { throw LabError("bind to \(name): errno \(errno)") }
    }
    deinit { close(fd) }

    /// Sends `frame` as one TSO frame of `mss`-octet segments.
    func sendTSO(_ frame: [UInt8], mss: Int) throws {
        var packet = [UInt8](repeating: 0, count: VirtioNetHeader.length) + frame
        packet.withUnsafeMutableBytes {
            VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4, headerLength: 54,
                            gsoSize: UInt16(mss), checksumStart: 34, checksumOffset: 16).write(to: $0.baseAddress!)
        }
        let sent = send(fd, packet, packet.count, 0)
        guard sent == packet.count else { throw LabError("send: \(sent), errno \(errno)") }
    }
}

/// The TCP segments of VNI `vni` that `endpoint` receives, as inner frames, until `count` have
/// come or nothing more comes within the timeout. Other traffic (the TAP's own IPv6 chatter,
/// flooded like any unknown frame) is passed over.
private func segments(at endpoint: Endpoint, vni: UInt8, count: Int, timeoutMs: Int32 = 2000) -> [[UInt8]] {
    var got: [[UInt8]] = []
    while got.count < count, let d = endpoint.receive(timeoutMs: timeoutMs) {
        guard d.count > 8 + 54, d[6] == vni, d[20] == 0x08, d[21] == 0x00, d[31] == 6 else { continue }
        got.append(Array(d.dropFirst(8)))
    }
    return got
}

func checksumsValid(_ f: [UInt8]) -> Bool {
    f.withUnsafeBytes { b in
        let p = b.baseAddress!
        let tcpLength = f.count - 34
        return Checksum.fold(Checksum.add(p + 14, 20)) == 0xFFFF
            && Checksum.fold(Checksum.pseudoIPv4(p + 14, protocol: 6, length: tcpLength) &+ Checksum.add(p + 34, tcpLength)) == 0xFFFF
    }
}

func tcpSequence(_ f: [UInt8]) -> UInt32 {
    UInt32(f[38]) << 24 | UInt32(f[39]) << 16 | UInt32(f[40]) << 8 | UInt32(f[41])
}

/// Where two sequences first differ (nil if they are equal): a short failure message instead of
/// two 100 KB arrays.
private func firstDifference<T: Equatable>(_ a: [T], _ b: [T]) -> String? {
    if a == b { return nil }
    let i = a.indices.first { $0 >= b.count || a[$0] != b[$0] } ?? a.count
    return "differ at \(i) of \(a.count) / \(b.count)" + (i < min(a.count, b.count) ? ": \(a[i]) vs \(b[i])" : "")
}

extension UDPPortTests {
    /// TSO frames from a TAP (the kernel's own GSO frames, injected on the device) are cut into
    /// VXLAN datagrams with full checksums: flooded to every peer while the destination is
    /// unknown, then to its peer alone — consecutive frames sharing sends, a short last segment
    /// ending them — and the segments carry exactly the frames' payload, in order.
    @Test func tsoFramesAreCutForEveryPeerAndInOrder() throws {
        let sw = try LocalSwitch(vni: 41)
        defer { sw.stop() }
        let name = "vtso\(getpid() % 100_000)"
        _ = try sw.controller.addTAP(name)
        let peerA = try Endpoint(), peerB = try Endpoint()
        _ = try sw.call("set_peers", ["peers": [.string(peerA.address.description), .string(peerB.address.description)]])
        let injector = try Injector(name)
        let vm = MAC("02:00:00:00:41:01")!, far = MAC("02:00:00:00:41:02")!
        let mss = 1398
        let before = try #require(sw.forwarder.statistics())

        // Unknown destination: one 29-segment frame (the last short) to both peers.
        let flooded = tsoFrame(dst: far, src: vm, seq: 1_000, payload: 40_000)
        try injector.sendTSO(flooded, mss: mss)
        for peer in [peerA, peerB] {
            let got = segments(at: peer, vni: 41, count: 29)
            #expect(got.count == 29)
            #expect(got.indices.first { !checksumsValid(got[$0]) } == nil, "segment with a bad checksum")
            #expect(firstDifference(got.map(tcpSequence), (0..<29).map { 1_000 + UInt32($0 * mss) }) == nil, "sequence numbers")
            #expect(firstDifference(got.flatMap { $0.dropFirst(54) }, Array(flooded.dropFirst(54))) == nil, "payload")
        }

        // The destination is learned behind peer A: four frames go to peer A alone, one
        // contiguous byte stream. 46 full segments (two wait for the next frame), 46 full, 30 full
        // of another MSS (the waiting ones go alone: one train, one datagram size), then 29 with
        // a short last one (which sends everything).
        peerA.send([0x08, 0, 0, 0, 0, 0, 41, 0] + frame(dst: vm, src: far, payload: "here"), to: sw.tunnel.local)
        #expect(eventually(deadline: 2) { sw.forwarder.fdb()?.contains { $0.mac == far } == true },
                "learned behind peer A")
        let plan: [(payload: Int, mss: Int)] = [(46 * mss, mss), (46 * mss, mss), (30 * 1_000, 1_000), (40_000, mss)]
        var frames: [[UInt8]] = [], expectedSeq: [UInt32] = [], expectedFlags: [UInt8] = []
        var seq: UInt32 = 41_000
        for (payload, m) in plan {
            frames.append(tsoFrame(dst: far, src: vm, seq: seq, payload: payload))
            let count = (payload + m - 1) / m
            expectedSeq += (0..<count).map { seq + UInt32($0 * m) }
            expectedFlags += (0..<count).map { $0 == count - 1 ? 0x18 : 0x10 }   // PSH on the last only
            seq += UInt32(payload)
        }
        for (f, p) in zip(frames, plan) { try injector.sendTSO(f, mss: p.mss) }
        let got = segments(at: peerA, vni: 41, count: expectedSeq.count)
        #expect(got.count == 151)
        #expect(got.indices.first { !checksumsValid(got[$0]) } == nil, "segment with a bad checksum")
        #expect(firstDifference(got.map(tcpSequence), expectedSeq) == nil, "sequence numbers")
        #expect(firstDifference(got.flatMap { $0.dropFirst(54) }, frames.flatMap { $0.dropFirst(54) }) == nil, "payload")
        #expect(firstDifference(got.map { $0[47] }, expectedFlags) == nil, "PSH on each frame's last segment only")
        // Then a frame for an unknown MAC, flooded: its segments must be the first peer B gets,
        // so none of the frames for `far` went there.
        let stranger = MAC("02:00:00:00:41:09")!
        try injector.sendTSO(tsoFrame(dst: stranger, src: vm, seq: 900_000, payload: 2 * mss), mss: mss)
        let atB = segments(at: peerB, vni: 41, count: 2)
        #expect(atB.count == 2 && atB.allSatisfy { Array($0.prefix(6)) == stranger.octets },
                "peer B got segments meant for peer A alone: \(atB.map { Array($0.prefix(6)) })")
        #expect(segments(at: peerA, vni: 41, count: 2).count == 2)

        // They came as TSO frames (five reads, not 180), cut by the switch.
        let after = try #require(sw.forwarder.statistics())
        let read = after.framesFromPorts - before.framesFromPorts
        #expect(read >= 5 && read < 20, "\(read) frames read from the TAP")
        #expect(after.dropsTotal == before.dropsTotal)
    }
}

import ArgumentParser
import CNetShim
import Foundation
import SwitchCore
import SwitchDataPlane

extension Bench {
    /// A fixed forwarding workload for instruction counts (run under callgrind) and a rough
    /// rate: a forwarder in this process, its tunnel and one QEMU-style UDP port on loopback;
    /// `--frames` frames from the "VM" to a MAC behind the one peer, each counted on arrival.
    /// No privileges needed. `valgrind --tool=callgrind --separate-threads=yes violin bench
    /// forward` gives the forwarding thread's instructions; divided by --frames, per frame.
    struct Forward: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Frames through an in-process switch over loopback UDP (a fixed workload for callgrind).")
        @Option(help: "Frames to forward.") var frames = 20_000
        @Option(help: "Payload octets per frame.") var size = 64

        func run() throws {
            var lo: UInt32 = 0
            _ = vn_parse_ipv4("127.0.0.1", &lo)
            let vm = vn_udp_open(lo, 0, 8 << 20), peer = vn_udp_open(lo, 0, 8 << 20)
            guard vm >= 0, peer >= 0 else { throw fail("cannot open loopback UDP sockets", code: 1) }
            defer { _ = vn_close(vm); _ = vn_close(peer) }
            let vmAddress = PeerAddress(addressBE: lo, port: UInt16(vn_udp_local_port(vm)))
            let peerAddress = PeerAddress(addressBE: lo, port: UInt16(vn_udp_local_port(peer)))
            let tunnel = try TunnelSocket(bind: PeerAddress(addressBE: lo, port: 0), gro: false)
            let forwarder = Forwarder(options: .init(vni: 42), tunnel: tunnel)
            forwarder.start()
            defer { forwarder.stop() }
            let controller = SwitchController(forwarder: forwarder)
            let port = try controller.addUDP("vm", local: PeerAddress(addressBE: lo, port: 0), remote: vmAddress)
            guard case .udp(let portAddress, _) = port.kind else { throw fail("no UDP port", code: 1) }
            controller.setPeers([peerAddress])
            // The destination is learned behind the peer first: every frame is then a unicast.
            let dst = MAC("02:00:00:00:00:02")!, src = MAC("02:00:00:00:00:01")!
            let hello = [UInt8]([8, 0, 0, 0, 0, 0, 42, 0]) + dst.octets + src.octets + [0x88, 0xB5] + [UInt8](repeating: 0, count: 46)
            _ = vn_udp_send(peer, hello, hello.count, tunnel.local.addressBE, tunnel.local.port)
            var buf = [UInt8](repeating: 0, count: 65_536)
            var f = peer
            var ready: UInt8 = 0
            var v = vm
            _ = vn_poll_readable(&v, &ready, 1, 2000)
            _ = vn_read(vm, &buf, buf.count)
            let frame = dst.octets + src.octets + [0x88, 0xB5] + [UInt8](repeating: 0xAB, count: max(46, size))
            var received = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            var sent = 0
            while received < frames {
                // Keep at most 256 in flight: loopback drops nothing then.
                while sent < frames && sent - received < 256 {
                    _ = vn_udp_send(vm, frame, frame.count, portAddress.addressBE, portAddress.port)
                    sent += 1
                }
                guard vn_poll_readable(&f, &ready, 1, 2000) > 0 else { break }
                while vn_read(peer, &buf, buf.count) > 0 { received += 1 }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            print(String(format: "forward_frames %d of %d in %.2f s (%.0f frames/s)", received, frames, seconds, Double(received) / seconds))
        }
    }
}

import CNetShim
import Foundation
import Primitives
import SwitchCore

/// Every read and write of the forwarder's ports and tunnel, in batches where the system has
/// them: the system's calls (TAP and UDP descriptors, recvmmsg/sendmmsg, UDP GSO), or — for
/// tests without privileges or devices — a `MemoryNetwork`. The choice is made once; each call
/// is inlined into the forwarding loop, and costs it one predictable branch.
struct NetIO {
    let memory: MemoryNetwork?

    @inline(__always) func read(_ fd: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ len: Int) -> Int32 {
        if let m = memory { return m.read(fd, buf, len) }
        return vn_read(fd, buf, len)
    }

    @inline(__always) func write(_ fd: Int32, _ buf: UnsafePointer<UInt8>, _ len: Int) -> Int32 {
        if let m = memory { return m.write(fd, buf, len) }
        return vn_write(fd, buf, len)
    }

    /// A virtio_net_hdr and a frame, as one packet.
    @inline(__always) func write(_ fd: Int32, header: UnsafePointer<UInt8>, _ hlen: Int, frame: UnsafePointer<UInt8>, _ len: Int) -> Int32 {
        if let m = memory { return m.write(fd, header, hlen, frame, len) }
        return vn_writev2(fd, header, hlen, frame, len)
    }

    /// Pieces gathered into one packet.
    @inline(__always) func write(_ fd: Int32, gather ptrs: UnsafePointer<UnsafePointer<UInt8>?>, _ lens: UnsafePointer<Int>, _ count: Int32) -> Int32 {
        if let m = memory { return m.write(fd, gather: ptrs, lens, count) }
        return vn_writev(fd, ptrs, lens, count)
    }

    @inline(__always) func send(_ fd: Int32, _ data: UnsafePointer<UInt8>, _ len: Int, to peer: PeerAddress) -> Int32 {
        if let m = memory { return m.send(fd, data, len, to: peer, segment: 0) }
        return vn_udp_send16(fd, data, len, peer.hi, peer.lo, peer.port)
    }

    /// One buffer as datagrams of `segment` octets (one datagram when `segment` is 0).
    @inline(__always) func send(_ fd: Int32, _ buf: UnsafePointer<UInt8>, _ len: Int, to peer: PeerAddress, segment: UInt16) -> Int32 {
        if let m = memory { return m.send(fd, buf, len, to: peer, segment: segment) }
        return vn_udp_send_gso16(fd, buf, len, peer.hi, peer.lo, peer.port, segment, 50)
    }

    /// Datagrams of `segment` octets from pieces gathered into one buffer.
    @inline(__always) func send(_ fd: Int32, gather ptrs: UnsafePointer<UnsafePointer<UInt8>?>, _ lens: UnsafePointer<Int>, _ count: Int32,
                                to peer: PeerAddress, segment: UInt16) -> Int32 {
        if let m = memory { return m.send(fd, gather: ptrs, lens, count, to: peer, segment: segment) }
        return vn_udp_send_gather16(fd, ptrs, lens, count, peer.hi, peer.lo, peer.port, segment, 50)
    }

    /// Fills `rx` with what waits; how many.
    @inline(__always) func receive(_ fd: Int32, _ rx: OpaquePointer) -> Int32 {
        if let m = memory { return m.receive(fd, rx) }
        return vn_udp_recv_batch(fd, rx)
    }

    /// The first `count` slots of `tx`; how many left.
    @inline(__always) func send(_ fd: Int32, batch tx: OpaquePointer, _ count: Int32) -> Int32 {
        if let m = memory { return m.send(fd, batch: tx, count) }
        return vn_udp_send_batch(fd, tx, count, 50)
    }

}

/// A network in memory: ports and tunnels whose frames and datagrams wait in queues, each with
/// an eventfd that is readable while something waits (so the forwarder's epoll loop runs as
/// it does on real descriptors). The test side injects and collects; the switch side is what
/// `NetIO` calls.
public final class MemoryNetwork: @unchecked Sendable {
    final class Endpoint {
        let ready = Waker()
        var inbox: [(from: PeerAddress?, bytes: [UInt8])] = []
        var outbox: [(to: PeerAddress?, bytes: [UInt8])] = []
    }
    private let lock = NSLock()
    private var endpoints: [Int32: Endpoint] = [:]

    public init() {}

    /// A new endpoint (a port or a tunnel); its descriptor is its eventfd.
    func open() -> Int32 {
        let e = Endpoint()
        lock.withLock { endpoints[e.ready.readFD] = e }
        return e.ready.readFD
    }

    func close(_ fd: Int32) { lock.withLock { _ = endpoints.removeValue(forKey: fd) } }

    // MARK: The test's side

    /// A frame arriving at a port from its VM, or a datagram at a tunnel from `from`.
    public func inject(_ fd: Int32, _ bytes: [UInt8], from: PeerAddress? = nil) { inject(fd, all: [bytes], from: from) }

    /// Several at once: the switch finds them all waiting (one batch, when they fit in one).
    public func inject(_ fd: Int32, all: [[UInt8]], from: PeerAddress? = nil) {
        lock.withLock {
            guard let e = endpoints[fd] else { return }
            e.inbox += all.map { (from, $0) }
            e.ready.wake()
        }
    }

    /// What the switch wrote to a port, or sent from a tunnel (with where to), oldest first;
    /// taken.
    public func take(_ fd: Int32) -> [(to: PeerAddress?, bytes: [UInt8])] {
        lock.withLock {
            guard let e = endpoints[fd] else { return [] }
            defer { e.outbox.removeAll() }
            return e.outbox
        }
    }

    // MARK: The switch's side

    // Entry points with the system calls' own arguments, kept out of the forwarding loop.

    @inline(never) func write(_ fd: Int32, _ buf: UnsafePointer<UInt8>, _ len: Int) -> Int32 {
        write(fd, [(UnsafeRawPointer(buf), len)])
    }

    @inline(never) func write(_ fd: Int32, _ header: UnsafePointer<UInt8>, _ hlen: Int, _ frame: UnsafePointer<UInt8>, _ len: Int) -> Int32 {
        write(fd, [(UnsafeRawPointer(header), hlen), (UnsafeRawPointer(frame), len)])
    }

    @inline(never) func write(_ fd: Int32, gather ptrs: UnsafePointer<UnsafePointer<UInt8>?>, _ lens: UnsafePointer<Int>, _ count: Int32) -> Int32 {
        write(fd, (0..<Int(count)).map { (UnsafeRawPointer(ptrs[$0]!), lens[$0]) })
    }

    /// Datagrams of `segment` octets cut from one buffer (one datagram when `segment` is 0).
    @inline(never) func send(_ fd: Int32, _ buf: UnsafePointer<UInt8>, _ len: Int, to peer: PeerAddress, segment: UInt16) -> Int32 {
        let step = segment == 0 ? len : Int(segment)
        return send(fd, stride(from: 0, to: len, by: max(1, step)).map { (UnsafeRawPointer(buf + $0), min(step, len - $0)) }, to: peer)
    }

    @inline(never) func send(_ fd: Int32, gather ptrs: UnsafePointer<UnsafePointer<UInt8>?>, _ lens: UnsafePointer<Int>, _ count: Int32,
                             to peer: PeerAddress, segment: UInt16) -> Int32 {
        var joined: [UInt8] = []
        for i in 0..<Int(count) { joined += UnsafeBufferPointer(start: ptrs[i]!, count: lens[i]) }
        return joined.withUnsafeBufferPointer { send(fd, $0.baseAddress!, joined.count, to: peer, segment: segment) }
    }

    @inline(never) func read(_ fd: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ len: Int) -> Int32 {
        lock.withLock {
            guard let e = endpoints[fd] else { return -EBADF }
            guard !e.inbox.isEmpty else { e.ready.drain(); return -EAGAIN }
            let item = e.inbox.removeFirst()
            if e.inbox.isEmpty { e.ready.drain() }
            let n = min(len, item.bytes.count)
            item.bytes.withUnsafeBufferPointer { buf.update(from: $0.baseAddress!, count: n) }
            return Int32(n)
        }
    }

    func write(_ fd: Int32, _ pieces: [(UnsafeRawPointer, Int)]) -> Int32 {
        var bytes: [UInt8] = []
        for (p, n) in pieces { bytes += UnsafeRawBufferPointer(start: p, count: n) }
        return lock.withLock {
            guard let e = endpoints[fd] else { return -EBADF }
            e.outbox.append((nil, bytes))
            return Int32(bytes.count)
        }
    }

    func send(_ fd: Int32, _ datagrams: [(UnsafeRawPointer, Int)], to peer: PeerAddress) -> Int32 {
        lock.withLock {
            guard let e = endpoints[fd] else { return -EBADF }
            for (p, n) in datagrams { e.outbox.append((peer, Array(UnsafeRawBufferPointer(start: p, count: n)))) }
            return Int32(datagrams.reduce(0) { $0 + $1.1 })
        }
    }

    @inline(never) func receive(_ fd: Int32, _ rx: OpaquePointer) -> Int32 {
        lock.withLock {
            guard let e = endpoints[fd] else { return -EBADF }
            var i: Int32 = 0
            while i < vn_batch_capacity(rx), !e.inbox.isEmpty {
                let item = e.inbox.removeFirst()
                item.bytes.withUnsafeBufferPointer { vn_batch_buffer(rx, i)!.update(from: $0.baseAddress!, count: $0.count) }
                vn_batch_set_recv16(rx, i, Int32(item.bytes.count), item.from?.hi ?? 0, item.from?.lo ?? PeerAddress(addressBE: 0, port: 0).lo, item.from?.port ?? 0)
                i += 1
            }
            if e.inbox.isEmpty { e.ready.drain() }
            return i
        }
    }

    @inline(never) func send(_ fd: Int32, batch tx: OpaquePointer, _ count: Int32) -> Int32 {
        lock.withLock {
            guard let e = endpoints[fd] else { return -EBADF }
            for i in 0..<count {
                let bytes = Array(UnsafeBufferPointer(start: vn_batch_send_data(tx, i), count: vn_batch_send_len(tx, i)))
                var hi: UInt64 = 0, lo: UInt64 = 0
                vn_batch_addr16(tx, i, &hi, &lo)
                e.outbox.append((PeerAddress(hi: hi, lo: lo, port: vn_batch_port(tx, i)), bytes))
            }
            return count
        }
    }
}

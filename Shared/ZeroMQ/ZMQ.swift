import CZeroMQ
@_exported import Primitives
#if canImport(Glibc)
import Glibc
#endif

/// A libzmq failure, with its errno and libzmq's own text.
public struct ZMQError: Error, Equatable, CustomStringConvertible, Sendable {
    public let errno: Int32
    public let operation: String

    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    static func last(_ operation: String) -> ZMQError { ZMQError(errno: zmq_errno(), operation: operation) }

    public var isAgain: Bool { errno == EAGAIN }
    public var isTerminated: Bool { errno == violin_zmq_eterm() }
    public var isInterrupted: Bool { errno == EINTR }
    public var description: String { "\(operation): \(String(cString: zmq_strerror(errno)))" }
}

/// One ZeroMQ context per process. Tear it down with `shutdown()` (wakes every blocking call
/// with ETERM) and then `terminate()` once every socket is closed.
public final class ZMQContext: @unchecked Sendable {
    public let handle: UnsafeMutableRawPointer
    private let lock = NSLockLite()
    private var terminated = false

    public init(ioThreads: Int32 = 1) {
        handle = zmq_ctx_new()
        zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads)
        // Never block in zmq_ctx_term on unsent messages.
        zmq_ctx_set(handle, ZMQ_BLOCKY, 0)
        // Every socket may bind or connect to IPv6 endpoints (`tcp://[::1]:7701`); IPv4 ones work
        // as before.
        zmq_ctx_set(handle, ZMQ_IPV6, 1)
    }

    public func shutdown() { zmq_ctx_shutdown(handle) }

    /// Terminates the context. Blocks until every socket of it is closed.
    public func terminate() {
        lock.withLock {
            guard !terminated else { return }
            terminated = true
            while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
        }
    }

    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    public static var hasCurve: Bool { zmq_has("curve") != 0 }
}

public enum SocketType: Sendable {
    case req, rep, dealer, router, pub, sub, xpub, xsub, push, pull, pair

    var raw: Int32 {
        switch self {
        case .req: ZMQ_REQ
        case .rep: ZMQ_REP
        case .dealer: ZMQ_DEALER
        case .router: ZMQ_ROUTER
        case .pub: ZMQ_PUB
        case .sub: ZMQ_SUB
        case .xpub: ZMQ_XPUB
        case .xsub: ZMQ_XSUB
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        case .pair: ZMQ_PAIR
        }
    }
}

public typealias Frame = [UInt8]

/// A ZeroMQ socket. Owned by one thread at a time; LINGER is 0 so closing never blocks.
public final class ZMQSocket {
    public private(set) var handle: UnsafeMutableRawPointer?
    public let type: SocketType

    public init(_ context: ZMQContext, _ type: SocketType) throws {
        guard let h = zmq_socket(context.handle, type.raw) else { throw ZMQError.last("zmq_socket") }
        self.handle = h
        self.type = type
        try setOption(ZMQ_LINGER, Int32(0))
    }

    deinit { close() }

    public func close() {
        if let h = handle {
            zmq_close(h)
            handle = nil
        }
    }

    private func live(_ op: String) throws -> UnsafeMutableRawPointer {
        guard let h = handle else { throw ZMQError(errno: ENOTSOCK, operation: op) }
        return h
    }

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        if zmq_setsockopt(try live("setsockopt"), option, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    public func setOption(_ option: Int32, _ value: Int64) throws {
        var v = value
        if zmq_setsockopt(try live("setsockopt"), option, &v, MemoryLayout<Int64>.size) != 0 {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    /// The largest message the socket accepts; a peer that sends a larger one is disconnected.
    public func setMaxMessageSize(_ bytes: Int64) throws { try setOption(ZMQ_MAXMSGSIZE, bytes) }

    /// Whether a ROUTER reports a message to an unknown peer as an error (otherwise drops it).
    public func setRouterMandatory(_ on: Bool) throws { try setOption(ZMQ_ROUTER_MANDATORY, Int32(on ? 1 : 0)) }

    /// How long `close` may keep undelivered messages, in milliseconds.
    public func setLinger(ms: Int32) throws { try setOption(ZMQ_LINGER, ms) }

    /// Queue limits in messages; 0: no limit (benchmarks that must not drop).
    public func setHighWaterMarks(send: Int32? = nil, receive: Int32? = nil) throws {
        if let send { try setOption(ZMQ_SNDHWM, send) }
        if let receive { try setOption(ZMQ_RCVHWM, receive) }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        let h = try live("setsockopt")
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(h, option, $0.baseAddress, $0.count) }
        if rc != 0 { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    public func setOption(_ option: Int32, string: String) throws {
        try setOption(option, bytes: Array(string.utf8))
    }

    public func getInt(_ option: Int32) throws -> Int32 {
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(try live("getsockopt"), option, &v, &size) != 0 { throw ZMQError.last("zmq_getsockopt") }
        return v
    }

    public func subscribe(_ prefix: String) throws { try setOption(ZMQ_SUBSCRIBE, string: prefix) }

    public func bind(_ endpoint: String) throws {
        if zmq_bind(try live("bind"), endpoint) != 0 { throw ZMQError.last("bind \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws {
        if zmq_connect(try live("connect"), endpoint) != 0 { throw ZMQError.last("connect \(endpoint)") }
    }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*`).
    public func lastEndpoint() throws -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        if zmq_getsockopt(try live("getsockopt"), ZMQ_LAST_ENDPOINT, &buffer, &size) != 0 {
            throw ZMQError.last("zmq_getsockopt(LAST_ENDPOINT)")
        }
        return Self.unmapped(String(cString: buffer))
    }

    /// With IPv6 on, ZeroMQ reports an IPv4 endpoint as IPv4-mapped (`tcp://[::ffff:10.0.0.1]:7701`):
    /// given back as it was asked for (`tcp://10.0.0.1:7701`), so endpoints compare as written.
    static func unmapped(_ endpoint: String) -> String {
        let prefix = "tcp://[::ffff:"
        guard endpoint.hasPrefix(prefix), let close = endpoint.firstIndex(of: "]") else { return endpoint }
        let v4 = endpoint[endpoint.index(endpoint.startIndex, offsetBy: prefix.count)..<close]
        guard v4.split(separator: ".").count == 4 else { return endpoint }
        return "tcp://\(v4)\(endpoint[endpoint.index(after: close)...])"
    }

    /// Sends all frames as one multipart message. Returns false when `dontWait` and it would block.
    @discardableResult
    public func send(_ frames: [Frame], dontWait: Bool = false) throws -> Bool {
        let h = try live("send")
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = i < frames.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            while true {
                let rc = frame.withUnsafeBytes { zmq_send(h, $0.baseAddress, $0.count, flags) }
                if rc >= 0 { break }
                let err = ZMQError.last("zmq_send")
                if err.isInterrupted { continue }
                if err.isAgain && i == 0 { return false }
                throw err
            }
        }
        return true
    }

    /// Receives one whole multipart message; nil when `dontWait` and nothing is queued.
    public func receive(dontWait: Bool = false) throws -> [Frame]? {
        var ignored: String?
        return try receive(dontWait: dontWait, userId: &ignored)
    }

    /// Receives one whole multipart message and the `User-Id` its connection's ZAP handler
    /// gave it (with CURVE: the client's public key); nil for a connection without ZAP.
    public func receive(dontWait: Bool = false, userId: inout String?) throws -> [Frame]? {
        let h = try live("receive")
        userId = nil
        var frames: [Frame] = []
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        while true {
            let flags: Int32 = (dontWait && frames.isEmpty) ? ZMQ_DONTWAIT : 0
            let rc = zmq_msg_recv(&msg, h, flags)
            if rc < 0 {
                let err = ZMQError.last("zmq_msg_recv")
                if err.isInterrupted { continue }
                if err.isAgain && frames.isEmpty { return nil }
                throw err
            }
            // A ROUTER's first frame (the peer's identity) is made by the socket and carries no
            // metadata: the User-Id comes with the peer's own frames.
            if userId == nil { userId = zmq_msg_gets(&msg, "User-Id").map { String(cString: $0) } }
            let size = zmq_msg_size(&msg)
            if size > 0, let data = zmq_msg_data(&msg) {
                frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            } else {
                frames.append([])
            }
            if zmq_msg_more(&msg) == 0 { return frames }
        }
    }

    /// Waits up to `timeoutMs` for a message and receives it.
    public func receive(timeoutMs: Int) throws -> [Frame]? {
        var items = [PollItem(socket: self)]
        guard try poll(&items, timeoutMs: timeoutMs) > 0, items[0].readable else { return nil }
        return try receive(dontWait: true)
    }
}

/// One entry of a poll set: a socket, or a plain file descriptor (a waker).
public struct PollItem {
    public var socket: UnsafeMutableRawPointer?
    public var fd: Int32
    public var revents: Int16 = 0

    public init(socket: ZMQSocket) { self.socket = socket.handle; self.fd = 0 }
    public init(fd: Int32) { self.socket = nil; self.fd = fd }

    public var readable: Bool { revents & Int16(ZMQ_POLLIN) != 0 }
    /// A file descriptor that hung up or failed (a pipe's writer closed it): a read returns
    /// at once (0 at the end).
    public var hungUp: Bool { revents & Int16(ZMQ_POLLERR) != 0 }
}

/// Polls for readability. Returns the number of ready items; retries on EINTR.
@discardableResult
public func poll(_ items: inout [PollItem], timeoutMs: Int) throws -> Int {
    var raw = items.map { zmq_pollitem_t(socket: $0.socket, fd: $0.fd, events: Int16(ZMQ_POLLIN), revents: 0) }
    while true {
        let rc = zmq_poll(&raw, Int32(raw.count), timeoutMs)
        if rc >= 0 {
            for i in items.indices { items[i].revents = raw[i].revents }
            return Int(rc)
        }
        let err = ZMQError.last("zmq_poll")
        if err.isInterrupted { continue }
        throw err
    }
}

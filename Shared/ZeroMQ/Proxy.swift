import CZeroMQ
import Foundation

/// The event bus: an XSUB/XPUB proxy. Publishers connect to the frontend, subscribers to the
/// backend; subscriptions flow upstream, events downstream. Frames are moved, not copied.
/// Runs on its own thread, which owns both sockets.
public final class EventProxy: @unchecked Sendable {
    public struct Counts: Sendable, Equatable {
        public var events = 0
        public var subscriptions = 0
        /// Events the filter dropped.
        public var refused = 0
    }

    /// Decides whether an event (its frames, and the `User-Id` of the connection it came on)
    /// is forwarded.
    public typealias Filter = @Sendable (_ frames: [Frame], _ userId: String?) -> Bool
    private let filter: Filter?

    private let frontend: ZMQSocket
    private let backend: ZMQSocket
    private let waker = Waker()
    private let lock = NSLockLite()
    private var counts = Counts()
    private let done = DispatchSemaphore(value: 0)
    private var running = false
    public let frontendEndpoints: [String]
    public let backendEndpoints: [String]

    /// Binds both sides now, so a failure to bind is reported to the caller.
    /// `highWaterMark`: events queued per connection before the bus drops for a slow peer
    /// (subscribers see the loss as a jump in the publisher's seq).
    public init(context: ZMQContext, frontend: [String], backend: [String], security: ServerSecurity? = nil,
                highWaterMark: Int32 = 100_000, maxMessageBytes: Int64 = 4 << 20, filter: Filter? = nil) throws {
        self.filter = filter
        self.frontend = try ZMQSocket(context, .xsub)
        self.backend = try ZMQSocket(context, .xpub)
        try self.frontend.setOption(ZMQ_RCVHWM, highWaterMark)
        try self.backend.setOption(ZMQ_SNDHWM, highWaterMark)
        try self.frontend.setMaxMessageSize(maxMessageBytes)
        try self.backend.setMaxMessageSize(64 << 10)
        var fe: [String] = [], be: [String] = []
        for (socket, endpoints) in [(self.frontend, frontend), (self.backend, backend)] {
            for endpoint in endpoints {
                if let security, isNetworkEndpoint(endpoint) { try socket.makeCurveServer(security) }
                try socket.bind(endpoint)
                let bound = try socket.lastEndpoint()
                if socket === self.frontend { fe.append(bound) } else { be.append(bound) }
            }
        }
        frontendEndpoints = fe
        backendEndpoints = be
    }

    public var snapshot: Counts { lock.withLock { counts } }

    public func start() {
        running = true
        let t = Thread { [self] in
            self.loop()
            self.frontend.close()
            self.backend.close()
            self.done.signal()
        }
        t.name = "bus-proxy"
        t.start()
    }

    public func stop() {
        guard running else { frontend.close(); backend.close(); return }
        running = false
        waker.wake()
        done.wait()
    }

    private func loop() {
        var items = [PollItem(socket: frontend), PollItem(socket: backend), PollItem(fd: waker.readFD)]
        while true {
            do {
                try poll(&items, timeoutMs: -1)
                if items[2].readable { return }
                if items[0].readable {
                    if let filter {
                        let (n, refused) = try forwardChecked(filter)
                        lock.withLock { counts.events += n; counts.refused += refused }
                    } else {
                        let n = try forward(from: frontend, to: backend)
                        lock.withLock { counts.events += n }
                    }
                }
                if items[1].readable {
                    let n = try forward(from: backend, to: frontend)
                    lock.withLock { counts.subscriptions += n }
                }
            } catch {
                return
            }
        }
    }

    /// Forwards the queued events the filter lets through; returns how many went and how many not.
    private func forwardChecked(_ filter: Filter) throws -> (Int, Int) {
        var sent = 0, refused = 0
        for _ in 0..<1024 {
            var user: String?
            guard let frames = try frontend.receive(dontWait: true, userId: &user) else { break }
            if filter(frames, user) {
                if (try? backend.send(frames, dontWait: true)) == true { sent += 1 }
            } else {
                refused += 1
            }
        }
        return (sent, refused)
    }

    /// Moves every queued message from one socket to the other; returns how many.
    private func forward(from source: ZMQSocket, to sink: ZMQSocket) throws -> Int {
        guard let src = source.handle, let dst = sink.handle else { return 0 }
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        var moved = 0
        while moved < 1024 {
            var first = true
            while true {
                if zmq_msg_recv(&msg, src, first ? ZMQ_DONTWAIT : 0) < 0 {
                    let e = ZMQError.last("proxy recv")
                    if e.isAgain && first { return moved }
                    if e.isInterrupted { continue }
                    throw e
                }
                first = false
                let more = zmq_msg_more(&msg) != 0
                if zmq_msg_send(&msg, dst, more ? ZMQ_SNDMORE : 0) < 0 {
                    let e = ZMQError.last("proxy send")
                    if !e.isAgain { throw e }
                }
                if !more { break }
            }
            moved += 1
        }
        return moved
    }
}

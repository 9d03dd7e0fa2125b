import CZeroMQ

/// Why a request got no reply.
public enum RequestFailure: Error, CustomStringConvertible, Sendable {
    case timedOut(endpoint: String, attempts: Int, timeoutMs: Int)
    case transport(ZMQError)

    public var description: String {
        switch self {
        case .timedOut(let endpoint, let attempts, let timeoutMs):
            return "no reply from \(endpoint) after \(attempts) attempt(s) of \(timeoutMs) ms"
        case .transport(let e):
            return e.description
        }
    }
}

/// Request/reply with a timeout and retries: the ZeroMQ guide's Lazy Pirate. A REQ socket that
/// times out is closed (LINGER 0) and a fresh one sends the request again. One thread owns it.
public final class RequestClient {
    public let endpoint: String
    public let timeoutMs: Int
    public let retries: Int
    private let context: ZMQContext
    private let security: ClientSecurity?
    private var socket: ZMQSocket?

    public init(context: ZMQContext, endpoint: String, security: ClientSecurity? = nil,
                timeoutMs: Int = 2000, retries: Int = 2) {
        self.context = context
        self.endpoint = endpoint
        self.security = security
        self.timeoutMs = timeoutMs
        self.retries = max(0, retries)
    }

    deinit { close() }

    public func close() {
        socket?.close()
        socket = nil
    }

    private func open() throws -> ZMQSocket {
        if let s = socket { return s }
        let s = try ZMQSocket(context, .req)
        try s.setMaxMessageSize(64 << 20)      // no peer's reply is ever buffered past this
        if let security, isNetworkEndpoint(endpoint) { try s.makeCurveClient(security) }
        try s.connect(endpoint)
        socket = s
        return s
    }

    /// Sends `frames`, waits for the reply; `accept` may reject a stale reply (wrong parent).
    /// `retries`: this request's own number of retries (default: the client's).
    public func request(_ frames: [Frame], retries: Int? = nil, accept: ([Frame]) -> Bool = { _ in true }) throws(RequestFailure) -> [Frame] {
        let retries = max(0, retries ?? self.retries)
        for _ in 0...retries {
            do {
                let s = try open()
                try s.send(frames)
                let deadline = monotonicMillis() + Int64(timeoutMs)
                while true {
                    let left = Int(deadline - monotonicMillis())
                    guard left > 0, let reply = try s.receive(timeoutMs: left) else { break }
                    if accept(reply) { return reply }
                }
                close()   // Lazy Pirate: the REQ is stuck waiting; throw it away.
            } catch let e as ZMQError {
                close()
                if e.isTerminated { throw .transport(e) }
            } catch {
                close()
            }
        }
        throw .timedOut(endpoint: endpoint, attempts: retries + 1, timeoutMs: timeoutMs)
    }
}

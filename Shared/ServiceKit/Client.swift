import Foundation
import VIOLINProtocol
import ZeroMQ

/// Sends protocol requests to one service and reads the replies. One thread owns it.
public final class ServiceClient {
    /// The largest reply or event a client reads (a service's own replies stay far below it).
    public static let maxReplyBytes = 64 << 20
    public enum Failure: Error, CustomStringConvertible {
        case noReply(RequestFailure)
        case badReply(ProtocolError)
        case error(ProtocolError)

        public var description: String {
            switch self {
            case .noReply(let f): return f.description
            case .badReply(let e): return "unreadable reply: \(e)"
            case .error(let e): return "error reply \(e.code.rawValue): \(e.message)"
            }
        }
    }

    private let client: RequestClient
    private var factory: MessageFactory

    public init(context: ZMQContext, endpoint: String, security: ClientSecurity? = nil, sender: String = "violin-cli",
                timeoutMs: Int = 2000, retries: Int = 0) {
        client = RequestClient(context: context, endpoint: endpoint, security: security,
                               timeoutMs: timeoutMs, retries: retries)
        factory = MessageFactory(sender: sender)
    }

    public func close() { client.close() }

    /// Sends `<name>_request` and returns the whole reply (ok or error). `retries`: this
    /// request's own (default: the client's).
    public func send(_ msgType: String, body: JSONValue = [:], retries: Int? = nil) throws(Failure) -> Message {
        let request = factory.request(msgType, body: body)
        var decoded: Result<Message, ProtocolError> = .failure(ProtocolError(.internalError, "no reply"))
        do {
            _ = try client.request(Codec.encode(request), retries: retries) { reply in
                do {
                    let m = try Codec.decode(reply, maxBytes: Self.maxReplyBytes)
                    // A reply to an earlier, timed-out request is not ours.
                    guard m.header.parentId == request.header.msgId || m.header.parentId.isEmpty else { return false }
                    decoded = .success(m)
                } catch let error as ProtocolError {
                    decoded = .failure(error)
                } catch {
                    decoded = .failure(ProtocolError(.internalError, "\(error)"))
                }
                return true
            }
        } catch let error as RequestFailure {
            throw .noReply(error)
        } catch {
            throw .noReply(.transport(ZMQError(errno: 0, operation: "\(error)")))
        }
        switch decoded {
        case .success(let m): return m
        case .failure(let e): throw .badReply(e)
        }
    }

    /// Sends a typed request; returns its ok reply, validated and read as the request's reply
    /// type; throws on an error reply (`.error`) or on one that is not what the type says
    /// (`.badReply`). An idempotent request is resent after a timeout (twice, unless the client
    /// was made with more); any other only if the client was made with retries.
    public func call<R: RequestBody>(_ request: R, retries: Int? = nil) throws(Failure) -> R.Reply {
        try exchange(request, retries: retries).reply
    }

    /// As `call`, with the reply's body as it came (the command-line tool prints it whole).
    public func exchange<R: RequestBody>(_ request: R, retries: Int? = nil) throws(Failure) -> (reply: R.Reply, body: JSONValue) {
        let body = try call(R.msgType, body: request.json, retries: retries ?? (R.idempotent ? max(client.retries, 2) : nil))
        do { return (try R.Reply.decode(body), body) } catch { throw .badReply(error) }
    }

    /// Sends a request; returns the body of an ok reply, throws on an error reply.
    public func call(_ msgType: String, body: JSONValue = [:], retries: Int? = nil) throws(Failure) -> JSONValue {
        let reply = try send(msgType, body: body, retries: retries)
        switch Replies.result(of: reply.body) {
        case .success(let b): return b
        case .failure(let e): throw .error(e)
        }
    }
}

/// Subscribes to the bus and yields decoded events. One thread owns it.
public final class EventSubscriber {
    public let socket: ZMQSocket
    private var lastSeq: [String: UInt64] = [:]   // per sender session
    public private(set) var gaps = 0

    public init(context: ZMQContext, endpoint: String, topics: [String], security: ClientSecurity? = nil) throws {
        socket = try ZMQSocket(context, .sub)
        try socket.setMaxMessageSize(Int64(ServiceClient.maxReplyBytes))
        try socket.setHighWaterMarks(receive: 10_000)
        if let security, isNetworkEndpoint(endpoint) { try socket.makeCurveClient(security) }
        for t in topics.isEmpty ? [""] : topics { try socket.subscribe(t) }
        try socket.connect(endpoint)
    }

    public func close() { socket.close() }

    public enum Next {
        case event(Message, missed: UInt64)
        case malformed(ProtocolError)
        case timeout
    }

    /// Waits up to `timeoutMs` (-1: forever) for the next event. `missed` counts the events of
    /// the same publisher that never arrived (a jump in its seq).
    public func next(timeoutMs: Int) throws -> Next {
        guard let frames = try socket.receive(timeoutMs: timeoutMs) else { return .timeout }
        do {
            let m = try Codec.decodeEvent(frames, maxBytes: ServiceClient.maxReplyBytes)
            var missed: UInt64 = 0
            let key = m.header.session
            if let last = lastSeq[key], m.header.seq > last + 1 {
                missed = m.header.seq - last - 1
                gaps += 1
            }
            // Bounded: a flood of fresh sessions does not grow it without end.
            if lastSeq[key] == nil && lastSeq.count >= 4096 { lastSeq.removeAll(keepingCapacity: true) }
            lastSeq[key] = max(lastSeq[key] ?? 0, m.header.seq)
            return .event(m, missed: missed)
        } catch {
            return .malformed(error)
        }
    }

    /// Waits for the first event whose topic satisfies `match`, up to a deadline.
    public func waitFor(timeoutMs: Int, _ match: (Message) -> Bool) throws -> Message? {
        let deadline = monotonicMillis() + Int64(timeoutMs)
        while true {
            let left = Int(deadline - monotonicMillis())
            if left <= 0 { return nil }
            if case .event(let m, _) = try next(timeoutMs: left), match(m) { return m }
        }
    }
}

extension ServiceClient {
    /// Asks `endpoint` for `ping` until it answers or `seconds` pass — the one "wait until it
    /// answers" of every starter (node run, the mesh starting a switch, the benchmarks). Each
    /// attempt waits `attemptMs` for its reply (the wait between attempts); `alive` is asked
    /// first each time, so a process that died is reported at once (false) instead of at the
    /// deadline.
    public static func waitUntilAnswers(context: ZMQContext, endpoint: String, security: ClientSecurity? = nil,
                                        within seconds: Double, attemptMs: Int = 300, alive: () -> Bool = { true }) -> Bool {
        let end = monotonicMillis() + Int64(seconds * 1000)
        repeat {
            guard alive() else { return false }
            let client = ServiceClient(context: context, endpoint: endpoint, security: security, timeoutMs: attemptMs)
            defer { client.close() }
            if (try? client.call(AdminAPI.Ping(), retries: 0)) != nil { return true }
        } while monotonicMillis() < end
        return false
    }
}

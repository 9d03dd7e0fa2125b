import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Primitives
import VIOLINProtocol

/// Where a service serves HTTP (`metrics_listen`, the control node's `web_listen`):
/// `HOST:PORT` with an IPv4 address or `[IPv6]`, port 0 for any.
public struct HTTPAddress: Equatable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    /// 127.0.0.0/8 or ::1: reachable from this host alone.
    public var isLoopback: Bool { host == "::1" || host.hasPrefix("127.") }

    public init?(_ text: String) {
        guard let (hostPart, portText) = HostPort.split(text), let portPart = portText,
              let port = HostPort.port(portPart, allowZero: true) else { return nil }
        if text.hasPrefix("[") {
            var a6 = in6_addr()
            guard inet_pton(AF_INET6, String(hostPart), &a6) == 1 else { return nil }
        } else {
            var a4 = in_addr()
            guard inet_pton(AF_INET, String(hostPart), &a4) == 1 else { return nil }
        }
        self.host = String(hostPart)
        self.port = port
    }
}

/// A stream of chunks a route answers with (server-sent events): the endpoint attaches a
/// sender when a client connects and detaches it when the client goes.
public protocol HTTPStreamSource: AnyObject, Sendable {
    /// `send` returns false once the client is gone. Returns a token for `detach`.
    func attach(_ send: @escaping @Sendable (Data) -> Bool) -> Int
    func detach(_ token: Int)
}

/// What a route answers: a whole body, or a stream that lasts while the client stays.
public enum HTTPAnswer: Sendable {
    case body(status: Int, contentType: String, Data)
    case stream(contentType: String, first: Data, HTTPStreamSource)

    public static func text(_ s: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> HTTPAnswer {
        .body(status: status, contentType: contentType, Data(s.utf8))
    }
}

/// A small read-only HTTP/1.1 server (SwiftNIO) for the Prometheus exposition and the web view.
/// Never open beyond loopback: with a bearer token every request must carry it
/// (`Authorization: Bearer <token>` or `?access_token=`, compared in constant time); without one, `init` refuses
/// any address but a loopback one. GET and HEAD only; a path it does not know gets 404. Routes
/// run off the event loop (they may block on a service's requests).
public final class HTTPEndpoint: @unchecked Sendable {
    public struct Refusal: Error, CustomStringConvertible { public let description: String }
    public typealias Route = @Sendable (_ query: [String: String]) -> HTTPAnswer

    public let address: HTTPAddress
    private let token: String?
    private let routes: [String: Route]
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?
    /// Routes run here, one at a time: a slow scrape does not stall the event loop.
    private let work = DispatchQueue(label: "http-routes")
    /// At most this many streams at once (each holds a connection open).
    static let maxStreams = 64
    private let streams = NSLockLite()
    private var streamCount = 0

    public init(address: HTTPAddress, token: String?, routes: [String: Route]) throws(Refusal) {
        if token == nil && !address.isLoopback {
            throw Refusal(description: "\(address) is not a loopback address: a bearer token is required")
        }
        if let token, token.isEmpty || token.count > 4096 { throw Refusal(description: "the bearer token must be 1 to 4096 characters") }
        self.address = address
        self.token = token
        self.routes = routes
    }

    /// Starts listening; returns the port bound (the one asked for, or the kernel's for 0).
    @discardableResult
    public func start() throws(Refusal) -> UInt16 {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(Connection(endpoint: self))
                }
            }
        do {
            let ch = try bootstrap.bind(host: address.host, port: Int(address.port)).wait()
            channel = ch
            return UInt16(ch.localAddress?.port ?? Int(address.port))
        } catch {
            try? group.syncShutdownGracefully()
            throw Refusal(description: "cannot listen on \(address): \(error)")
        }
    }

    public func stop() {
        try? channel?.close().wait()
        channel = nil
        try? group.syncShutdownGracefully()
    }

    /// Constant-time comparison (the token is a secret).
    static func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// The answer to one request, before any route runs: nil when a route should answer.
    func refusal(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, HTTPHeaders)? {
        if let token {
            // The header, or (RFC 6750 §2.3) `access_token` in the query: what a browser's page
            // and its EventSource can send.
            let header = Self.sameBytes(Array((head.headers.first(name: "Authorization") ?? "").utf8), Array("Bearer \(token)".utf8))
            let query = Self.sameBytes(Array((Self.query(head.uri)["access_token"] ?? "").utf8), Array(token.utf8))
            if !header && !query {
                return (.unauthorized, "a bearer token is required\n", ["WWW-Authenticate": "Bearer"])
            }
        }
        guard head.method == .GET || head.method == .HEAD else { return (.methodNotAllowed, "GET or HEAD only\n", ["Allow": "GET, HEAD"]) }
        guard routes[Self.path(head.uri)] != nil else {
            return (.notFound, "no such path; there are \(routes.keys.sorted().joined(separator: ", "))\n", [:])
        }
        return nil
    }

    static func path(_ uri: String) -> String { String(uri.prefix { $0 != "?" }) }

    static func query(_ uri: String) -> [String: String] {
        guard let q = uri.firstIndex(of: "?") else { return [:] }
        var out: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&").prefix(32) {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if let k = kv.first, out[k] == nil { out[k] = kv.count > 1 ? kv[1] : "" }
        }
        return out
    }

    func answer(_ head: HTTPRequestHead, _ reply: @escaping @Sendable (HTTPAnswer) -> Void) {
        guard let route = routes[Self.path(head.uri)] else { return }
        let query = Self.query(head.uri)
        work.async { reply(route(query)) }
    }

    /// Takes a stream slot; false when `maxStreams` are open.
    func openStream() -> Bool {
        streams.withLock { () -> Bool in
            guard streamCount < Self.maxStreams else { return false }
            streamCount += 1
            return true
        }
    }

    func closeStream() { streams.withLock { streamCount -= 1 } }
}

/// One client connection: a request at a time; a stream keeps the connection until either
/// side closes it.
private final class Connection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoint: HTTPEndpoint
    private var head: HTTPRequestHead?
    private var streaming: (source: HTTPStreamSource, token: Int)?

    init(endpoint: HTTPEndpoint) { self.endpoint = endpoint }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break   // GET and HEAD carry none worth reading
        case .end:
            guard let head, streaming == nil else { return }
            self.head = nil
            if let (status, text, headers) = endpoint.refusal(head) {
                respond(context, head, status: status, type: "text/plain; charset=utf-8", body: Data(text.utf8), extra: headers)
                return
            }
            let loop = context.eventLoop
            let ctx = NIOLoopBound(context, eventLoop: loop)
            endpoint.answer(head) { [self] answer in
                loop.execute { self.deliver(ctx.value, head, answer) }
            }
        }
    }

    private func deliver(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ answer: HTTPAnswer) {
        switch answer {
        case .body(let status, let type, let data):
            respond(context, head, status: HTTPResponseStatus(statusCode: status), type: type, body: data)
        case .stream(let type, let first, let source):
            // The client may have gone while the route ran: no slot is taken for it.
            guard context.channel.isActive else { return }
            guard endpoint.openStream() else {
                respond(context, head, status: .serviceUnavailable, type: "text/plain", body: Data("too many streams open\n".utf8))
                return
            }
            var headers = HTTPHeaders([("Content-Type", type), ("Cache-Control", "no-store")])
            headers.add(name: "Transfer-Encoding", value: "chunked")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            write(context, first)
            context.flush()
            let channel = context.channel
            let loop = context.eventLoop
            let ctx = NIOLoopBound(context, eventLoop: loop)
            let token = source.attach { [self] data in
                guard channel.isActive else { return false }
                loop.execute { self.write(ctx.value, data); ctx.value.flush() }
                return true
            }
            streaming = (source, token)
        }
    }

    private func write(_ context: ChannelHandlerContext, _ data: Data) {
        guard !data.isEmpty else { return }
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: data)))), promise: nil)
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, status: HTTPResponseStatus, type: String, body: Data,
                         extra: HTTPHeaders = [:]) {
        var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", "\(body.count)"), ("Cache-Control", "no-store")])
        headers.add(contentsOf: extra)
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD { write(context, body) }
        let keep = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in if !keep { context.close(promise: nil) } }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let (source, token) = streaming {
            source.detach(token)
            endpoint.closeStream()
            streaming = nil
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

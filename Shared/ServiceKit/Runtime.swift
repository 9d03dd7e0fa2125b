import Foundation
import Logging
import ServiceLifecycle
import VIOLINProtocol
import ZeroMQ

/// A service's own requests. Runs on the service's loop thread; must not block for long.
public protocol RequestHandler: AnyObject {
    /// The reply body, or nil when this service does not know `request`'s type.
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue?
    /// Service-specific state shown by `status`.
    var state: JSONValue { get }
    /// Service-specific counters shown by `metrics`, besides the runtime's own.
    var counters: [String: Int] { get }
    /// Whether a request of this type runs on the service's worker (`RequestTable.Lane`).
    func lane(of msgType: String) -> RequestTable.Lane
    /// The reply body, knowing which client asked: a handler that opens streams keeps `route`
    /// to send that client stream messages later. By default, `handle(_:)`.
    func handle(_ request: Message, from requester: Requester) throws(ProtocolError) -> JSONValue?
    /// Called once by the runtime that serves this handler, with what sends stream messages.
    func attach(_ streams: any StreamSender)
    /// The service's own Prometheus series, given again at every scrape (on the HTTP server's
    /// task, not the loop thread: read shared state under its lock).
    func collectMetrics(into metrics: MetricSet)
    /// Called once with the runtime's series, for what is recorded as it happens (histograms).
    func attach(metrics: MetricSet)
}

extension RequestHandler {
    public var counters: [String: Int] { [:] }
    public func lane(of msgType: String) -> RequestTable.Lane { .quick }
    public func handle(_ request: Message, from requester: Requester) throws(ProtocolError) -> JSONValue? { try handle(request) }
    public func attach(_ streams: any StreamSender) {}
    public func collectMetrics(into metrics: MetricSet) {}
    public func attach(metrics: MetricSet) {}
}

/// Where a request came from on a service's ROUTER socket: the peer's identity (and the empty
/// delimiter a REQ or DEALER peer adds). Opaque; a stream's messages go back along it.
public struct Route: Hashable, Sendable {
    let frames: [Frame]
}

/// Who sent a request: its route, and the request's `msg_id` (the `parent_id` of the stream
/// messages a stream-opening request leads to). What a `RequestTable` handler declared
/// `from: Requester.self` receives.
public struct Requester: Sendable {
    public let route: Route
    public let msgId: String
    /// Who asked: the key and its roles (PROTOCOL.md §7.1), already allowed by the table for
    /// this request type; a handler checks what the table cannot (a domain admin's domain, a
    /// host's own rows).
    public let caller: Caller

    public init(route: Route, msgId: String, caller: Caller = .local) { self.route = route; self.msgId = msgId; self.caller = caller }
}

/// Sends stream messages (PROTOCOL.md §4.1) to the client behind a route. Thread-safe.
public protocol StreamSender: AnyObject, Sendable {
    /// Queues the message; it leaves from the service's loop thread. Dropped (and counted)
    /// when the client is gone or does not read.
    func send(_ message: some EventBody, parent: String, to route: Route)
}

/// Counters a service reports through `metrics`. Thread-safe.
public final class Counters: @unchecked Sendable {
    private let lock = NSLockLite()
    private var values: [String: Int] = [:]
    public init() {}
    public func add(_ name: String, _ n: Int = 1) { lock.withLock { values[name, default: 0] += n } }
    public subscript(name: String) -> Int { lock.withLock { values[name] ?? 0 } }
    public var snapshot: [String: Int] { lock.withLock { values } }
}

/// The part every VIOLIN service shares: a ROUTER socket that answers requests (admin
/// requests here, the rest through the handler), an event socket connected to the bus, a
/// heartbeat, CURVE with a ZAP handler when configured, and an orderly teardown.
///
/// One loop thread owns both sockets. Other threads publish through `publish`, which queues
/// the event and wakes the loop.
public final class ServiceRuntime: Service, @unchecked Sendable {
    public let settings: ServiceSettings
    public let context: ZMQContext
    public let counters = Counters()
    /// The Prometheus series served at `metrics_listen` (/metrics).
    public let metrics = MetricSet()
    private var metricsEndpoint: HTTPEndpoint?
    public let logger: Logger
    public let version: String
    private weak var handler: RequestHandler?
    private let zap: ZAPHandler?
    private let waker = Waker()
    private let lock = NSLockLite()
    private var outbox: [(String, JSONValue)] = []
    /// Replies of long requests, made on the worker; they leave on the loop thread.
    private var finished: [[Frame]] = []
    /// Runs long requests one after another (the order they came in), off the request thread.
    private lazy var worker = DispatchQueue(label: "\(settings.service)-long")
    private var stopReason: String?
    private var thread: Thread?
    private let exited = DispatchSemaphore(value: 0)
    private let startedAt = Date()
    private let startedMono = monotonicMillis()
    private var bound: [String] = []
    private var torn = false
    /// Extra admin actions a service adds (e.g. the bus's own counters in `metrics`).
    public var extraGauges: () -> [String: Double] = { [:] }
    public var extraCounters: () -> [String: Int] = { [:] }
    /// Called (on the ZAP thread) with each CURVE key the handshake refused and its address:
    /// the control node keeps them as pending enrolments.
    public var onRefusedKey: ((_ key: String, _ address: String) -> Void)?

    public init(settings: ServiceSettings, logger: Logger, version: String = violinVersion,
                handler: RequestHandler? = nil) throws {
        self.settings = settings
        self.logger = logger
        self.version = version
        self.handler = handler
        context = ZMQContext()
        let refusals = Refusals()
        if settings.server != nil {
            let counters = self.counters
            var log = logger
            log[metadataKey: "component"] = "zap"
            let table = settings.keys ?? KeyTable(entries: [], ownKey: settings.server!.keyPair.publicKey)
            let own = settings.server!.keyPair.publicKey
            let zap = ZAPHandler(context: context, accepts: { $0 == own || table.accepts($0) }) { address, key, mechanism in
                counters.add("curve_refused")
                log.warning("refused a client", metadata: ["address": "\(address)", "key": "\(key)", "mechanism": "\(mechanism)"])
                refusals.report?(address, key, mechanism)
            }
            try zap.start()
            self.zap = zap
        } else {
            zap = nil
        }
        // Every refusal is also an event, `<service>.auth_refused`, so an operator sees it on the bus.
        refusals.report = { [weak self] address, key, mechanism in
            self?.publish(AuthRefused.event, typed: AuthRefused(address: address, key: key, mechanism: mechanism))
            self?.onRefusedKey?(key, address)
        }
        handler?.attach(self)
        handler?.attach(metrics: metrics)
    }

    private final class Refusals: @unchecked Sendable {
        var report: ((String, String, String) -> Void)?
    }

    public func setHandler(_ handler: RequestHandler) {
        self.handler = handler
        handler.attach(self)
        handler.attach(metrics: metrics)
    }

    /// The endpoints actually bound (after `start`).
    public var endpoints: [String] { lock.withLock { bound } }

    public var uptime: Double { Double(monotonicMillis() - startedMono) / 1000 }

    /// The port the Prometheus exposition is served on (nil without `metrics_listen`).
    public var metricsPort: UInt16? { lock.withLock { metricsPortBound } }
    private var metricsPortBound: UInt16?

    /// The runtime's own series — every counter of `metrics` as `violin_<service>_<name>_total`,
    /// every gauge as `violin_<service>_<name>`, the uptime — then the handler's.
    private func collectMetrics(_ m: MetricSet) {
        let prefix = "violin_" + MetricSet.name(settings.service)
        for (name, value) in metricsCounters() {
            m.counter(prefix + "_" + MetricSet.name(name) + "_total", total: Double(value), help: "\(settings.service): \(name)")
        }
        for (name, value) in extraGauges() {
            m.gauge(prefix + "_" + MetricSet.name(name), value: value, help: "\(settings.service): \(name)")
        }
        m.gauge(prefix + "_uptime_seconds", value: uptime, help: "Seconds since the \(settings.service) started.")
        handler?.collectMetrics(into: m)
    }

    /// Queues an event `<service>.<name>`; it leaves on the loop thread.
    public func publish(_ name: String, _ body: JSONValue) {
        lock.withLock { outbox.append((Topic.of(settings.service, name), body)) }
        waker.wake()
    }

    public func publish<T: Encodable>(_ name: String, typed body: T) { publish(name, JSONText.value(of: body)) }

    /// Binds and connects, then starts the loop thread. Throws when an endpoint cannot be bound.
    public func start() throws {
        let router = try ZMQSocket(context, .router)
        try router.setMaxMessageSize(Int64(settings.maxMessageBytes) * 4)
        try router.setRouterMandatory(false)
        var endpoints: [String] = []
        for endpoint in settings.listen {
            if let server = settings.server, isNetworkEndpoint(endpoint) { try router.makeCurveServer(server) }
            try router.bind(endpoint)
            endpoints.append(try router.lastEndpoint())
        }
        let events = try ZMQSocket(context, .xpub)
        if let bus = settings.bus {
            if let sec = settings.busSecurity, isNetworkEndpoint(bus) { try events.makeCurveClient(sec) }
            try events.connect(bus)
        }
        lock.withLock { bound = endpoints }
        publish(ServiceStarted.event, typed: ServiceStarted(
            service: settings.service, instance: settings.instance, version: version,
            pid: Int(getpid()), endpoints: endpointMap(endpoints)))
        let t = Thread { [self] in
            setThreadName("\(settings.service)-requests")
            self.loop(router: router, events: events)
            router.close()
            events.close()
            self.exited.signal()
        }
        t.name = settings.service
        thread = t
        t.start()
        if let address = settings.metricsListen {
            let endpoint = try HTTPEndpoint(address: address, token: settings.metricsToken, routes: ["/metrics": { [weak self] _ in
                guard let self else { return HTTPAnswer.text("stopping\n", status: 503) }
                return .body(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                             Data(self.metrics.scrape(refresh: self.collectMetrics)))
            }])
            let port = try endpoint.start()
            lock.withLock { metricsEndpoint = endpoint; metricsPortBound = port }
        }
        logger.info("service started", metadata: ["listen": "\(endpoints)", "bus": "\(settings.bus ?? "none")"])
    }

    /// Stops the loop (publishing `<service>.stopping`), then tears the context down.
    public func stop(reason: String = "shutdown") {
        guard thread != nil else { teardown(); return }
        lock.withLock { stopReason = reason }
        publish(ServiceStopping.event, typed: ServiceStopping(service: settings.service, instance: settings.instance, reason: reason))
        exited.wait()
        thread = nil
        teardown()
        logger.info("service stopped", metadata: ["reason": "\(reason)"])
    }

    private func teardown() {
        guard !torn else { return }
        torn = true
        lock.withLock { metricsEndpoint }?.stop()
        zap?.stop()
        context.shutdown()
        context.terminate()
    }

    /// swift-service-lifecycle: runs until graceful shutdown.
    public func run() async throws {
        if thread == nil { try start() }
        try? await gracefulShutdown()
        stop(reason: "signal")
    }

    private func endpointMap(_ listen: [String]) -> [String: String] {
        var m = ["listen": listen.joined(separator: ",")]
        if let bus = settings.bus { m["bus"] = bus }
        return m
    }

    // MARK: - The loop

    private func loop(router: ZMQSocket, events: ZMQSocket) {
        var factory = MessageFactory(sender: settings.instance)
        let heartbeatMs = Int64(settings.heartbeatInterval * 1000)
        var nextHeartbeat = monotonicMillis() + heartbeatMs
        // Hold events until the bus has sent a subscription, or for a short grace: a PUB drops
        // whatever it sends before its connection is up.
        var ready = settings.bus == nil
        let readyDeadline = monotonicMillis() + 1000
        var items = [PollItem(socket: router), PollItem(socket: events), PollItem(fd: waker.readFD)]
        while true {
            let now = monotonicMillis()
            var timeout = max(0, nextHeartbeat - now)
            if !ready { timeout = min(timeout, max(0, readyDeadline - now)) }
            do {
                try poll(&items, timeoutMs: Int(timeout))
            } catch {
                logger.error("poll failed", metadata: ["error": "\(error)"])
                return
            }
            if items[2].readable { waker.drain() }
            if items[1].readable {
                while let sub = try? events.receive(dontWait: true) {
                    counters.add("subscriptions_seen")
                    _ = sub
                }
                ready = true
            }
            if items[0].readable {
                for _ in 0..<256 {
                    var user: String?
                    guard let frames = try? router.receive(dontWait: true, userId: &user) else { break }
                    serve(frames, user: user, on: router, factory: &factory)
                }
            }
            sendFinished(on: router)
            let t = monotonicMillis()
            if t >= readyDeadline { ready = true }
            if t >= nextHeartbeat {
                nextHeartbeat = t + heartbeatMs
                publish(Heartbeat.event, typed: Heartbeat(service: settings.service, instance: settings.instance,
                                                        uptimeS: uptime, requestsHandled: counters["requests_total"]))
                waker.drain()
            }
            let stopping = lock.withLock { stopReason != nil }
            if ready || stopping { flush(events, factory: &factory) }
            if stopping {
                // A bounded linger lets the last events leave; every other socket keeps LINGER 0.
                try? events.setLinger(ms: 200)
                return
            }
        }
    }

    private func flush(_ events: ZMQSocket, factory: inout MessageFactory) {
        let pending: [(String, JSONValue)] = lock.withLock { defer { outbox.removeAll() }; return outbox }
        for (topic, body) in pending {
            let message = factory.event(topic, body: body)
            if (try? events.send(Codec.encode(message), dontWait: true)) == true {
                counters.add("events_published")
            } else {
                counters.add("events_dropped")
            }
        }
    }

    private func serve(_ frames: [Frame], user: String?, on router: ZMQSocket, factory: inout MessageFactory) {
        // ROUTER envelope: the peer's identity, then an empty delimiter when the peer is a REQ.
        guard frames.count >= 1 else { return }
        let envelopeLength = frames.count >= 2 && frames[1].isEmpty ? 2 : 1
        let envelope = Array(frames.prefix(envelopeLength))
        let payload = Array(frames.dropFirst(envelopeLength))
        let reply: Message
        switch decode(payload, factory: &factory).flatMap({ authorize($0, user: user, factory: &factory) }) {
        case .failure(let refusal): reply = refusal.message
        case .success(let (request, caller)):
            let from = Requester(route: Route(frames: envelope), msgId: request.header.msgId, caller: caller)
            if let handler, handler.lane(of: request.header.msgType) == .long {
                // Answered from the worker; the loop goes on with the next request.
                worker.async { [self] in
                    var own = MessageFactory(sender: settings.instance)
                    let frames = envelope + Codec.encode(dispatch(request, from: from, factory: &own))
                    lock.withLock { finished.append(frames) }
                    waker.wake()
                }
                return
            }
            reply = dispatch(request, from: from, factory: &factory)
        }
        if (try? router.send(envelope + Codec.encode(reply), dontWait: true)) != true {
            counters.add("replies_undeliverable")
        }
    }

    private func sendFinished(on router: ZMQSocket) {
        let ready: [[Frame]] = lock.withLock { defer { finished.removeAll() }; return finished }
        for frames in ready where (try? router.send(frames, dontWait: true)) != true {
            counters.add("replies_undeliverable")
        }
    }

    /// Turns one request into its reply. Never throws: every failure is an error reply.
    func answer(_ payload: [Frame], factory: inout MessageFactory) -> Message {
        switch decode(payload, factory: &factory) {
        case .failure(let refusal): return refusal.message
        case .success(let request): return dispatch(request, from: Requester(route: Route(frames: []), msgId: request.header.msgId), factory: &factory)
        }
    }

    /// A request, or the error reply that refuses it.
    private func decode(_ payload: [Frame], factory: inout MessageFactory) -> Result<Message, RefusalReply> {
        counters.add("requests_total")
        let request: Message
        do {
            request = try Codec.decode(payload, maxBytes: settings.maxMessageBytes)
        } catch {
            counters.add("bad_messages_total")
            counters.add("bad_messages.\(error.code.rawValue)")
            logger.debug("bad message", metadata: ["error": "\(error)"])
            return .failure(RefusalReply(factory.errorReply(to: nil, error)))
        }
        guard case .request = request.kind else {
            counters.add("bad_messages_total")
            counters.add("bad_messages.unknown_message_type")
            return .failure(RefusalReply(factory.errorReply(to: request.header, ProtocolError(
                .unknownMessageType, "'\(request.header.msgType)' is not a request (request types end in _request)"))))
        }
        return .success(request)
    }

    /// The request and its caller, or `forbidden` when the key's roles may not send it
    /// (PROTOCOL.md §7.1). Refusals are counted and published as `<service>.auth_refused`.
    private func authorize(_ request: Message, user: String?, factory: inout MessageFactory) -> Result<(Message, Caller), RefusalReply> {
        let type = request.header.msgType
        let found = settings.caller(key: user)
        let grants = Authorization.grants(service: settings.service, msgType: type)
        // A type the table does not list is no request of this service: an accepted key gets
        // `unknown_message_type` for it, as without keys.
        if let found, found.trusted || grants.map({ Authorization.allows(found, $0, host: settings.node) }) ?? true {
            return .success((request, found))
        }
        let why = found == nil ? "the key is not accepted (unknown or revoked)" : "\(found!.audit) may not send \(type)"
        counters.add("auth_refused")
        counters.add("replies_error")
        logger.warning("request refused", metadata: ["msg_type": "\(type)", "key": "\(user ?? "")", "why": "\(why)"])
        publish(AuthRefused.event, typed: AuthRefused(address: "", key: user ?? "", mechanism: "CURVE", msgType: type,
                                                      role: found?.roles.map(\.description).joined(separator: ","), reason: why))
        return .failure(RefusalReply(factory.errorReply(to: request.header, ProtocolError(.forbidden, why))))
    }

    /// The reply to a decoded request: the admin table's, else the service's.
    private func dispatch(_ request: Message, from requester: Requester, factory: inout MessageFactory) -> Message {
        do {
            var body = try adminRequests.handle(request)
            if body == nil, let handler { body = try handler.handle(request, from: requester) }
            guard let body else {
                counters.add("replies_error")
                counters.add("bad_messages.unknown_message_type")
                return factory.errorReply(to: request.header, ProtocolError(
                    .unknownMessageType, "\(settings.service) does not know '\(request.header.msgType)'"))
            }
            counters.add(body["status"]?.stringValue == "ok" ? "replies_ok" : "replies_error")
            return factory.reply(to: request.header, body: body)
        } catch let error as ProtocolError {
            counters.add("replies_error")
            return factory.errorReply(to: request.header, error)
        } catch {
            counters.add("replies_error")
            return factory.errorReply(to: request.header, ProtocolError(.internalError, "\(error)"))
        }
    }

    /// Every counter `metrics` reports: the runtime's, the extra ones, the handler's, CURVE's.
    private func metricsCounters() -> [String: Int] {
        var counters = self.counters.snapshot
        for (k, v) in extraCounters() { counters[k] = v }
        for (k, v) in handler?.counters ?? [:] { counters[k] = v }
        if let zap { (counters["curve_accepted"], counters["curve_refused"]) = zap.counts }
        return counters
    }

    /// The requests every service answers (PROTOCOL.md §5), before the service's own.
    private lazy var adminRequests: RequestTable = {
        var t = RequestTable()
        t.raw(AdminAPI.Ping.self) { [unowned self] _ in
            // Built by hand: ping is the request load balancers and benchmarks send most.
            ["status": "ok", "service": .string(self.settings.service), "instance": .string(self.settings.instance),
             "time": .string(MessageFactory.now())]
        }
        t.on(AdminAPI.Status.self) { [unowned self] _ in
            let iso = ISO8601DateFormatter()
            return StatusReply(
                service: self.settings.service, instance: self.settings.instance, version: self.version, pid: Int(getpid()),
                uptimeS: self.uptime, startedAt: iso.string(from: self.startedAt), endpoints: self.endpointMap(self.endpoints),
                state: self.handler?.state ?? [:])
        }
        t.on(AdminAPI.Metrics.self) { [unowned self] _ in
            let counters = self.metricsCounters()
            var gauges = self.extraGauges()
            gauges["uptime_s"] = self.uptime
            return MetricsReply(service: self.settings.service, counters: counters, gauges: gauges)
        }
        return t
    }()
}

extension ServiceRuntime: StreamSender {
    public func send(_ message: some EventBody, parent: String, to route: Route) {
        var factory = MessageFactory(sender: settings.instance)
        let frames = route.frames + Codec.encode(factory.streamMessage(type(of: message).topic, parent: parent, body: message.json))
        lock.withLock { finished.append(frames) }
        counters.add("stream_messages")
        waker.wake()
    }
}

/// An error reply standing for a request that could not be read.
private struct RefusalReply: Error {
    let message: Message
    init(_ m: Message) { message = m }
}

/// The version every executable reports.
public let violinVersion = "0.1.0"

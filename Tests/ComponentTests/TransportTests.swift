import Foundation
import Logging
import TestSupport
import Testing
import ServiceKit
import VIOLINProtocol
import ZeroMQ

@Suite struct LazyPirateTests {
    @Test func noServerMeansATimeoutAfterEveryAttempt() throws {
        try withContext { ctx in
            // A port nobody listens on: bind and close one to find it.
            let probe = try ZMQSocket(ctx, .rep)
            try probe.bind("tcp://127.0.0.1:*")
            let endpoint = try probe.lastEndpoint()
            probe.close()
            let client = RequestClient(context: ctx, endpoint: endpoint, timeoutMs: 100, retries: 2)
            defer { client.close() }
            let start = monotonicMillis()
            do {
                _ = try client.request([Array("hi".utf8)])
                Issue.record("a reply came from nowhere")
            } catch let error as RequestFailure {
                guard case .timedOut(_, let attempts, _) = error else { Issue.record("\(error)"); return }
                #expect(attempts == 3)
            }
            let elapsed = monotonicMillis() - start
            #expect(elapsed >= 300 && elapsed < 3000)
        }
    }

    @Test func aLostReplyIsRecoveredByAFreshSocket() throws {
        try withContext { ctx in
            let server = try ZMQSocket(ctx, .router)
            try server.bind("tcp://127.0.0.1:*")
            let endpoint = try server.lastEndpoint()
            let done = DispatchSemaphore(value: 0)
            // The server ignores the first request and answers the second.
            let t = Thread {
                _ = try? server.receive(timeoutMs: 5000)
                if let second = try? server.receive(timeoutMs: 5000) {
                    _ = try? server.send(Array(second.prefix(2)) + [Array("pong".utf8)])
                }
                server.close()
                done.signal()
            }
            t.start()
            let client = RequestClient(context: ctx, endpoint: endpoint, timeoutMs: 300, retries: 2)
            let reply = try client.request([Array("ping".utf8)])
            client.close()
            done.wait()
            #expect(reply == [Array("pong".utf8)])
        }
    }
}

/// A handler that takes `slow_thing_request` slowly, as a long request (on the service's
/// worker), and counts how many the service read: the runtime asks a request's lane as it
/// reads it from the socket, while the client's connection is still open.
final class SlowHandler: RequestHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var count: Int { lock.withLock { n } }
    var state: JSONValue { [:] }
    func lane(of msgType: String) -> RequestTable.Lane {
        guard msgType == "slow_thing_request" else { return .quick }
        lock.withLock { n += 1 }
        return .long
    }
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        guard request.header.msgType == "slow_thing_request" else { return nil }
        usleep(1_500_000)
        return Replies.ok()
    }
}

extension LazyPirateTests {
    /// A request that timed out is not sent again unless the caller asked for retries: a
    /// service client (the policy's, the CLI's by default) never repeats a command that may
    /// have been carried out; with retries (the CLI's --retries, for idempotent requests) the
    /// service does get it again.
    @Test func aTimedOutRequestIsResentOnlyWhenRetriesAreAsked() throws {
        let slow = SlowHandler()
        let runtime = try makeRuntime(handler: slow)
        defer { runtime.stop() }
        try withContext { ctx in
            for (retries, attempts) in [(0, 1), (2, 3)] {
                let before = slow.count
                let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 500, retries: retries)
                do {
                    _ = try client.call("slow_thing_request")
                    Issue.record("a reply within 500 ms from a handler that takes 1.5 s")
                } catch let failure as ServiceClient.Failure {
                    guard case .noReply(.timedOut(_, let n, _)) = failure else { Issue.record("\(failure)"); return }
                    #expect(n == attempts)
                }
                client.close()
                // The service reads each request as it comes (the slow work is on its worker).
                // A resent attempt whose connection came up too late on a loaded machine may be
                // dropped by libzmq with its socket: at least two arrive, never more than were sent.
                let arrived = try eventually(deadline: 10) { slow.count - before >= min(2, attempts) }
                let got = slow.count - before
                #expect(arrived && (retries == 0 ? got == 1 : (2...attempts).contains(got)), "retries \(retries): the service got \(got)")
            }
        }
    }
}

@Suite struct ServiceRuntimeTests {
    @Test func answersAdminRequests() throws {
        let runtime = try makeRuntime()
        defer { runtime.stop() }
        try withContext { ctx in
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 2000)
            defer { client.close() }
            let ping = try JSONText.view(PingReply.self, of: try client.call("ping_request"))
            #expect(ping.service == "mesh" && ping.instance == "mesh@test")
            let status = try JSONText.view(StatusReply.self, of: try client.call("status"))
            #expect(status.pid == Int(getpid()) && status.endpoints["listen"] == runtime.endpoints[0])
            let metrics = try JSONText.view(MetricsReply.self, of: try client.call("metrics_request"))
            #expect(metrics.counters["requests_total"] == 3 && metrics.counters["replies_ok"] == 2)
            let reply = try client.send("frob_request")
            #expect(reply.header.msgType == "frob_reply")
            #expect(reply.body["code"] == "unknown_message_type")
        }
    }

    /// Every kind of bad input, over and over, through a real socket: each earns an error reply
    /// with its code, the counters add up, and the service still answers ping.
    @Test func survivesAFloodOfBadInput() throws {
        let runtime = try makeRuntime(maxBytes: 4096)
        defer { runtime.stop() }
        let header = { (type: String) in Array(#"{"msg_id":"m","msg_type":"\#(type)"}"#.utf8) }
        let proto = Array("VIOLIN/1".utf8)
        let cases: [([Frame], String)] = [
            ([Array("not json at all".utf8)], "malformed_message"),
            ([proto, header("ping_request")], "malformed_message"),
            ([proto, header("ping_request"), [], [], []], "malformed_message"),
            ([Array("ZMTP/3".utf8), header("ping_request"), Array("{}".utf8)], "bad_protocol"),
            ([Array("VIOLIN/9".utf8), header("ping_request"), Array("{}".utf8)], "unsupported_version"),
            ([proto, Array("{{{".utf8), Array("{}".utf8)], "invalid_json"),
            ([proto, Array(#"{"msg_type":"ping_request"}"#.utf8), Array("{}".utf8)], "invalid_header"),
            ([proto, header("ping_request"), Array("[]".utf8)], "invalid_body"),
            ([proto, header("explode_request"), Array("{}".utf8)], "unknown_message_type"),
            ([proto, header("mesh.started"), Array("{}".utf8)], "unknown_message_type"),
            ([proto, header("ping_request"), Array(repeating: 0x20, count: 8000)], "message_too_large"),
        ]
        let rounds = 100   // 1,100 bad messages
        try withContext { ctx in
            let dealer = try ZMQSocket(ctx, .dealer)
            defer { dealer.close() }
            try dealer.connect(runtime.endpoints[0])
            for round in 0..<rounds {
                for (frames, code) in cases {
                    try dealer.send([[]] + frames)
                    let reply = try #require(try dealer.receive(timeoutMs: 3000), "no reply in round \(round) for \(code)")
                    let message = try Codec.decode(Array(reply.dropFirst()))
                    #expect(message.body["status"] == "error")
                    #expect(message.body["code"] == .string(code), "round \(round)")
                    if round > 0 { continue }
                    let text = message.body["message"]?.stringValue ?? ""
                    #expect(text.count > 5, "a human message explains \(code)")
                }
            }
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 2000)
            defer { client.close() }
            #expect(try client.call("ping_request")["service"] == "mesh")
            let metrics = try JSONText.view(MetricsReply.self, of: try client.call("metrics_request"))
            #expect(metrics.counters["bad_messages_total"] == rounds * (cases.count - 1))
            #expect(metrics.counters["bad_messages.message_too_large"] == rounds)
            #expect(metrics.counters["bad_messages.unknown_message_type"] == rounds * 2)
        }
    }
}

extension ServiceRuntimeTests {
    /// A message over four times max_message_bytes never reaches the service: libzmq drops it
    /// (ZMQ_MAXMSGSIZE) with the connection, so nothing is decoded or counted, and the service
    /// goes on answering. (Between one and four times, the service answers message_too_large.)
    @Test func aMessageOverFourTimesTheLimitIsDroppedBeforeTheService() throws {
        let runtime = try makeRuntime(maxBytes: 4096)
        defer { runtime.stop() }
        try withContext { ctx in
            let dealer = try ZMQSocket(ctx, .dealer)
            defer { dealer.close() }
            try dealer.connect(runtime.endpoints[0])
            let header = Array(#"{"msg_id":"big","msg_type":"ping_request"}"#.utf8)
            try dealer.send([[], Array("VIOLIN/1".utf8), header, Array(repeating: 0x20, count: 4 * 4096 + 100)])
            // One just under the limit on another connection is answered, and counted.
            let near = try ZMQSocket(ctx, .dealer)
            defer { near.close() }
            try near.connect(runtime.endpoints[0])
            try near.send([[], Array("VIOLIN/1".utf8), header, Array(repeating: 0x20, count: 4 * 4096 - 200)])
            let reply = try #require(try near.receive(timeoutMs: 3000), "no reply to a message under 4x the limit")
            #expect(try Codec.decode(Array(reply.dropFirst())).body["code"] == "message_too_large")
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 2000)
            defer { client.close() }
            #expect(try client.call("ping_request")["service"] == "mesh")
            let metrics = try JSONText.view(MetricsReply.self, of: try client.call("metrics_request"))
            #expect(metrics.counters["bad_messages.message_too_large"] == 1, "only the smaller one reached the service: \(metrics.counters)")
            #expect(metrics.counters["bad_messages_total"] == 1, "\(metrics.counters)")
        }
    }
}

@Suite struct BusTests {
    /// A proxy in-process, a runtime publishing into it, a subscriber reading through it.
    @Test func eventsFlowThroughTheProxyInSequence() throws {
        try withBus { ctx, proxy in
            let sub = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: ["monitor."])
            defer { sub.close() }
            let runtime = try makeRuntime("monitor", bus: proxy.frontendEndpoints[0], heartbeat: 0.05)
            defer { runtime.stop() }
            let started = try #require(try sub.waitFor(timeoutMs: 5000) { $0.topic == "monitor.started" })
            #expect(started.header.seq == 1)
            #expect(try JSONText.view(ServiceStarted.self, of: started.body).endpoints["listen"] == runtime.endpoints[0])
            var seqs: [UInt64] = []
            while seqs.count < 5 {
                let hb = try #require(try sub.waitFor(timeoutMs: 5000) { $0.topic == "monitor.heartbeat" })
                seqs.append(hb.header.seq)
            }
            #expect(seqs == Array(seqs[0]..<seqs[0] + 5))
            runtime.publish("sampled", ["cpu": 0.5])
            let sampled = try #require(try sub.waitFor(timeoutMs: 5000) { $0.topic == "monitor.sampled" })
            #expect(sampled.body["cpu"] == .number(0.5))
            #expect(sub.gaps == 0)
            // The proxy counts an event after forwarding it: the subscriber may see it first.
            #expect(eventually(deadline: 5) { proxy.snapshot.events >= 7 }, "the proxy counted \(proxy.snapshot.events) events")
        }
    }
}

/// The control plane over IPv6: a service bound to an IPv6 endpoint answers over it, and
/// publishes its events to a bus reached over IPv6.
@Suite struct IPv6TransportTests {
    @Test func aServiceAnswersAndPublishesOverIPv6() throws {
        try withContext { ctx in
            let proxy = try EventProxy(context: ctx, frontend: ["tcp://[::1]:*"], backend: ["tcp://[::1]:*"])
            proxy.start()
            defer { proxy.stop() }
            #expect(proxy.frontendEndpoints[0].hasPrefix("tcp://[::1]:"), "\(proxy.frontendEndpoints)")
            let sub = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: ["mesh."])
            defer { sub.close() }
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let settings = ServiceSettings(service: "mesh", instance: "mesh@v6", listen: ["tcp://[::1]:*"], bus: proxy.frontendEndpoints[0],
                                           heartbeatInterval: 0.05)
            let runtime = try ServiceRuntime(settings: settings, logger: logger)
            try runtime.start()
            defer { runtime.stop() }
            #expect(runtime.endpoints[0].hasPrefix("tcp://[::1]:"), "\(runtime.endpoints)")
            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 3000)
            defer { client.close() }
            #expect(try client.call(AdminAPI.Ping()).service == "mesh")
            #expect(try sub.waitFor(timeoutMs: 5000) { $0.topic == "mesh.heartbeat" } != nil, "no event over IPv6")
            // An IPv4 endpoint bound with IPv6 on is reported as it was asked for, not IPv4-mapped.
            let v4 = try ZMQSocket(ctx, .router)
            defer { v4.close() }
            try v4.bind("tcp://127.0.0.1:*")
            let bound = try v4.lastEndpoint()
            #expect(bound.hasPrefix("tcp://127.0.0.1:"), "\(bound)")
        }
    }
}

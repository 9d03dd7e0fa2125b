import Foundation
import Testing
import ServiceKit
import VIOLINProtocol
import ZeroMQ

@Suite struct CurveTests {
    @Test func onlyAllowedKeysGetRepliesAndEvents() throws {
        let server = try CurveKeyPair.generate()
        let friend = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let runtime = try makeRuntime(server: ServerSecurity(keyPair: server), allowed: [friend.publicKey])
        defer { runtime.stop() }
        let endpoint = runtime.endpoints[0]
        try withContext { ctx in
            let allowed = ServiceClient(context: ctx, endpoint: endpoint,
                                        security: ClientSecurity(keyPair: friend, serverPublicKey: server.publicKey),
                                        timeoutMs: 3000)
            defer { allowed.close() }
            #expect(try allowed.call("ping_request")["service"] == "mesh")

            let unknown = ServiceClient(context: ctx, endpoint: endpoint,
                                        security: ClientSecurity(keyPair: stranger, serverPublicKey: server.publicKey),
                                        timeoutMs: 500)
            defer { unknown.close() }
            #expect(throws: ServiceClient.Failure.self) { try unknown.call("ping_request") }

            let plain = ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 500)
            defer { plain.close() }
            #expect(throws: ServiceClient.Failure.self) { try plain.call("ping_request") }

            // The allowed client is still served, and the refusals were counted.
            let metrics = try JSONText.view(MetricsReply.self, of: try allowed.call("metrics_request"))
            #expect(metrics.counters["curve_refused", default: 0] >= 1)
            #expect(metrics.counters["curve_accepted", default: 0] >= 1)
            // The server never saw a request from the refused clients: only the friend's two.
            #expect(metrics.counters["requests_total"] == 2)
        }
    }

    @Test func aCurveBusDeliversOnlyToAllowedSubscribers() throws {
        let busKeys = try CurveKeyPair.generate()
        let publisherKeys = try CurveKeyPair.generate()
        let watcherKeys = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let ctx = ZMQContext()
        let zap = ZAPHandler(context: ctx, allowed: [publisherKeys.publicKey, watcherKeys.publicKey])
        try zap.start()
        defer { zap.stop(); ctx.shutdown(); ctx.terminate() }
        let proxy = try EventProxy(context: ctx, frontend: ["tcp://127.0.0.1:*"], backend: ["tcp://127.0.0.1:*"],
                                   security: ServerSecurity(keyPair: busKeys))
        proxy.start()
        defer { proxy.stop() }
        try withContext { cctx in
            let good = try EventSubscriber(context: cctx, endpoint: proxy.backendEndpoints[0], topics: ["policy."],
                                           security: ClientSecurity(keyPair: watcherKeys, serverPublicKey: busKeys.publicKey))
            defer { good.close() }
            let bad = try EventSubscriber(context: cctx, endpoint: proxy.backendEndpoints[0], topics: ["policy."],
                                          security: ClientSecurity(keyPair: stranger, serverPublicKey: busKeys.publicKey))
            defer { bad.close() }
            let runtime = try makeRuntime("policy", bus: proxy.frontendEndpoints[0], heartbeat: 0.05,
                busSecurity: ClientSecurity(keyPair: publisherKeys, serverPublicKey: busKeys.publicKey))
            defer { runtime.stop() }
            #expect(try good.waitFor(timeoutMs: 5000) { $0.topic == "policy.heartbeat" } != nil)
            #expect(try bad.waitFor(timeoutMs: 500) { _ in true } == nil)
            #expect(zap.counts.refused >= 1)
        }
    }
}

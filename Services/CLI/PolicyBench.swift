import ArgumentParser
import Foundation
import Logging
import PolicyCore
import PolicyService
import ServiceKit
import VIOLINProtocol
import ZeroMQ

extension Bench {
    /// Samples per second through the bus into violin-policy's logic, and the time from the
    /// sample that makes a VM high-demand to the published decision. In one process, over real
    /// ZeroMQ (tcp loopback), with a temporary SQLite database.
    struct PolicyServiceBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "policy-service", abstract: "Sample ingest rate and threshold-to-decision latency of violin-policy.")
        @Option(help: "Samples to publish for the rate.") var samples = 20_000
        @Option(help: "VMs per sample.") var vms = 100

        func run() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-pbench-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let ctx = ZMQContext()
            defer { ctx.shutdown(); ctx.terminate() }
            let proxy = try EventProxy(context: ctx, frontend: ["tcp://127.0.0.1:*"], backend: ["tcp://127.0.0.1:*"])
            proxy.start()
            defer { proxy.stop() }
            var logger = Logger(label: "bench")
            logger.logLevel = .critical
            var o = PolicyNode.Options(database: dir + "/p.sqlite")
            o.subscribe = proxy.backendEndpoints[0]
            o.interval = 3600
            let node = try PolicyNode(options: o, logger: logger)
            let settings = ServiceSettings(service: "policy", instance: "bench", listen: ["tcp://127.0.0.1:*"], bus: proxy.frontendEndpoints[0])
            let runtime = try ServiceRuntime(settings: settings, logger: logger, handler: node)
            try runtime.start()
            defer { runtime.stop() }
            node.publish = { runtime.publish($0, $1) }
            try node.start()
            defer { node.stop() }
            let decided = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: [PolicyAPI.Decided.topic])
            defer { decided.close() }
            let pub = try ZMQSocket(ctx, .pub)
            defer { pub.close() }
            try pub.setHighWaterMarks(send: 0)
            try pub.connect(proxy.frontendEndpoints[0])
            var f = MessageFactory(sender: "bench-monitor")
            func sample(_ cpu: Double, _ count: Int) -> [Frame] {
                let s = MonitorAPI.Sampled(hostCPUs: 8, hostMemoryMB: 16_384, vms: (0..<count).map {
                    MonitorAPI.VMSample(name: "vm\($0)", uuid: "", cpuPercent: cpu, vcpus: 1, memoryMB: 512, maxMemoryMB: 512) })
                return Codec.encode(f.event(MonitorAPI.Sampled.topic, body: s.json))
            }
            // Wait until the policy's subscription has crossed the bus.
            let warm = monotonicMillis() + 5000
            while node.ingested == 0 && monotonicMillis() < warm { try pub.send(sample(10, 1)) ; usleep(1000) }

            try measureIngest(node, pub, sample)
            try measureLatency(node, ctx: ctx, endpoint: runtime.endpoints[0], decided: decided, pub: pub,
                               smoothing: o.smoothing, sample)
        }

        /// 1. Ingest rate: samples of `vms` VMs published as fast as the socket takes them.
        func measureIngest(_ node: PolicyNode, _ pub: ZMQSocket, _ sample: (Double, Int) -> [Frame]) throws {
        let base = node.ingested
        let t0 = monotonicMillis()
        for _ in 0..<samples { try pub.send(sample(10, vms)) }
        var last = node.ingested, idle = monotonicMillis()
        while node.ingested - base < samples && monotonicMillis() - idle < 2000 {
            if node.ingested != last { last = node.ingested; idle = monotonicMillis() }
        }
        let got = node.ingested - base
        let seconds = Double(max(1, monotonicMillis() - t0 - (got < samples ? 2000 : 0))) / 1000
        print(String(format: "policy_ingest_samples_per_s %.0f (%d of %d samples of %d VMs, %.2f s)",
                     Double(got) / seconds, got, samples, vms, seconds))

        }

        /// 2. Threshold-to-decision latency: 4 VMs on a 2-core host turn busy, five times.
        func measureLatency(_ node: PolicyNode, ctx: ZMQContext, endpoint: String, decided: EventSubscriber, pub: ZMQSocket,
                            smoothing: Double, _ sample: (Double, Int) -> [Frame]) throws {
        let client = ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 5000)
        defer { client.close() }
        let violin = PolicyAPI.CreateViolin(id: "e1", homeDomain: "d1", head: "vm0",
                                            vms: (0..<4).map { .init(id: "vm\($0)", memoryMB: 512, host: "a") })
        _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
        for h in ["a", "b"] { _ = try client.call(PolicyAPI.RegisterHost(id: h, domain: "d1", cores: 2, memoryMB: 8192)) }
        _ = try client.call(violin)
        // The policy's view of vm0, replayed here from every sample it was sent.
        var s = DemandSmoother(weight: smoothing)
        for _ in 0..<(node.ingested) { s.add("vm0", cpu: 10) }
        var latencies: [Double] = []
        for _ in 0..<5 {
            // Each round: heat up until the decision comes, then cool down.
            var crossing: Int64 = 0
            for _ in 0..<40 {
                s.add("vm0", cpu: 97)
                let sent = monotonicMillis()
                try pub.send(sample(97, 4))
                if crossing == 0 && (s.averages["vm0"] ?? 0) > 75 { crossing = sent }
                if crossing != 0, let m = try decided.waitFor(timeoutMs: 200, { _ in true }) {
                    _ = m
                    latencies.append(Double(monotonicMillis() - crossing))
                    break
                }
            }
            for _ in 0..<40 { s.add("vm0", cpu: 5); try pub.send(sample(5, 4)) }   // cool down again
            while (try? decided.next(timeoutMs: 300)).map({ if case .event = $0 { true } else { false } }) == true {}
            _ = try client.call(PolicyAPI.DestroyViolin(id: "e1"))
            _ = try client.call(violin)
        }
        let sorted = latencies.sorted()
        print(String(format: "policy_threshold_to_decision_ms median %.1f (n=%d, min %.1f, max %.1f)",
                     sorted.isEmpty ? -1 : sorted[sorted.count / 2], sorted.count, sorted.first ?? -1, sorted.last ?? -1))
        }
    }
}



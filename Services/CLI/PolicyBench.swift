import ArgumentParser
import Foundation
import PolicyCore
import ServiceKit
import VIOLINProtocol
import ZeroMQ

extension Bench {
    /// Samples per second through the bus into a running violin-policy, and the time from the
    /// sample that makes a VM high-demand to the published decision. The policy is a child
    /// process (the `violin-policy` beside this executable) with a temporary SQLite database;
    /// the bus is a proxy in this process; all over real ZeroMQ (tcp loopback).
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
            let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
            let endpoint = "ipc://\(dir)/policy.sock"
            let policy = try ChildProcess(bin + "/violin-policy", [
                "--listen", endpoint, "--bus", proxy.frontendEndpoints[0], "--subscribe", proxy.backendEndpoints[0],
                "--database", dir + "/p.sqlite", "--evaluate-interval", "3600", "--log-level", "error",
            ], stdout: .null, stderr: .append(dir + "/policy.log"))
            defer { policy.terminate(); policy.wait() }
            guard ServiceClient.waitUntilAnswers(context: ctx, endpoint: endpoint, within: 20, alive: { policy.isRunning }) else {
                throw fail("violin-policy did not start", code: Exit.noReply)
            }
            let client = ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 5000)
            defer { client.close() }
            let ingested = { (try? client.call(AdminAPI.Metrics()))?.counters["samples_ingested"] ?? 0 }
            let decided = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: [PolicyAPI.Decided.topic])
            defer { decided.close() }
            let pub = try ZMQSocket(ctx, .pub)
            defer { pub.close() }
            try pub.setHighWaterMarks(send: 0)
            try pub.connect(proxy.frontendEndpoints[0])
            var f = MessageFactory(sender: "monitor@a")   // host a's monitor: its VMs' readings count
            func sample(_ cpu: Double, _ count: Int) -> [Frame] {
                let s = MonitorAPI.Sampled(hostCPUs: 8, hostMemoryMB: 16_384, vms: (0..<count).map {
                    MonitorAPI.VMSample(name: "vm\($0)", uuid: "", cpuPercent: cpu, vcpus: 1, memoryMB: 512, maxMemoryMB: 512) })
                return Codec.encode(f.event(MonitorAPI.Sampled.topic, body: s.json))
            }
            // Wait until the policy's subscription has crossed the bus.
            let warm = monotonicMillis() + 5000
            while ingested() == 0 && monotonicMillis() < warm { try pub.send(sample(10, 1)) }

            try measureIngest(ingested, pub, sample)
            try measureLatency(client, ingested: ingested(), decided: decided, pub: pub, sample)
        }

        /// 1. Ingest rate: samples of `vms` VMs published as fast as the socket takes them.
        func measureIngest(_ ingested: () -> Int, _ pub: ZMQSocket, _ sample: (Double, Int) -> [Frame]) throws {
            let base = ingested()
            let t0 = monotonicMillis()
            for _ in 0..<samples { try pub.send(sample(10, vms)) }
            var last = ingested(), idle = monotonicMillis()
            while last - base < samples && monotonicMillis() - idle < 2000 {
                let now = ingested()
                if now != last { last = now; idle = monotonicMillis() }
            }
            let got = last - base
            let seconds = Double(max(1, monotonicMillis() - t0 - (got < samples ? 2000 : 0))) / 1000
            print(String(format: "policy_ingest_samples_per_s %.0f (%d of %d samples of %d VMs, %.2f s)",
                         Double(got) / seconds, got, samples, vms, seconds))
        }

        /// 2. Threshold-to-decision latency: 4 VMs on a 2-core host turn busy, five times.
        func measureLatency(_ client: ServiceClient, ingested: Int, decided: EventSubscriber, pub: ZMQSocket,
                            _ sample: (Double, Int) -> [Frame]) throws {
            let violin = PolicyAPI.CreateViolin(id: "e1", homeDomain: "d1", head: "vm0",
                                                vms: (0..<4).map { .init(id: "vm\($0)", memoryMB: 512, host: "a") })
            _ = try client.call(PolicyAPI.RegisterDomain(id: "d1"))
            for h in ["a", "b"] { _ = try client.call(PolicyAPI.RegisterHost(id: h, domain: "d1", cores: 2, memoryMB: 8192)) }
            _ = try client.call(violin)
            // The policy's view of vm0, replayed here from every sample it was sent.
            var s = DemandSmoother()
            for _ in 0..<ingested { s.add("vm0", cpu: 10) }
            var latencies: [Double] = []
            for _ in 0..<5 {
                // Each round: heat up until the decision comes, then cool down.
                var crossing: Int64 = 0
                for _ in 0..<40 {
                    s.add("vm0", cpu: 97)
                    let sent = monotonicMillis()
                    try pub.send(sample(97, 4))
                    if crossing == 0 && (s.averages["vm0"] ?? 0) > highDemandThreshold { crossing = sent }
                    if crossing != 0, try decided.waitFor(timeoutMs: 200, { _ in true }) != nil {
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

import Foundation
import Logging
import Testing
import Hypervisor
import MonitorService
import ServiceKit
import VIOLINProtocol
import ZeroMQ

@Suite struct MonitorTests {
    /// violin-monitor's logic over real ZeroMQ and libvirt's test driver: samples with deltas
    /// on the bus, balloon and CPU weight through requests, clear errors.
    @Test func samplesAndActionsThroughLibvirt() throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let node = try MonitorServer(interval: 0.1, logger: logger) { try LibvirtHypervisor(uri: "test:///default") }
        try withBus { ctx, proxy in
            let sub = try EventSubscriber(context: ctx, endpoint: proxy.backendEndpoints[0], topics: ["monitor."])
            defer { sub.close() }
            let runtime = try makeRuntime("monitor", bus: proxy.frontendEndpoints[0], handler: node)
            defer { runtime.stop() }
            node.publish = { runtime.publish($0, $1) }
            try node.start()
            defer { node.stop() }
            let appeared = try #require(try sub.waitFor(timeoutMs: 5000) { $0.topic == "monitor.vm_appeared" })
            #expect(appeared.body["vm"] == "test")
            // The second sample has a CPU figure computed from CPU-time deltas.
            let sampled = try #require(try sub.waitFor(timeoutMs: 5000) { m in
                guard m.topic == "monitor.sampled", case .array(let vms)? = m.body["vms"] else { return false }
                return vms.contains { $0["cpu_percent"]?.numberValue != nil }
            })
            guard case .array(let vms)? = sampled.body["vms"], let vm = vms.first(where: { $0["name"] == "test" }) else {
                Issue.record("no sample of the test domain"); return
            }
            let cpu = try #require(vm["cpu_percent"]?.numberValue)
            #expect(cpu >= 0 && cpu <= 100)
            #expect((sampled.body["host"]?["cpus"]?.intValue ?? 0) > 0)
            let maxMB = try #require(vm["max_memory_mb"]?.intValue)

            let client = ServiceClient(context: ctx, endpoint: runtime.endpoints[0], timeoutMs: 3000)
            defer { client.close() }
            let balloon = try client.call("set_balloon_request", body: ["vm": "test", "memory_mb": .number(Double(maxMB / 2))])
            #expect(balloon["target_mb"]?.intValue == maxMB / 2 && balloon["memory_mb"]?.intValue == maxMB / 2)
            // Read back through libvirt, on the sampler's own connection.
            #expect(try sub.waitFor(timeoutMs: 5000) { m in
                guard m.topic == "monitor.sampled", case .array(let vms)? = m.body["vms"] else { return false }
                return vms.contains { $0["name"] == "test" && $0["memory_mb"]?.intValue == maxMB / 2 }
            } != nil)
            // libvirt's test driver keeps a fixed weight of 50: the reply is what libvirt reports.
            let weight = try client.call("set_cpu_weight_request", body: ["vm": "test", "weight": 200])
            #expect(weight["weight"]?.intValue == 50 && weight["vm"] == "test", "\(weight)")
            for (type, body, code) in [("set_balloon_request", ["vm": "nope", "memory_mb": 10] as JSONValue, ErrorCode.notFound),
                                       ("set_cpu_weight_request", ["vm": "nope", "weight": 10], .notFound),
                                       ("set_balloon_request", ["vm": "test", "memory_mb": .number(Double(maxMB * 8))], .invalidBody),
                                       ("set_cpu_weight_request", ["vm": "test", "weight": 0], .invalidBody),
                                       ("set_balloon_request", ["memory_mb": 10], .invalidBody)] {
                let reply = try client.send(type, body: body)
                #expect(reply.body["code"] == .string(code.rawValue), "\(type) \(body)")
            }
            let samples = try client.call("samples_request")
            let latest = try #require(samples["vms"]?.items.first { $0["name"] == "test" }, "\(samples)")
            #expect(latest["memory_mb"]?.intValue == maxMB / 2 && latest["max_memory_mb"]?.intValue == maxMB, "\(latest)")
        }
    }
}

import Foundation
import Logging
import ServiceKit
import Testing
import TestSupport
import VIOLINProtocol
import ZeroMQ

/// The Prometheus exposition every service serves: real HTTP, parsed by Prometheus' own
/// `promtool`; never open beyond loopback.
@Suite struct MetricsTests {
    func runtime(_ name: String = "mesh", metrics: String, token: String? = nil, handler: RequestHandler? = nil) throws -> ServiceRuntime {
        var settings = ServiceSettings(service: name, instance: "\(name)@test", listen: ["tcp://127.0.0.1:*"], bus: nil)
        settings.metricsListen = HTTPAddress(metrics)
        settings.metricsToken = token
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let r = try ServiceRuntime(settings: settings, logger: logger, handler: handler)
        try r.start()
        return r
    }

    /// promtool's verdict on an exposition: nil when it parses and follows the conventions.
    static func promtool(_ text: String) -> String? {
        let r = runCommand("/usr/bin/promtool", ["check", "metrics"], stdin: text)
        return r.status == 0 ? nil : "promtool (\(r.status)): \(r.output)"
    }

    @Test func aServiceServesItsCountersToPrometheus() throws {
        let r = try runtime(metrics: "127.0.0.1:0")
        defer { r.stop() }
        let port = try #require(r.metricsPort)
        try withContext { ctx in
            let client = ServiceClient(context: ctx, endpoint: r.endpoints[0], timeoutMs: 2000)
            defer { client.close() }
            for _ in 0..<3 { _ = try client.call(AdminAPI.Ping()) }
        }
        let got = try #require(httpGet("http://127.0.0.1:\(port)/metrics"))
        #expect(got.status == 200)
        #expect(got.body.contains("# TYPE violin_mesh_uptime_seconds gauge"), "\(got.body)")
        // The three pings, counted by the runtime, as a counter.
        let replies = got.body.split(separator: "\n").first { $0.hasPrefix("violin_mesh_replies_ok_total ") }
        #expect(replies.flatMap { Double($0.split(separator: " ").last!) }.map { $0 >= 3 } == true, "\(got.body)")
        #expect(Self.promtool(got.body) == nil, "\(Self.promtool(got.body) ?? "")")
        #expect(httpGet("http://127.0.0.1:\(port)/other")?.status == 404)
        #expect(httpGet("http://127.0.0.1:\(port)/metrics", method: "POST")?.status == 405)
    }

    @Test func withATokenEveryScrapeMustCarryIt() throws {
        let r = try runtime(metrics: "127.0.0.1:0", token: "s3cret-token")
        defer { r.stop() }
        let port = try #require(r.metricsPort)
        #expect(httpGet("http://127.0.0.1:\(port)/metrics")?.status == 401)
        #expect(httpGet("http://127.0.0.1:\(port)/metrics", token: "s3cret-tokem")?.status == 401)
        #expect(httpGet("http://127.0.0.1:\(port)/metrics", token: "s3cret-token")?.status == 200)
    }

    /// Beyond loopback without a token: refused by the settings, and by the endpoint itself.
    @Test func neverOpenBeyondLoopback() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-metrics-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d = ServiceDescription(name: "mesh", defaultListen: "tcp://127.0.0.1:7701")
        #expect(throws: ConfigError.self) { try ServiceSettings.load(d, commandLine: ["metrics_listen": "0.0.0.0:9701"], configPath: nil, environment: [:]) }
        #expect(throws: ConfigError.self) { try ServiceSettings.load(d, commandLine: ["metrics_listen": "10.1.2.3"], configPath: nil, environment: [:]) }
        #expect(throws: ConfigError.self) { try ServiceSettings.load(d, commandLine: ["metrics_listen": "127.0.0.1:99999"], configPath: nil, environment: [:]) }
        try "tok\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        let ok = try ServiceSettings.load(d, commandLine: ["metrics_listen": "[::]:9701", "metrics_token_file": dir + "/token"], configPath: nil, environment: [:])
        #expect(ok.metricsListen?.host == "::" && ok.metricsToken == "tok")
        let loop = try ServiceSettings.load(d, commandLine: ["metrics_listen": "127.0.0.1:9701"], configPath: nil, environment: [:])
        #expect(loop.metricsListen?.isLoopback == true && loop.metricsToken == nil)
        #expect(throws: HTTPEndpoint.Refusal.self) { try HTTPEndpoint(address: HTTPAddress("0.0.0.0:0")!, token: nil, routes: [:]) }
    }

    /// Mirrored counters follow their source's total, start again when it falls (the source
    /// restarted); a series not given at a scrape (a VM gone) leaves the exposition.
    @Test func mirroredSeriesFollowTheirSource() throws {
        let m = MetricSet()
        var vms = ["a": 10.0, "b": 5.0]
        func scrape() -> String {
            String(decoding: m.scrape { m in
                for (vm, t) in vms { m.counter("violin_vm_cpu_seconds_total", [("vm", vm)], total: t, help: "CPU") }
            }, as: UTF8.self)
        }
        #expect(scrape().contains(#"violin_vm_cpu_seconds_total{vm="a"} 10"#))
        vms["a"] = 12.5
        #expect(scrape().contains(#"violin_vm_cpu_seconds_total{vm="a"} 12.5"#))
        vms["a"] = 2
        #expect(scrape().contains(#"violin_vm_cpu_seconds_total{vm="a"} 2"#))
        vms["b"] = nil
        let text = scrape()
        #expect(!text.contains(#"vm="b""#), "\(text)")
        #expect(Self.promtool(text) == nil, "\(Self.promtool(text) ?? "")")
    }
}

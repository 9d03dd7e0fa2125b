import Foundation
@testable import ExecutorService
import ExecutorCore
import MeshService
@testable import PolicyService
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

/// Each service's figures as series: pure mappings from what the service keeps.
@Suite struct ServiceFiguresTests {
    static func text(_ m: MetricSet, _ fill: (MetricSet) -> Void) -> String { String(decoding: m.scrape(refresh: fill), as: UTF8.self) }

    @Test func aSwitchsStatsBecomeItsSeries() {
        var stats = SwitchAPI.StatsReply(vni: 7, tunnel: "10.0.0.1:4789",
                                         frames: ["from_ports": 120, "from_peers": 80, "to_ports": 75, "to_peers": 110, "floods": 9],
                                         portFailures: 0, bytes: ["from_ports": 9000, "from_peers": 6000], drops: ["no port": 3],
                                         ports: ["vm-a": .init(rx: 60, tx: 40, firstRxMs: nil, lastRxMs: nil, rxBytes: 4500, txBytes: 3000)],
                                         macTable: ["size": 4, "learned": 6, "moved": 1, "expired": 2], peers: [],
                                         scheduling: .init(mode: "realtime", realtimeEntries: 3, overBudget: 2, refused: nil))
        let m = MetricSet()
        let first = Self.text(m) { SwitchFigures.collect(stats, into: $0) }
        for line in [#"violin_switch_frames_total{vni="7",direction="from_ports"} 120"#, #"violin_switch_floods_total{vni="7"} 9"#,
                     #"violin_switch_drops_total{vni="7",reason="no_port"} 3"#, #"violin_switch_mac_table_entries{vni="7"} 4"#,
                     #"violin_switch_mac_aged_total{vni="7"} 2"#, #"violin_switch_port_rx_bytes_total{vni="7",port="vm-a"} 4500"#,
                     #"violin_switch_realtime{vni="7"} 1"#, #"violin_switch_realtime_over_budget_total{vni="7"} 2"#,
                     #"violin_switch_realtime_refused{vni="7"} 0"#] {
            #expect(first.contains(line), "missing \(line) in \(first)")
        }
        #expect(MetricsTests.promtool(first) == nil, "\(MetricsTests.promtool(first) ?? "")")
        // The VM migrated away: its port's series go; the switch's counters keep counting.
        stats.ports = [:]
        stats.frames["from_ports"] = 130
        let second = Self.text(m) { SwitchFigures.collect(stats, into: $0) }
        #expect(!second.contains("vm-a") && second.contains(#"violin_switch_frames_total{vni="7",direction="from_ports"} 130"#), "\(second)")
    }

    @Test func migrationsShowWhileTheyRunAndCountWhenTheyEnd() {
        let m = MetricSet()
        let running = RunningMigrations()
        running.attach(m)
        running.update("a1", phase: "precopy", MigrationProgress(processed: 1000, remaining: 5000, total: 6000, rate: 800, elapsedMs: 500, iteration: 1, dirtyRate: 64))
        let during = Self.text(m) { running.collect(into: $0) }
        #expect(during.contains(#"violin_migration_data_remaining_bytes{vm="a1",phase="precopy"} 5000"#), "\(during)")
        #expect(during.contains(#"violin_migration_dirty_memory_rate_bytes{vm="a1",phase="precopy"} 64"#) && during.contains("violin_migrations_running 1"))
        running.ended("a1", state: "completed", downtimeMs: 42, blackoutMs: 300)
        let after = Self.text(m) { running.collect(into: $0) }
        #expect(!after.contains(#"vm="a1""#), "\(after)")
        #expect(after.contains(#"violin_migrations_total{outcome="completed"} 1"#) && after.contains("violin_migration_downtime_seconds_count 1")
                && after.contains(#"violin_migration_blackout_seconds_bucket{le="0.5"} 1"#), "\(after)")
        #expect(MetricsTests.promtool(after) == nil, "\(MetricsTests.promtool(after) ?? "")")
    }

    @Test func violinsAreCountedByTheirLastPhase() {
        let f = PolicyFigures()
        f.saw(PolicyAPI.PhaseChanged.topic, ["name": "a", "phase": "creating"])
        f.saw(PolicyAPI.PhaseChanged.topic, ["name": "b", "phase": "running"])
        f.saw(PolicyAPI.PhaseChanged.topic, ["name": "c", "phase": "placing"])
        f.saw(PolicyAPI.PhaseChanged.topic, ["name": "c", "phase": "failed"])   // never made: not counted
        f.saw(PolicyAPI.DriftDetected.topic, ["kind": "moved"])
        // a is being made (not in the inventory yet), b and d run (d from before this process).
        let phases = f.violinsByPhase(inventory: ["b", "d"])
        #expect(phases["creating"] == 1 && phases["running"] == 2 && phases["failed"] == 0 && phases["placing"] == 0, "\(phases)")
        #expect(f.driftFound == ["moved": 1])
    }
}

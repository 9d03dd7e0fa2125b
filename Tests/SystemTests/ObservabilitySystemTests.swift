import Foundation
import TestSupport
import Testing
import VIOLINProtocol

/// What an operator watches, on the local lab: a real Prometheus (Debian's) scraping every
/// service of every node, the dashboard's queries run against it, and the control node's web
/// view in a real headless Chromium during a migration. Part of the migration suite, which runs
/// its tests one after another: two labs of TCG guests at once on two cores made the demo's
/// pings-per-downtime bound fail in CI.
extension MigrationSystemTests {

    @Test(.timeLimit(.minutes(8))) func prometheusAndTheWebViewFollowTrafficAndAMigration() throws {
        let lab = try LocalLab("observe", keys: true, observe: true)
        defer { lab.teardown() }
        let dir = lab.run, ns = lab.controlNamespace, ctl = try lab.curve("ctl")
        let token = try String(contentsOfFile: "\(dir)/metrics.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let nodes = ["ctl", "h1", "h2", "h3"].map { "\(dir)/nodes/\($0).yaml" }

        // Every exposition parses with Prometheus' own checker, and none answers without the token.
        let targets = ["10.77.0.100:9700", "10.77.0.100:9703"] + ["1", "2", "3"].flatMap { h in ["01", "02", "04"].map { "10.77.0.\(h):97\($0)" } }
        for t in targets {
            #expect(try sh("ip netns exec \(ns) curl -s -o /dev/null -w '%{http_code}\\n' http://\(t)/metrics").out == "401", "\(t) answered without the token")
            let text = try sh("ip netns exec \(ns) curl -sf -H 'Authorization: Bearer \(token)' http://\(t)/metrics")
            try #require(text.status == 0 && text.out.contains("violin_"), "\(t): \(text.err)")
            let checked = try sh("printf '%s\\n' \"$(ip netns exec \(ns) curl -sf -H 'Authorization: Bearer \(token)' http://\(t)/metrics)\" | promtool check metrics")
            #expect(checked.status == 0, "\(t): \(checked.out) \(checked.err)")
        }

        // Prometheus, with the scrape configuration violin node writes, on the control node's loopback.
        let conf = try run("violin", ["node", "prometheus"] + nodes + ["--scrape-interval", "1", "--out", "\(dir)/prometheus.yml"])
        try #require(conf.status == 0, "\(conf.err)")
        try #require(try sh("promtool check config \(dir)/prometheus.yml").status == 0)
        let prometheus = try Spawned("/usr/sbin/ip", ["netns", "exec", ns, "/usr/bin/prometheus", "--config.file=\(dir)/prometheus.yml",
                                                      "--storage.tsdb.path=\(dir)/prometheus-data", "--web.listen-address=127.0.0.1:9090"])
        defer { prometheus.destroy() }
        let started = Date().timeIntervalSince1970
        func query(_ q: String, range: Bool = false) throws -> [JSONValue]? {
            let now = Date().timeIntervalSince1970
            let path = range ? "query_range" : "query"
            let extra = range ? "--data-urlencode start=\(started) --data-urlencode end=\(now) --data-urlencode step=1" : ""
            let r = try sh("ip netns exec \(ns) curl -s http://127.0.0.1:9090/api/v1/\(path) --data-urlencode 'query=\(q)' \(extra); echo")
            let body = try? Self.json(r.out)
            guard body?["status"] == "success" else { return nil }
            return body?["data"]?["result"]?.items
        }
        func value(_ q: String) throws -> Double? {
            try query(q)?.first?["value"]?.items.last?.stringValue.flatMap(Double.init)
        }
        #expect(try eventually(deadline: 60) { try value("count(up == 1)") == Double(targets.count) },
                "not every target is up: \(String(describing: try? query("up == 0")))")

        // A VIOLIN of two guests on two hosts of d1; traffic between them raises the switches' counters.
        try "name: obs\nhome_domain: d1\nhead: o1\nimage: tiny\nvms:\n  - name: o1\n    host: h1\n    ip: 10.0.0.1\n  - name: o2\n    host: h2\n    ip: 10.0.0.2\n"
            .write(toFile: lab.scratch.file("obs.yaml"), atomically: true, encoding: .utf8)
        let created = try lab.violin("create -f \(lab.scratch.file("obs.yaml")) --json --timeout 90 --control 10.77.0.100 \(ctl)", timeout: 120)
        try #require(created.status == 0, "create: \(created.err)")
        let frames = "sum(violin_switch_frames_total{direction=\"from_ports\"})"
        #expect(try eventually(deadline: 30) { try value(frames) != nil }, "no switch frames in Prometheus")
        let before = try value(frames) ?? 0
        let console = try ConsoleUser(lab, vm: "o1", curve: ctl)
        defer { console.end() }
        // Once o2 answers (it may still be booting), 40 pings more.
        try #require(console.type("until ping -c 1 -W 1 10.0.0.2 >/dev/null; do :; done; ping -c 40 -i 0.2 10.0.0.2 | tail -2; echo pinged-$((6*7))",
                                  until: "pinged-42", timeout: 150),
                     "the guest did not ping: \(console.process.lines.suffix(6))")
        #expect(try eventually(deadline: 30) { (try value(frames) ?? 0) >= before + 40 }, "frames \(before) -> \(String(describing: try? value(frames)))")

        // The web view in headless Chromium: o2 under h2 first; during its migration to the other
        // domain its progress bar; after the move, o2 under h3, applied from the events the page
        // was sent. (o1, the head node, stays home.)
        let shots = lab.scratch.file("shots")
        let page = "http://10.77.0.100:9780/?access_token=\(token)"
        let browser = try Spawned("/usr/sbin/ip", ["netns", "exec", ns, "/usr/bin/python3", "\(packageRoot)/Tests/SystemTests/cdp.py", page, shots,
                                                   "before=document.querySelector('[data-host=h2] [data-vm=o2]') && document.getElementById('live').textContent === 'live'",
                                                   "during=Number((document.querySelector('[data-migration=o2]') || { dataset: {} }).dataset.remaining || 0) > 0",
                                                   "after=document.querySelector('[data-host=h3] [data-vm=o2]') && !document.querySelector('[data-migration=o2]')",
                                                   "--timeout=90"])
        defer { browser.destroy() }
        try #require(try eventually(deadline: 60) { browser.lines.contains("STEP before") }, "the page never showed o2 on h2: \(browser.lines) \(browser.stderrText)")
        // Slowed to 8 MiB/s, the migration lasts long enough for 1 s scrapes to see it move.
        let migrate = try Spawned("/bin/sh", ["-c", "exec ip netns exec \(ns) '\(binDir)/violin' migrate o2 --to h3 --bandwidth 8 --wait 150 --control 10.77.0.100 \(ctl)"])
        defer { migrate.destroy() }
        // While it runs, `violin top` shows it too: from h2 to h3, with what it has left.
        #expect(try eventually(deadline: 60) { browser.lines.contains("STEP during") }, "no progress bar in pre-copy during the migration: \(browser.lines)")
        let top = try lab.violin("top --once --control 10.77.0.100 \(ctl)")
        let row = top.out.split(separator: "\n").first { $0.hasPrefix("o2 ") }.map(String.init) ?? ""
        #expect(top.out.contains("MIGRATIONS IN PROGRESS: 1") && row.contains("h2") && row.contains("h3") && row.contains("MiB"), "violin top: \(top.out) \(top.err)")
        #expect(migrate.waitExit(timeout: 150) == 0, "migrate: \(migrate.lines) \(migrate.stderrText)")
        #expect(try eventually(deadline: 60) { browser.lines.contains("STEP after") }, "the page never showed o2 on h3: \(browser.lines) \(browser.stderrText)")
        let dom = (try? String(contentsOfFile: "\(shots)/after.html", encoding: .utf8)) ?? ""
        #expect(dom.contains("data-host=\"h3\"") && dom.contains("data-vm=\"o2\""), "rendered DOM: \(dom.prefix(400))")
        if let out = ProcessInfo.processInfo.environment["VIOLIN_WEBVIEW_SHOTS"] {
            _ = try? sh("mkdir -p '\(out)' && cp '\(shots)'/*.png '\(out)'/")
        }

        // The migration as Prometheus saw it: its gauges moved, it ended completed, its pauses observed.
        let remaining = try query("violin_migration_data_remaining_bytes{vm=\"o2\"}", range: true) ?? []
        let samples = remaining.flatMap { $0["values"]?.items ?? [] }.compactMap { $0.items.last?.stringValue.flatMap(Double.init) }
        #expect(samples.count >= 2 && Set(samples).count >= 2, "the remaining-bytes gauge did not move: \(samples)")
        #expect(try eventually(deadline: 20) { try value("sum(violin_migrations_total{outcome=\"completed\"})") ?? 0 >= 1 })
        #expect(try value("sum(violin_migration_downtime_seconds_count)") ?? 0 >= 1)

        // Every query of the provisioned dashboard runs against this Prometheus and returns series
        // over the test's span (Grafana's panels ask for ranges).
        let dashboard = try Self.json(try String(contentsOfFile: "\(packageRoot)/compose/docker/grafana/dashboards/violin.json", encoding: .utf8))
        for panel in dashboard["panels"]?.items ?? [] {
            let expr = try #require(panel["targets"]?.items.first?["expr"]?.stringValue)
            // A rate needs two scrapes of a series that appeared a moment ago: waited for.
            var series: [JSONValue]?
            _ = try eventually(deadline: 20) { series = try query(expr, range: true); return series == nil || !(series ?? []).isEmpty }
            #expect(series != nil, "\(panel["title"] ?? ""): \(expr) failed")
            #expect(!(series ?? []).isEmpty, "\(panel["title"] ?? ""): \(expr) returned no series")
        }
    }
}

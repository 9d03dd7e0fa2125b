import Foundation
import TestSupport
import Testing
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// Real processes: the bus, the four service skeletons, the CLI, over ipc endpoints private to
/// each test, so parallel runs cannot collide.
@Suite(.serialized) struct ServicesSystemTests {
    static let services = [("mesh", "violin-mesh"), ("monitor", "violin-monitor"),
                           ("policy", "violin-policy"), ("executor", "violin-executor")]

    /// Bus counters, read with `violin metrics`.
    func busCounter(_ scratch: Scratch, _ name: String) throws -> Int {
        let r = try run("violin", ["metrics", "--to", scratch.ipc("bus"), "--timeout", "2"])
        guard r.status == 0 else { return -1 }
        return metricsCounter(r.out, name) ?? 0
    }

    func startBus(_ scratch: Scratch) throws -> Spawned {
        try Spawned("violin-bus", ["--listen", scratch.ipc("bus"), "--publishers", scratch.ipc("pub"),
                                   "--subscribers", scratch.ipc("sub"), "--heartbeat-interval", "0.2"])
    }

    @Test func busAndServicesTalkThroughTheCLI() throws {
        let scratch = try Scratch("services")
        var procs: [Spawned] = []
        defer { procs.forEach { $0.destroy() }; scratch.cleanup() }
        let bus = try startBus(scratch)
        procs.append(bus)
        #expect(try eventually(deadline: 10) { try busCounter(scratch, "requests_total") >= 0 }, "the bus answers")

        let watch = try Spawned("violin", ["watch", "--bus", scratch.ipc("sub"), "--timeout", "20"])
        procs.append(watch)
        #expect(try eventually(deadline: 10) { try busCounter(scratch, "bus_subscriptions_forwarded") >= 1 },
                "the watcher's subscription reached the bus")

        for (name, exe) in Self.services {
            // The monitor reads libvirt's built-in test driver here (no libvirtd needed).
            let extra = name == "monitor" ? ["--libvirt-uri", "test:///default"]
                : name == "policy" ? ["--database", scratch.file("policy.sqlite"), "--subscribe", scratch.ipc("sub")] : []
            procs.append(try Spawned(exe, ["--listen", scratch.ipc(name), "--bus", scratch.ipc("pub"),
                                           "--heartbeat-interval", "0.2", "--instance", "\(name)@systest"] + extra))
        }
        for (name, _) in Self.services {
            for event in ["started", "heartbeat"] {
                let line = watch.waitForLine(timeout: 20) { $0.contains("\"topic\":\"\(name).\(event)\"") }
                let found = try #require(line, "violin watch did not print \(name).\(event); stderr: \(watch.stderrText)")
                let value = try JSONText.parse(Array(found.utf8))
                #expect(value["body"]?["instance"] == .string("\(name)@systest"))
                #expect(value["header"]?["sender"] == .string("\(name)@systest"))
            }
            let ping = try run("violin", ["ping", "--to", scratch.ipc(name), "--timeout", "5"])
            #expect(ping.status == 0, "ping \(name): \(ping.err)")
            #expect(ping.out.hasPrefix("\(name) \(name)@systest replied in"))
            let status = try run("violin", ["status", "--to", scratch.ipc(name)])
            #expect(status.status == 0)
            #expect(try JSONText.parse(Array(status.out.utf8))["service"] == .string(name))
            let unknown = try run("violin", ["call", scratch.ipc(name), "frobnicate", #"{"x":1}"#])
            #expect(unknown.status == 1)
            #expect(unknown.err.contains("unknown_message_type"))
        }
        #expect(watch.stderrText.contains("missed") == false, "no event was lost: \(watch.stderrText)")

        // The policy keeps an inventory and a ledger: what is registered shows in `inventory`;
        // no samples have come, so no VM is high-demand and the ledger stays empty.
        for (type, body) in [("register_domain", #"{"id":"d1"}"#),
                             ("register_host", #"{"id":"a","domain":"d1","cores":1,"memory_mb":4096}"#),
                             ("register_host", #"{"id":"b","domain":"d1","cores":1,"memory_mb":4096}"#),
                             ("create_violin", #"{"id":"e1","home_domain":"d1","head":"x0","vms":[{"id":"x0","memory_mb":256,"host":"a"},{"id":"x1","memory_mb":256,"host":"a"}]}"#)] {
            let r = try run("violin", ["call", scratch.ipc("policy"), type, body])
            #expect(r.status == 0, "\(type): \(r.err)")
        }
        let inventory = try run("violin", ["call", scratch.ipc("policy"), "inventory", "{}"])
        let inv = try JSONText.parse(Array(inventory.out.utf8))
        #expect(Set(inv["hosts"]?.items.compactMap { $0["id"]?.stringValue } ?? []) == ["a", "b"], "\(inventory.out)")
        #expect(Set(inv["vms"]?.items.compactMap { $0["id"]?.stringValue } ?? []) == ["x0", "x1"], "\(inventory.out)")
        let empty = try run("violin", ["policy", "decisions", "--to", scratch.ipc("policy")])
        #expect(empty.status == 0 && empty.out.isEmpty, "\(empty.out) \(empty.err)")

        // Kill one service: ping fails within its timeout, with a clear message.
        let mesh = procs[2]
        mesh.signal(SIGKILL)
        #expect(mesh.waitExit(timeout: 10) != nil)
        let start = Date()
        let dead = try run("violin", ["ping", "--to", scratch.ipc("mesh"), "--timeout", "1"])
        #expect(dead.status == 2)
        #expect(dead.err.contains("no reply"))
        #expect(Date().timeIntervalSince(start) < 5)

        // SIGTERM: an orderly stop that says so on the bus.
        let monitor = procs[3]
        monitor.signal(SIGTERM)
        #expect(monitor.waitExit(timeout: 10) == 0)
        #expect(watch.waitForLine(timeout: 10) { $0.contains("\"topic\":\"monitor.stopping\"") } != nil)
        bus.signal(SIGTERM)
        #expect(bus.waitExit(timeout: 10) == 0)
    }

    @Test func curveRefusesUnknownKeysBetweenProcesses() throws {
        let scratch = try Scratch("curve")
        var procs: [Spawned] = []
        defer { procs.forEach { $0.destroy() }; scratch.cleanup() }
        for name in ["server", "client", "stranger"] {
            let r = try run("violin", ["keygen", "--out", scratch.file(name), "--role", "operator"])
            #expect(r.status == 0 && r.out.count == 40, "keygen: \(r.err)")
        }
        let again = try run("violin", ["keygen", "--out", scratch.file("server")])
        #expect(again.status == 64, "keygen refuses to overwrite")
        let endpoint = try freeTCPEndpoint()
        let mesh = try Spawned("violin-mesh", ["--listen", endpoint, "--bus", "none",
                                               "--curve-key", scratch.file("server.key"),
                                               "--curve-allowed", scratch.file("client.pub")])
        procs.append(mesh)
        let keys = ["--server-key", scratch.file("server.pub")]
        #expect(try eventually(deadline: 10) {
            try run("violin", ["ping", "--to", endpoint, "--timeout", "1", "--curve-key", scratch.file("client.key")] + keys).status == 0
        })
        let stranger = try run("violin", ["ping", "--to", endpoint, "--timeout", "1",
                                          "--curve-key", scratch.file("stranger.key")] + keys)
        #expect(stranger.status == 2)
        let plain = try run("violin", ["ping", "--to", endpoint, "--timeout", "1"])
        #expect(plain.status == 2)
        let friend = try run("violin", ["metrics", "--to", endpoint, "--curve-key", scratch.file("client.key")] + keys)
        #expect(friend.status == 0)
        let counters = try JSONText.parse(Array(friend.out.utf8))["counters"]
        // The stranger's key was refused by the ZAP handler; the plain client never got as far
        // (libzmq ends a handshake whose mechanism differs before asking ZAP).
        #expect(counters?["curve_refused"]?.intValue == 1)
    }

    @Test func badConfigurationExitsNamingTheKey() throws {
        let scratch = try Scratch("config")
        defer { scratch.cleanup() }
        let r = try run("violin-mesh", ["--heartbeat-interval", "often"])
        #expect(r.status == 78)
        #expect(r.err.contains("heartbeat_interval") && r.err.contains("often"))
        try "listen: ipc://\(scratch.path)/m.sock\nheartbeat_intervall: 3\n".write(
            toFile: scratch.file("mesh.yaml"), atomically: true, encoding: .utf8)
        let f = try run("violin-mesh", ["--config", scratch.file("mesh.yaml")])
        #expect(f.status == 78)
        #expect(f.err.contains("heartbeat_intervall") && f.err.contains("line 2"))
        let busy = try Spawned("violin-mesh", ["--listen", scratch.ipc("m"), "--bus", "none"])
        defer { busy.destroy() }
        #expect(try eventually(deadline: 10) { try run("violin", ["ping", "--to", scratch.ipc("m")]).status == 0 })
        let badJSON = try run("violin", ["call", scratch.ipc("m"), "ping", "{oops"])
        #expect(badJSON.status == 64 && badJSON.err.contains("not valid JSON"))
    }

    /// A Python client written from PROTOCOL.md alone pings a service and reads an event.
    @Test func pythonClientSpeaksTheProtocol() throws {
        let scratch = try Scratch("interop")
        var procs: [Spawned] = []
        defer { procs.forEach { $0.destroy() }; scratch.cleanup() }
        procs.append(try startBus(scratch))
        procs.append(try Spawned("violin-policy", ["--listen", scratch.ipc("policy"), "--bus", scratch.ipc("pub"),
                                                   "--heartbeat-interval", "0.2", "--database", scratch.file("policy.sqlite")]))
        let script = packageRoot + "/Tests/SystemTests/interop_client.py"
        let r = try run("/usr/bin/env", ["python3", script, "--service", scratch.ipc("policy"),
                                        "--bus", scratch.ipc("sub"), "--topic", "policy.heartbeat"], timeout: 60)
        #expect(r.status == 0, "interop client failed: \(r.out)\n\(r.err)")
        #expect(r.out.contains("ping ok: policy"))
        #expect(r.out.contains("error ok: unknown_message_type"))
        #expect(r.out.contains("event ok: policy.heartbeat"))
    }
}

@Suite struct NativeLibrariesTests {
    /// The CLI is linked against both native libraries and reports their versions.
    @Test func versionNamesZeroMQAndLibvirt() throws {
        let r = try run("violin", ["version"])
        #expect(r.status == 0)
        #expect(r.out.contains("libzmq 4.") && r.out.contains("curve: true"))
        #expect(r.out.range(of: #"libvirt \d+\.\d+\.\d+"#, options: .regularExpression) != nil, "\(r.out)")
    }
}

@Suite struct TopCommandTests {
    /// `violin top --once` against a real violin-policy (in a namespace of its own, on the
    /// default ports): each host with its domain, cores and VMs — one whose executor does not
    /// answer marked silent —, the migrations in progress.
    @Test func oneFrameShowsHostsAndVMs() throws {
        let scratch = try Scratch("top")
        let ns = "vtop-\(UUID().uuidString.prefix(8).lowercased())"
        var policy: Spawned?
        defer {
            policy?.destroy()
            _ = try? sh("ip netns del \(ns)")
            scratch.cleanup()
        }
        try #require(try sh("ip netns add \(ns) && ip -n \(ns) link set lo up").status == 0)
        policy = try Spawned("/usr/sbin/ip", ["netns", "exec", ns, "\(binDir)/violin-policy", "--listen", "tcp://127.0.0.1:7703", "--bus", "none",
                                              "--subscribe", "none", "--database", scratch.file("policy.sqlite"), "--reconcile-interval", "0"])
        func violin(_ args: String) throws -> (status: Int32, out: String, err: String) {
            try sh("ip netns exec \(ns) '\(binDir)/violin' \(args)", timeout: 30)
        }
        try #require(try eventually(deadline: 20) { (try? violin("ping --to tcp://127.0.0.1:7703 --timeout 1"))?.status == 0 })
        for (type, body) in [("register_domain", #"{"id":"d1"}"#),
                             ("register_host", #"{"id":"h1","domain":"d1","cores":2,"memory_mb":2048,"executor":"tcp://127.0.0.1:7704"}"#),
                             ("create_violin", #"{"id":"v1","home_domain":"d1","head":"x1","vms":[{"id":"x1","memory_mb":128,"host":"h1"},{"id":"x2","memory_mb":128,"host":"h1"}]}"#)] {
            let r = try violin("call tcp://127.0.0.1:7703 \(type) '\(body)'")
            try #require(r.status == 0, "\(type): \(r.err)")
        }
        let r = try violin("top --once --control 127.0.0.1 --timeout 1")
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("VIOLIN top — policy paper, mode recommend") == true, "\(r.out)")
        let host = lines.first { $0.hasPrefix("h1 ") } ?? ""
        #expect(host.contains(" d1 ") && host.contains(" silent ") && host.hasSuffix("x1 x2"), "\(r.out)")
        #expect(lines.contains("MIGRATIONS IN PROGRESS: 0"), "\(r.out)")
        // The ledger holds no decision yet (requests are audit rows, not decisions).
        #expect(!lines.contains("LAST DECISIONS"), "\(r.out)")
        let bad = try violin("top --once --control 127.0.0.1 --interval 0.1")
        #expect(bad.status == 64 && bad.err.contains("--interval"), "\(bad.err)")
    }
}

@Suite struct SimulateCommandTests {
    /// `violin simulate` gives the same figures for the same seed in two separate processes
    /// (no dependence on hashing order), and writes both plots.
    @Test func sameSeedSameFiguresAcrossProcesses() throws {
        let a = try run("violin", ["simulate", "--seed", "3", "--json"], timeout: 120)
        let b = try run("violin", ["simulate", "--seed", "3", "--json"], timeout: 120)
        #expect(a.status == 0 && a.out == b.out)
        let v = try JSONText.parse(Array(a.out.utf8))
        for policy in ["paper", "cost-benefit"] {
            for key in ["runtime_vs_static1", "runtime_vs_static2", "s2c_vs_static1", "s2c_vs_static2", "migrations"] {
                #expect(v[policy]?[key]?.numberValue != nil, "\(policy).\(key)")
            }
        }
        let scratch = try Scratch("sim")
        defer { scratch.cleanup() }
        let r = try run("violin", ["simulate", "--seed", "3", "--out", scratch.path], timeout: 120)
        #expect(r.status == 0 && r.out.contains("Table 3"))
        for f in ["fig7-runtime.svg", "fig8-s2c.svg"] {
            let text = try String(contentsOfFile: scratch.file(f), encoding: .utf8)
            #expect(text.hasPrefix("<svg") && text.contains("autonomic-paper") && text.contains("<polyline"))
        }
    }

    /// `violin simulate --levers`: migrations only against levers first on both mixes, each
    /// with the levers it pulled, and a plot per mix with both runs of the better policy.
    @Test func leversAreComparedAndPlotted() throws {
        let scratch = try Scratch("sim-levers")
        defer { scratch.cleanup() }
        let r = try run("violin", ["simulate", "--levers", "--seed", "3", "--out", scratch.path], timeout: 300)
        #expect(r.status == 0, "\(r.err)")
        for mix in ["4.2", "memory"] {
            let rows = r.out.split(separator: "\n").filter { $0.hasPrefix("3 ") && $0.contains(" \(mix) ") }
            #expect(rows.count == 4 && rows.contains { $0.contains("levers+cost-benefit") }, "\(r.out)")
            let text = try String(contentsOfFile: scratch.file("levers-\(mix)-s2c.svg"), encoding: .utf8)
            #expect(text.hasPrefix("<svg") && text.contains("levers+cost-benefit") && text.contains("autonomic-cost-benefit")
                    && text.components(separatedBy: "<polyline").count == 5, "\(mix): \(text.prefix(400))")
        }
        // In the memory-pressure mix levers first pulled the balloon.
        let memory = r.out.split(separator: "\n").first { $0.hasPrefix("3 ") && $0.contains(" memory ") && $0.contains("levers+cost-benefit") }
        let balloons = memory.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect(balloons > 0, "\(String(describing: memory))")
    }
}

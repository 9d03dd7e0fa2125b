import ArgumentParser
import Foundation
import Hypervisor
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// `violin node ...`: one node of a deployment, from its configuration file.
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Check or run one node (control, host or both) from its configuration file.",
        discussion: "The file's keys (YAML):\n" + NodeConfig.help, subcommands: [Init.self, Check.self, Run.self, Prometheus.self])

    static func load(_ path: String, checkFiles: Bool = true) throws -> NodeConfig {
        do { return try NodeConfig.load(path: path, checkFiles: checkFiles) } catch {
            throw fail("\(path): \(error)", code: 78)
        }
    }

    /// Writes a node's file with a fresh key pair and its key table: keyed by default.
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a keyed node file: DIR/NODE.yaml and the node's key pair DIR/NODE.key (.pub); a control node's key table DIR/NODE.keys.",
            discussion: "The control node's key table lists who may talk to it, with roles: the operators' keys (--operator-key) to start with; "
                + "the hosts' keys come by enrolment (a host's first contact leaves its key pending; violin keys accept KEY --role host:<id>). "
                + "A host keeps its table from the control node's accepted keys (data_dir/keys.table, starting with --control-key as control).")
        @Option(help: "control, host or both.") var role: String
        @Option(help: "The node's id (a host's id in the inventory).") var node: String
        @Option(help: "The node's IPv4 or IPv6 address, as the other nodes reach it.") var address: String
        @Option(help: "The host's domain (host, both).") var domain: String?
        @Option(help: "The control node's address (host).") var controlAddress: String?
        @Option(help: "The control node's public-key file (host).") var controlKey: String?
        @Option(help: "An operator's public-key file, allowed with role operator (repeatable; a control node's).") var operatorKey: [String] = []
        @Option(help: "Where to write the files.") var dir = "."
        @Flag(help: "Overwrite existing files.") var force = false

        func validate() throws {
            guard ["control", "host", "both"].contains(role) else { throw ValidationError("--role: control, host or both") }
            guard Role.validName(node) else { throw ValidationError("--node: 1-64 letters, digits, '.', '_' or '-'") }
            guard NodeConfig.isAddress(address) else { throw ValidationError("--address: an IPv4 or IPv6 address") }
            if role != "control" { guard domain.map(Role.validName) == true else { throw ValidationError("--domain is required for a host") } }
            if role == "host" {
                guard controlAddress.map(NodeConfig.isAddress) == true, controlKey != nil else {
                    throw ValidationError("a host needs --control-address and --control-key (the control node's .pub)")
                }
            }
        }

        func run() throws {
            let base = "\(dir)/\(node)"
            for f in [base + ".yaml", base + ".key", base + ".pub", base + ".keys"] where !force && FileManager.default.fileExists(atPath: f) {
                throw fail("\(f) exists (use --force to overwrite)", code: Exit.usage)
            }
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let pair = try CurveKeyPair.generate()
            let own: [Role] = role == "control" ? [.control] : role == "host" ? [.host(node)] : [.control, .host(node)]
            var table: [KeyTable.Entry] = []
            do {
                try KeyFiles.write(pair, base: base, role: own.first)
                for k in operatorKey { table.append(.init(key: try KeyFiles.readPublicKey(k), roles: [.operator])) }
                if let controlKey { _ = try KeyFiles.readPublicKey(controlKey) }
                if role != "host" { try KeyTable.save(table, to: base + ".keys") }
            } catch { throw fail("\(error)", code: 1) }
            var yaml = "# Node \(node), written by violin node init. Keyed: every service serves over CURVE.\nrole: \(role)\nnode: \(node)\naddress: \(address)\n"
            if let domain { yaml += "domain: \(domain)\n" }
            if let controlAddress { yaml += "control_address: \(controlAddress)\n" }
            yaml += "key: \(base).key\n"
            if role != "host" { yaml += "allowed_keys: \(base).keys\n" }
            if let controlKey { yaml += "control_public_key: \(controlKey)\n" }
            guard FileManager.default.createFile(atPath: base + ".yaml", contents: Data(yaml.utf8)) else { throw fail("cannot write \(base).yaml", code: 1) }
            print("\(base).yaml  (key \(pair.publicKey), role \(own.map(\.description).joined(separator: ",")))")
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a node's file (exit 78 naming the key and line) and print the services it starts.")
        @Argument(help: "The node's configuration file.") var file: String
        @Flag(help: "Do not open the key files it names (for files written for another machine).") var noFiles = false
        func run() throws {
            let c = try NodeCommand.load(file, checkFiles: !noFiles)
            print("node \(c.node): role \(c.role.rawValue)\(c.runsHost ? ", domain \(c.domain)" : ""), address \(c.address)")
            for s in c.services { print("  violin-\(s.name) \(s.arguments.joined(separator: " "))") }
        }
    }

    /// A Prometheus scrape configuration for the deployment the node files describe: one job
    /// per node, its services as targets labelled with node, domain and service, its bearer
    /// token as Prometheus' `authorization` credentials file.
    struct Prometheus: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a Prometheus scrape configuration for the nodes' expositions (metrics_address).")
        @Argument(help: "The nodes' configuration files.") var files: [String]
        @Option(help: "Seconds between scrapes.") var scrapeInterval: Int = 5
        @Option(help: "Where Prometheus reads the token files, when not where the node files say (a directory: each file by its name).")
        var tokenDir: String?
        @Option(help: "Write here instead of standard output.") var out: String?

        func validate() throws {
            guard !files.isEmpty else { throw ValidationError("name at least one node file") }
            guard (1...3600).contains(scrapeInterval) else { throw ValidationError("--scrape-interval: 1 to 3600 seconds") }
        }

        func run() throws {
            let nodes = try files.map { try NodeCommand.load($0, checkFiles: false) }
            let text = try Self.config(nodes, interval: scrapeInterval, tokenDir: tokenDir)
            if let out {
                guard FileManager.default.createFile(atPath: out, contents: Data(text.utf8)) else { throw fail("cannot write \(out)", code: 1) }
            } else {
                print(text, terminator: "")
            }
        }

        static func config(_ nodes: [NodeConfig], interval: Int, tokenDir: String?) throws -> String {
            var y = "# Prometheus scrape configuration for VIOLIN (violin node prometheus).\nglobal:\n  scrape_interval: \(interval)s\n"
            y += "  evaluation_interval: \(interval)s\nscrape_configs:\n"
            var seen = Set<String>()
            for n in nodes {
                guard seen.insert(n.node).inserted else { throw fail("node \(n.node) is named twice", code: Exit.usage) }
                let services = n.services.compactMap { s in n.metricsListen(s.port).map { (s.name, $0) } }
                guard !services.isEmpty else { throw fail("\(n.path): no metrics_address, nothing to scrape", code: Exit.usage) }
                y += "  - job_name: violin-\(n.node)\n"
                let token = n.resolved["metrics_token_file"]
                if !token.isEmpty {
                    let path = tokenDir.map { $0 + "/" + (token as NSString).lastPathComponent } ?? token
                    y += "    authorization:\n      type: Bearer\n      credentials_file: '\(path)'\n"
                }
                y += "    static_configs:\n"
                for (service, target) in services {
                    y += "      - targets: ['\(target)']\n        labels:\n          node: '\(n.node)'\n          service: '\(service)'\n"
                    if n.runsHost { y += "          domain: '\(n.domain)'\n" }
                }
            }
            return y
        }
    }

    /// Starts the node's services, waits until each answers, registers a host with the control
    /// node's policy, then supervises them (a service that dies is restarted after a second)
    /// until SIGINT/SIGTERM, when it stops them in order.
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a node: start, register and supervise its services.")
        @Argument(help: "The node's configuration file.") var file: String
        @Option(help: "Directory of the violin-* executables (default: beside violin).") var bin: String?

        /// SIGINT or SIGTERM signals the semaphore (keep the sources alive while waiting on it).
        static func stopOnSignal() -> (DispatchSemaphore, [DispatchSourceSignal]) {
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
            let stop = DispatchSemaphore(value: 0)
            let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
                let s = DispatchSource.makeSignalSource(signal: sig)
                s.setEventHandler { stop.signal() }
                s.resume()
                return s
            }
            return (stop, sources)
        }

        func run() throws {
            let c = try NodeCommand.load(file)
            let dir = bin ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
            try FileManager.default.createDirectory(atPath: c.dataDir, withIntermediateDirectories: true)
            let (stop, sources) = Self.stopOnSignal()
            _ = sources
            var children: [String: ChildProcess] = [:]
            var schedule = RestartSchedule<String>()
            func now() -> Double { Double(monotonicMillis()) / 1000 }
            func start(_ s: NodeConfig.Service) throws {
                let log = "\(c.dataDir)/\(s.name).log"
                let p = try ChildProcess("\(dir)/violin-\(s.name)", s.arguments, stdout: .append(log), stderr: .append(log))
                children[s.name] = p
                schedule.started(s.name, at: now())
                try? "\(p.pid)\n".write(toFile: "\(c.dataDir)/\(s.name).pid", atomically: true, encoding: .utf8)
            }
            func stopAll() {
                for s in c.services.reversed() { children[s.name]?.terminate() }
                for s in c.services.reversed() { children[s.name]?.wait() }
            }
            let ctx = ZMQContext()
            defer { ctx.shutdown(); ctx.terminate() }
            func answers(_ s: NodeConfig.Service, deadline: Double) -> Bool {
                ServiceClient.waitUntilAnswers(context: ctx, endpoint: ServicePorts.endpoint(c.address, s.port), security: security(c, s),
                                               within: deadline, attemptMs: 500, alive: { children[s.name]?.isRunning != false })
            }
            do {
                try Self.seedKeys(c)
                for s in c.services {
                    try start(s)
                    guard answers(s, deadline: 30) else {
                        throw fail("violin-\(s.name) did not come up; see \(c.dataDir)/\(s.name).log", code: 1)
                    }
                }
                if c.runsHost { try register(c, ctx) }
                Self.syncKeys(c, ctx)
            } catch {
                stopAll()
                throw error
            }
            setvbuf(stdout, nil, _IOLBF, 0)
            print("node \(c.node) (\(c.role.rawValue)) running: \(c.services.map { "violin-\($0.name)" }.joined(separator: ", "))")
            var chores = Chores(nextWarning: now(), nextKeySync: now() + 10)
            // Supervise until told to stop: a service that dies starts again after the back-off
            // the mesh uses for its switches (RestartBackoff).
            while stop.wait(timeout: .now() + .milliseconds(200)) == .timedOut {
                chores.run(c, ctx, now: now())
                for s in c.services where children[s.name]?.isRunning == false && !schedule.isScheduled(s.name) {
                    let wait = schedule.exited(s.name, at: now())
                    FileHandle.standardError.write(Data("violin node: violin-\(s.name) exited (\(children[s.name]?.exitStatus ?? -1)); restarting in \(wait) s\n".utf8))
                }
                for name in schedule.due(at: now()) {
                    schedule.cancel(name)
                    guard let s = c.services.first(where: { $0.name == name }) else { continue }
                    do { try start(s) } catch { schedule.retry(name, at: now(), after: RestartBackoff.longest) }
                }
            }
            stopAll()
        }

        /// What a running node does now and then: says it is open (insecure: true) at once and
        /// every minute after; fetches its key table from the control node every 10 s.
        struct Chores {
            var nextWarning: Double, nextKeySync: Double
            mutating func run(_ c: NodeConfig, _ ctx: ZMQContext, now: Double) {
                Run.warnIfOpen(c, next: &nextWarning, now: now)
                guard now >= nextKeySync else { return }
                Run.syncKeys(c, ctx)
                nextKeySync = now + 10
            }
        }

        /// A host that keeps its key table from the control node starts with the control node's
        /// key alone (or the table it fetched last, across restarts).
        static func seedKeys(_ c: NodeConfig) throws {
            guard let path = c.managedKeyTable, !FileManager.default.fileExists(atPath: path) else { return }
            do {
                let control = try KeyFiles.readPublicKey(c.resolved["control_public_key"])
                try KeyTable.save([.init(key: control, roles: [.control])], to: path)
            } catch { throw fail("cannot write the key table \(path): \(error)", code: 1) }
        }

        /// Fetches the control node's accepted keys (`host_keys_request`) and rewrites the
        /// host's key table when they changed; its services read it again at their next message.
        static func syncKeys(_ c: NodeConfig, _ ctx: ZMQContext) {
            guard let path = c.managedKeyTable, let pair = try? KeyFiles.readKeyPair(c.resolved["key"]),
                  let control = try? KeyFiles.readPublicKey(c.resolved["control_public_key"]) else { return }
            let client = ServiceClient(context: ctx, endpoint: c.policyEndpoint, security: ClientSecurity(keyPair: pair, serverPublicKey: control),
                                       timeoutMs: 2000)
            defer { client.close() }
            guard let reply = try? client.call(PolicyAPI.HostKeys()) else { return }
            var entries = reply.accepted.compactMap { a -> KeyTable.Entry? in
                let roles = a.roles.compactMap(Role.init)
                return CurveKeyPair.isValidKey(a.key) && !roles.isEmpty ? .init(key: a.key, roles: roles) : nil
            }
            if !entries.contains(where: { $0.key == control }) { entries.append(.init(key: control, roles: [.control])) }
            let next = Dictionary(entries.map { ($0.key, $0.roles) }, uniquingKeysWith: +)
            guard (try? KeyTable.read(path)) != next else { return }
            do { try KeyTable.save(entries, to: path) } catch {
                FileHandle.standardError.write(Data("violin node: cannot write the key table \(path): \(error)\n".utf8))
            }
        }

        /// A node open on purpose says so, every minute.
        static func warnIfOpen(_ c: NodeConfig, next: inout Double, now: Double) {
            guard c.insecure, now >= next else { return }
            FileHandle.standardError.write(Data("violin node: INSECURE: no key on \(c.address); every service of this node answers anyone who reaches it (insecure: true in \(c.path))\n".utf8))
            next = now + 60
        }

        /// With a key, every service of the node serves over CURVE under that key (and allows it).
        func security(_ c: NodeConfig, _ s: NodeConfig.Service) -> ClientSecurity? {
            guard !c.resolved["key"].isEmpty, let pair = try? KeyFiles.readKeyPair(c.resolved["key"]) else { return nil }
            return ClientSecurity(keyPair: pair, serverPublicKey: pair.publicKey)
        }

        /// Enters this host (and its domain) in the control node's inventory; a host already
        /// there (a restarted node) is left as it is.
        func register(_ c: NodeConfig, _ ctx: ZMQContext) throws {
            var cores = Int(c.resolved["cores"]) ?? 0, memory = Int(c.resolved["memory_mb"]) ?? 0
            if cores == 0 || memory == 0, let hv = try? LibvirtHypervisor(uri: c.resolved["libvirt_uri"]), let info = try? hv.host() {
                if cores == 0 { cores = info.cpus }
                if memory == 0 { memory = Int(info.memoryKiB / 1024) }
            }
            var sec: ClientSecurity?
            var ownKey = ""
            if !c.resolved["key"].isEmpty, let pair = try? KeyFiles.readKeyPair(c.resolved["key"]) {
                ownKey = pair.publicKey
                let server = c.role == .both ? pair.publicKey : (try? KeyFiles.readPublicKey(c.resolved["control_public_key"])) ?? ""
                sec = ClientSecurity(keyPair: pair, serverPublicKey: server)
            }
            let client = ServiceClient(context: ctx, endpoint: c.policyEndpoint, security: sec, timeoutMs: 3000)
            defer { client.close() }
            // A control node that does not answer (down, or a link out) is asked again until
            // register_wait has passed; one that refuses ends it at once.
            let clock = { Double(monotonicMillis()) / 1000 }
            let giveUp = clock() + (Double(c.resolved["register_wait"]) ?? 120)
            var said = false
            func tolerate<R: RequestBody>(_ request: R) throws {
                while true {
                    do { _ = try client.call(request); return } catch .error(let e) where e.code == .conflict { return } catch .noReply(let f) {
                        guard clock() < giveUp else { throw fail("cannot register with the control node at \(c.policyEndpoint): \(f)", code: 1) }
                        if !said {
                            FileHandle.standardError.write(Data("violin node: waiting for the control node at \(c.policyEndpoint) (\(f))\n".utf8))
                            said = true
                        }
                        usleep(1_000_000)
                    } catch {
                        throw fail("cannot register with the control node at \(c.policyEndpoint): \(error)", code: 1)
                    }
                }
            }
            try tolerate(PolicyAPI.RegisterDomain(id: c.domain))
            try tolerate(PolicyAPI.RegisterHost(id: c.node, domain: c.domain, cores: max(1, cores), memoryMB: max(1, memory),
                                                executor: ServicePorts.endpoint(c.address, ServicePorts.executor), monitor: ServicePorts.endpoint(c.address, ServicePorts.monitor), key: ownKey,
                                                mesh: ServicePorts.endpoint(c.address, ServicePorts.mesh), migrationURI: c.resolved["migration_uri"]))
        }
    }
}

/// `violin cluster ...`: the whole deployment, as the control node knows it.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "The nodes of a deployment: their health, and draining a host.",
        subcommands: [Status.self, Drain.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every node, its role and domain, each service's health (ping round trip), version and uptime, and the VIOLINs and VMs it holds.")
        @Option(help: "The control node's address.") var control = "127.0.0.1"
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let ctx = ZMQContext()
            defer { ctx.shutdown(); ctx.terminate() }
            let sec = try connection.security()
            /// `key`: the server's public key; nil: the control node's (from --server-key).
            func call<R: RequestBody>(_ endpoint: String, _ request: R, key: String? = nil) -> (R.Reply?, Double) {
                var security = sec
                if let key { security = key.isEmpty ? nil : sec.map { ClientSecurity(keyPair: $0.keyPair, serverPublicKey: key) } }
                let client = ServiceClient(context: ctx, endpoint: endpoint, security: security,
                                           timeoutMs: Int(connection.timeout * 1000))
                defer { client.close() }
                let t0 = DispatchTime.now().uptimeNanoseconds
                let r = try? client.call(request, retries: 0)
                return (r, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            func service(_ name: String, _ endpoint: String, key: String? = nil) -> JSONValue {
                let (ping, rtt) = call(endpoint, AdminAPI.Ping(), key: key)
                let (status, _) = ping == nil ? (nil, 0) : call(endpoint, AdminAPI.Status(), key: key)
                return ["service": .string(name), "endpoint": .string(endpoint), "healthy": .bool(ping != nil),
                        "rtt_ms": ping == nil ? .null : .number((rtt * 10).rounded() / 10),
                        "version": status.map { .string($0.version) } ?? .null, "uptime_s": status.map { .number($0.uptimeS) } ?? .null]
            }
            let policyEP = ServicePorts.endpoint(control, ServicePorts.policy)
            // A node reached without CURVE is open to anyone who reaches it: marked insecure.
            var nodes: [JSONValue] = [["node": "control", "role": "control", "domain": .null, "address": .string(control),
                                       "insecure": .bool(sec == nil && !control.hasPrefix("127.")),
                                       "services": [service("bus", ServicePorts.endpoint(control, ServicePorts.bus)),
                                                    service("policy", policyEP)]]]
            let (inventory, _) = call(policyEP, PolicyAPI.Inventory())
            guard let inventory else { throw fail("the control node's policy at \(policyEP) does not answer", code: Exit.noReply) }
            var violinOf: [String: String] = [:]
            for v in inventory.vms { violinOf[v.id] = v.violin }
            for h in inventory.hosts {
                let hostPort = h.executor.replacingOccurrences(of: "tcp://", with: "")
                let address = hostPort.hasPrefix("[") ? String(hostPort.dropFirst().prefix { $0 != "]" })
                                                      : hostPort.split(separator: ":").first.map(String.init) ?? ""
                let (vmsReply, _) = call(h.executor, ExecutorAPI.VMs(), key: h.key)
                var vms: [JSONValue] = []
                var vnis = Set<UInt32>()
                for v in vmsReply?.vms ?? [] {
                    vms.append(["name": .string(v.name), "state": .string(v.state), "vni": v.vni.map { .number(Double($0)) } ?? .null,
                                "violin": violinOf[v.name].map { .string($0) } ?? .null])
                    if let vni = v.vni { vnis.insert(vni) }
                }
                let services: JSONValue = [service("mesh", ServicePorts.endpoint(address, ServicePorts.mesh), key: h.key), service("monitor", ServicePorts.endpoint(address, ServicePorts.monitor), key: h.key),
                                           service("executor", h.executor, key: h.key)]
                nodes.append(["node": .string(h.id), "role": "host", "domain": .string(h.domain), "address": .string(address),
                              "draining": .bool(h.draining), "insecure": .bool(h.key.isEmpty && !address.hasPrefix("127.")), "services": services,
                              "vms": .array(vms), "violins": .array(vnis.sorted().map { .number(Double($0)) })])
            }
            let all: JSONValue = ["nodes": .array(nodes), "mode": .string(inventory.mode), "policy": .string(inventory.policy)]
            if json { printJSON(all); return }
            Self.printTable(nodes)
        }

        /// One line per service, the node's columns on its first.
        static func printTable(_ nodes: [JSONValue]) {
            print("NODE      ROLE     DOMAIN  SERVICE   HEALTH  RTT ms  VERSION   UPTIME s  VIOLINs / VMs")
            for n in nodes {
                guard case .array(let services)? = n["services"] else { continue }
                for (i, s) in services.enumerated() {
                    let first = i == 0
                    func col(_ v: String, _ w: Int) -> String { v.padding(toLength: w, withPad: " ", startingAt: 0) }
                    let nodeName = first ? (n["node"]?.stringValue ?? "") + (n["draining"]?.boolValue == true ? "*" : "")
                        + (n["insecure"]?.boolValue == true ? "!" : "") : ""
                    var extra = ""
                    if first, case .array(let vms)? = n["vms"] {
                        let vnis = (n["violins"]?.items ?? []).compactMap(\.intValue)
                        extra = "\(vnis.map(String.init).joined(separator: ",")) / \(vms.compactMap { $0["name"]?.stringValue }.joined(separator: " "))"
                    }
                    print(col(nodeName, 10) + col(first ? n["role"]?.stringValue ?? "" : "", 9) + col(first ? n["domain"]?.stringValue ?? "-" : "", 8)
                          + col(s["service"]?.stringValue ?? "", 10) + col(s["healthy"]?.boolValue == true ? "ok" : "DOWN", 8)
                          + col(s["rtt_ms"]?.numberValue.map { String($0) } ?? "-", 8) + col(s["version"]?.stringValue ?? "-", 10)
                          + col(s["uptime_s"]?.numberValue.flatMap { $0.isFinite && abs($0) < 1e15 ? String(Int($0)) : nil } ?? "-", 10) + extra)
                }
            }
            if nodes.contains(where: { $0["insecure"]?.boolValue == true }) {
                print("! insecure: no key — its services answer anyone who reaches them (insecure: true in its node file)")
            }
        }
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain a host: the policy migrates its VMs away; when it holds none, it leaves the inventory.")
        @Argument(help: "The host's id.") var host: String
        @Option(help: "The control node's address.") var control = "127.0.0.1"
        @Option(help: "Seconds to wait for the host to empty.") var wait: Double = 300
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let policyEP = ServicePorts.endpoint(control, ServicePorts.policy)
            let plan = try connection.with(policyEP) { client in
                do { return try client.call(PolicyAPI.DrainHost(id: host), retries: connection.retries) } catch {
                    throw fail("drain: \(error)", code: Exit.errorReply)
                }
            }
            for m in plan.moves { print("  \(m.vm) -> \(m.to): \(m.outcome)") }
            if !plan.stuck.isEmpty {
                throw fail("no host can take \(plan.stuck.joined(separator: ", ")); \(host) stays (draining)", code: Exit.errorReply)
            }
            let end = Date().addingTimeInterval(wait)
            while true {
                let inv = try connection.with(policyEP) { client in try? client.call(PolicyAPI.Inventory(), retries: connection.retries) }
                let left = (inv?.vms ?? []).filter { $0.host == host }.map(\.id)
                if left.isEmpty { break }
                guard Date() < end else { throw fail("\(host) still holds \(left.joined(separator: ", ")) after \(Int(wait)) s", code: Exit.noReply) }
                usleep(200_000)
            }
            try connection.with(policyEP) { client in
                do { _ = try client.call(PolicyAPI.RemoveHost(id: host), retries: connection.retries) } catch {
                    throw fail("remove \(host): \(error)", code: Exit.errorReply)
                }
            }
            print("\(host) drained and removed")
        }
    }
}

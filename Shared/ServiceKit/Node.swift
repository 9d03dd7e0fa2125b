import Foundation

/// One node of a deployment, from its configuration file (YAML, edited by hand). A node has a
/// role: a **control** node runs `violin-bus` and `violin-policy`; a **host** node runs
/// `violin-mesh`, `violin-monitor` and `violin-executor` beside its libvirt daemon; `both` runs
/// all five. Ports are fixed: bus 7700 (requests), 7710 (publishers), 7711 (subscribers),
/// mesh 7701, monitor 7702, policy 7703, executor 7704.
public struct NodeConfig: Sendable {
    public enum Role: String, Sendable { case control, host, both }

    public static let keys: [ConfigKey] = [
        ConfigKey("role", default: "", help: "control, host or both (required).",
                  validate: { ["control", "host", "both"].contains($0) ? nil : "control, host or both" }),
        ConfigKey("node", default: "", help: "This node's id (default: the hostname); a host's id in the inventory."),
        ConfigKey("domain", default: "", help: "The administrative domain of a host node (required for host)."),
        ConfigKey("address", default: "", help: "This node's address, IPv4 or IPv6, as the other nodes reach it (required); a host's switches tunnel from it, and one VIOLIN's hosts share a family.",
                  validate: { isAddress($0) ? nil : "an IPv4 address like 10.0.0.2 or an IPv6 one like 2001:db8::2" }),
        ConfigKey("control_address", default: "", help: "The control node's address, IPv4 or IPv6 (host; default: address, for role both).",
                  validate: { $0.isEmpty || isAddress($0) ? nil : "an IPv4 address like 10.0.0.1 or an IPv6 one like 2001:db8::1" }),
        ConfigKey("libvirt_uri", default: "qemu:///system", help: "The host's libvirt."),
        ConfigKey("migration_uri", default: "", help: "How other hosts' libvirt reach this one (default: qemu+tcp://<address>/system)."),
        ConfigKey("libvirt_pki", default: "", help: "Host: the executor's TLS client certificate directory for other hosts' qemu+tls libvirt (cacert.pem, clientcert.pem, clientkey.pem; empty: /etc/pki).",
                  validate: { $0.isEmpty || $0.hasPrefix("/") ? nil : "an absolute path" }),
        ConfigKey("cores", default: "0", help: "Cores offered to VMs, for the policy (0: what libvirt reports).",
                  validate: { Int($0).map { $0 >= 0 } == true ? nil : "an integer >= 0" }),
        ConfigKey("memory_mb", default: "0", help: "Memory offered to VMs, MiB (0: what libvirt reports).",
                  validate: { Int($0).map { $0 >= 0 } == true ? nil : "an integer >= 0" }),
        ConfigKey("data_dir", default: "/var/lib/violin", help: "Databases, pid files and the mesh's run directory."),
        ConfigKey("log_level", default: "info", help: "Log level of every service.", validate: Validate.logLevel),
        ConfigKey("policy", default: "paper", help: "The control node's policy: paper or cost-benefit.",
                  validate: { ["paper", "cost-benefit"].contains($0) ? nil : "paper or cost-benefit" }),
        ConfigKey("evaluate_interval", default: "30", help: "Seconds between policy rounds (control).", validate: Validate.positiveNumber),
        ConfigKey("host_lost_after", default: "30", help: "Seconds a host may not answer before the policy takes it and its VMs for lost (control).",
                  validate: Validate.positiveNumber),
        ConfigKey("levers", default: "false", help: "true: the policy tries fine-grain levers (CPU weight, balloon, network cap) before migrations (control).",
                  validate: { ["true", "false"].contains($0) ? nil : "true or false" }),
        ConfigKey("lever_settle", default: "60", help: "Seconds a lever's effect is awaited before it is measured and its host may see a migration (control).",
                  validate: Validate.positiveNumber),
        ConfigKey("high_demand_percent", default: "75", help: "A VM whose smoothed CPU use is above this share of its vCPU (1-100 %) is high-demand (control).",
                  validate: { v in Double(v).map { (1...100).contains($0) } == true ? nil : "a number 1-100" }),
        ConfigKey("traffic_interval", default: "10", help: "Seconds between a host's mesh.traffic events, who talks to whom through its switches (host; 0: none).",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("switch_queues", default: "1", help: "Forwarding threads of each of the host's switches, 1-16 (host; violin-switch --queues).",
                  validate: { v in Int(v).map { (1...16).contains($0) } == true ? nil : "a whole number 1-16" }),
        ConfigKey("link_mbit_s", default: "0", help: "Each host's link to the others, Mbit/s, for the network lever (control; 0: unknown, no caps).",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("reconcile_interval", default: "10", help: "Seconds between the policy's comparisons of its inventory with the executors (control; 0: never).",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("sample_interval", default: "5", help: "Seconds between monitor samples (host).", validate: Validate.positiveNumber),
        ConfigKey("image_dir", default: "/var/lib/violin/images", help: "The host's image store: a directory per image with vmlinuz, and optionally initrd and cmdline (host)."),
        ConfigKey("uplink_network", default: "default", help: "The libvirt NAT network a head node's uplink NIC joins, defined on every host under this name (host)."),
        ConfigKey("register_wait", default: "120", help: "Host: seconds a starting node keeps asking a control node that does not answer to register it (the control node down, a link out); a refusal ends it at once.",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("key", default: "", help: "This node's CURVE key-pair file (violin keygen); empty: no CURVE."),
        ConfigKey("allowed_keys", default: "", help: "The key table: the public keys allowed in and the role of each (`<key> <role>` lines, or a directory of .pub files with role lines): on the control node the hosts' and operators'; on a host (optional) the control node's, the other hosts' and operators' — without it a host keeps data_dir/keys.table from the control node's accepted keys."),
        ConfigKey("control_public_key", default: "", help: "Host: the control node's public-key file."),
        ConfigKey("metrics_address", default: "", help: "The address every service of the node serves its Prometheus exposition on (/metrics, port = its request port + 2000: bus 9700, mesh 9701, monitor 9702, policy 9703, executor 9704); empty: none. Beyond loopback it needs metrics_token_file.",
                  validate: { $0.isEmpty || HTTPAddress("\($0.contains(":") ? "[\($0)]" : $0):0") != nil ? nil : "an IPv4 or IPv6 address" }),
        ConfigKey("metrics_token_file", default: "", help: "The bearer token (a file of one line) every scrape of the node's expositions and its web view must carry; required beyond loopback."),
        ConfigKey("web_listen", default: "", help: "Control node: HOST:PORT of the live web view (the federation, migrations, decisions; read-only); empty: none. Beyond loopback it needs metrics_token_file.",
                  validate: Validate.httpAddress),
        ConfigKey("insecure", default: "false", help: "true: run without a key on a non-loopback address (every service answers anyone; the node warns every minute).",
                  validate: { ["true", "false"].contains($0) ? nil : "true or false" }),
    ]

    public let path: String
    public let resolved: ResolvedConfig
    public var role: Role { Role(rawValue: resolved["role"])! }
    public var node: String { resolved["node"] }
    public var domain: String { resolved["domain"] }
    public var address: String { resolved["address"] }
    public var controlAddress: String { resolved["control_address"].isEmpty ? address : resolved["control_address"] }
    public var dataDir: String { resolved["data_dir"] }
    public var runsControl: Bool { role != .host }
    public var runsHost: Bool { role != .control }
    /// Open on purpose: no key on an address others reach (`insecure: true`).
    public var insecure: Bool { resolved["key"].isEmpty && !Self.isLoopback(address) }

    static func isLoopback(_ address: String) -> Bool { address.hasPrefix("127.") || address == "::1" }

    /// An IPv4 or IPv6 address (no port, no brackets).
    public static func isAddress(_ v: String) -> Bool {
        isIPv4(v) || (v.contains(":") && HTTPAddress("[\(v)]:0") != nil)
    }

    public static func isIPv4(_ v: String) -> Bool {
        let parts = v.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { !$0.isEmpty && $0.count <= 3 && UInt8($0) != nil }
    }

    /// Reads and checks a node's file: unknown keys, bad values, keys a role needs, and (unless
    /// `checkFiles` is false) the key files it names. Errors name the key and the line.
    public static func load(path: String, checkFiles: Bool = true, hostname: String = ProcessInfo.processInfo.hostName)
        throws(ConfigError) -> NodeConfig
    {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(key: "(file)", source: .file(path: path, line: nil), reason: "cannot read the file")
        }
        return try parse(text: text, path: path, checkFiles: checkFiles, hostname: hostname)
    }

    public static func parse(text: String, path: String, checkFiles: Bool = true, hostname: String = "localhost")
        throws(ConfigError) -> NodeConfig
    {
        let file = try ConfigResolver.parseFile(text: text, path: path)
        var r = try ConfigResolver.resolve(keys: keys, commandLine: [:], environment: [:], file: file, filePath: path)
        func fail(_ key: String, _ reason: String) -> ConfigError {
            ConfigError(key: key, source: r.sources[key] ?? .file(path: path, line: nil), reason: reason)
        }
        if r["role"].isEmpty { throw fail("role", "required: control, host or both") }
        if r["address"].isEmpty { throw fail("address", "required: this node's IPv4 or IPv6 address") }
        var values = r.values
        if values["node"]?.isEmpty ?? true { values["node"] = hostname }
        if values["migration_uri"]?.isEmpty ?? true { values["migration_uri"] = "qemu+tcp://\(ServicePorts.bracketed(r["address"]))/system" }
        r = ResolvedConfig(values: values, sources: r.sources)
        let config = NodeConfig(path: path, resolved: r)
        if config.runsHost {
            if r["domain"].isEmpty { throw fail("domain", "required for a host node") }
            if config.role == .host && r["control_address"].isEmpty { throw fail("control_address", "required for a host node") }
        }
        // Secure by default: a node others can reach has a key, unless its file says otherwise.
        if config.insecure && r["insecure"] != "true" {
            throw fail("key", "a node on \(r["address"]) (not loopback) needs a key: violin keygen --out FILE, then key: FILE.key "
                       + "(and allowed_keys); or insecure: true to run every service open to anyone who reaches it")
        }
        // Never an HTTP endpoint open beyond loopback: a token, or loopback addresses.
        if r["metrics_token_file"].isEmpty {
            if !r["metrics_address"].isEmpty, !(HTTPAddress(config.metricsListen(0) ?? "")?.isLoopback ?? false) {
                throw fail("metrics_address", "\(r["metrics_address"]) is beyond loopback: set metrics_token_file (the bearer token Prometheus sends)")
            }
            if let web = HTTPAddress(r["web_listen"]), !web.isLoopback {
                throw fail("web_listen", "\(web) is beyond loopback: set metrics_token_file (the bearer token the browser sends)")
            }
        }
        if checkFiles {
            if !r["metrics_token_file"].isEmpty, (try? String(contentsOfFile: r["metrics_token_file"], encoding: .utf8)) == nil {
                throw fail("metrics_token_file", "cannot read \(r["metrics_token_file"])")
            }
            if !r["key"].isEmpty {
                do { _ = try KeyFiles.readKeyPair(r["key"]) } catch { throw fail("key", "\(error)") }
                if config.runsControl && r["allowed_keys"].isEmpty { throw fail("allowed_keys", "required on a control node with a key") }
                if config.role == .host && r["control_public_key"].isEmpty { throw fail("control_public_key", "required on a host node with a key") }

            }
            if !r["allowed_keys"].isEmpty {
                do { _ = try KeyTable.read(r["allowed_keys"]) } catch { throw fail("allowed_keys", "\(error)") }
            }
            if !r["control_public_key"].isEmpty {
                do { _ = try KeyFiles.readPublicKey(r["control_public_key"]) } catch { throw fail("control_public_key", "\(error)") }
            }
        }
        return config
    }

    /// One service of the node and its command line.
    public struct Service: Sendable, Equatable {
        public let name: String          // bus, policy, mesh, monitor, executor
        public let arguments: [String]
        public let port: Int             // where it answers requests
    }

    /// A host node with a key and no `allowed_keys` keeps its key table from the control
    /// node's accepted keys (`host_keys_request`), in this file.
    public var managedKeyTable: String? {
        role == .host && !resolved["key"].isEmpty && resolved["allowed_keys"].isEmpty ? "\(dataDir)/keys.table" : nil
    }

    /// Where a service answering on `port` serves its exposition (`metrics_address`:port+2000).
    public func metricsListen(_ port: Int) -> String? {
        let a = resolved["metrics_address"]
        guard !a.isEmpty else { return nil }
        return a.contains(":") ? "[\(a)]:\(port + 2000)" : "\(a):\(port + 2000)"
    }

    /// The services this node runs, with the flags that wire them to each other.
    public var services: [Service] {
        let r = resolved
        let a = address, c = controlAddress, d = dataDir, n = node
        var common = ["--log-level", r["log_level"]]
        if !r["metrics_token_file"].isEmpty { common += ["--metrics-token-file", r["metrics_token_file"]] }
        var out: [Service] = []
        let key = r["key"]
        if runsControl {
            var curve: [String] = []
            if !key.isEmpty { curve = ["--curve-key", key, "--curve-allowed", r["allowed_keys"]] }
            out.append(Service(name: "bus", arguments: ["--listen", ServicePorts.endpoint(a, ServicePorts.bus), "--publishers", ServicePorts.endpoint(a, ServicePorts.busPublishers),
                                                        "--subscribers", ServicePorts.endpoint(a, ServicePorts.busSubscribers), "--instance", "bus@\(n)"] + curve + common, port: ServicePorts.bus))
            // The policy reaches its own bus as any client does (with the node's key, as the bus's).
            let busKey = key.isEmpty ? [] : ["--bus-public-key", key]
            out.append(Service(name: "policy", arguments: ["--listen", ServicePorts.endpoint(a, ServicePorts.policy), "--bus", ServicePorts.endpoint(a, ServicePorts.busPublishers),
                                                           "--subscribe", ServicePorts.endpoint(a, ServicePorts.busSubscribers), "--database", "\(d)/policy.sqlite",
                                                           "--policy", r["policy"], "--evaluate-interval", r["evaluate_interval"],
                                                           "--reconcile-interval", r["reconcile_interval"], "--host-lost-after", r["host_lost_after"],
                                                           "--levers", r["levers"],
                                                           "--lever-settle", r["lever_settle"], "--link-mbit-s", r["link_mbit_s"],
                                                           "--high-demand-percent", r["high_demand_percent"],
                                                           "--instance", "policy@\(n)"] + curve + busKey + common, port: ServicePorts.policy))
        }
        if runsHost {
            // With a key, host services serve over CURVE to the allowed keys and publish to the
            // control node's bus over CURVE.
            var busCurve: [String] = []
            if !key.isEmpty {
                busCurve = ["--curve-key", key, "--curve-allowed", managedKeyTable ?? r["allowed_keys"],
                            "--bus-public-key", role == .both ? key : r["control_public_key"]]
            }
            common += busCurve
            let bus = ServicePorts.endpoint(c, ServicePorts.busPublishers)
            out.append(Service(name: "mesh", arguments: ["--listen", ServicePorts.endpoint(a, ServicePorts.mesh), "--host-address", a, "--run-dir", "\(d)/mesh",
                                                         "--bus", bus, "--instance", "mesh@\(n)", "--traffic-interval", r["traffic_interval"],
                                                         "--switch-queues", r["switch_queues"]] + common, port: ServicePorts.mesh))
            out.append(Service(name: "monitor", arguments: ["--listen", ServicePorts.endpoint(a, ServicePorts.monitor), "--libvirt-uri", r["libvirt_uri"],
                                                            "--sample-interval", r["sample_interval"], "--bus", bus,
                                                            "--mesh", ServicePorts.endpoint(a, ServicePorts.mesh), "--memory-mb", r["memory_mb"],
                                                            "--instance", "monitor@\(n)"] + common, port: ServicePorts.monitor))
            out.append(Service(name: "executor", arguments: ["--listen", ServicePorts.endpoint(a, ServicePorts.executor), "--host-id", n, "--libvirt-uri", r["libvirt_uri"],
                                                             "--migration-uri", r["migration_uri"], "--mesh", ServicePorts.endpoint(a, ServicePorts.mesh),
                                                             "--database", "\(d)/executor.sqlite", "--memory-mb", r["memory_mb"], "--image-dir", r["image_dir"],
                                                             "--uplink-network", r["uplink_network"], "--control", policyEndpoint,
                                                             "--libvirt-pki", r["libvirt_pki"],
                                                             "--bus", bus, "--instance", "executor@\(n)"] + common, port: ServicePorts.executor))
        }
        return out.map { s in
            var args = s.arguments
            if let m = metricsListen(s.port) { args += ["--metrics-listen", m] }
            if s.name == "policy", !r["web_listen"].isEmpty { args += ["--web-listen", r["web_listen"]] }
            return Service(name: s.name, arguments: args, port: s.port)
        }
    }

    /// The control node's endpoints, as a host (or a client) reaches them.
    public var policyEndpoint: String { ServicePorts.endpoint(controlAddress, ServicePorts.policy) }
    public var busSubscribers: String { ServicePorts.endpoint(controlAddress, ServicePorts.busSubscribers) }

    /// Every key, its default and its meaning (for --help and the guide).
    public static var help: String {
        keys.map { k in
            "  \(k.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(k.help)" + (k.defaultValue.isEmpty ? "" : " [\(k.defaultValue)]")
        }.joined(separator: "\n")
    }
}

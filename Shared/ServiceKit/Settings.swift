import Foundation
import VIOLINProtocol
import ZeroMQ

/// What distinguishes one service from another at start-up.
public struct ServiceDescription: Sendable {
    public let name: String            // "mesh", "monitor", ...: the topic prefix of its events
    public let defaultListen: String
    public let extraKeys: [ConfigKey]

    public init(name: String, defaultListen: String, extraKeys: [ConfigKey] = []) {
        self.name = name
        self.defaultListen = defaultListen
        self.extraKeys = extraKeys
    }

    /// Every key the service reads, with its default. The single list the docs print.
    public var keys: [ConfigKey] {
        [
            ConfigKey("listen", default: defaultListen,
                      help: "Endpoint(s) where the service answers requests (comma-separated).",
                      validate: Validate.endpoints),
            ConfigKey("bus", default: "tcp://127.0.0.1:\(ServicePorts.busPublishers)",
                      help: "The bus's publisher endpoint this service sends its events to ('none' to publish nowhere).",
                      validate: Validate.optionalEndpoint),
            ConfigKey("instance", default: "\(name)@\(ProcessInfo.processInfo.hostName)",
                      help: "Name of this instance in headers and events."),
            ConfigKey("heartbeat_interval", default: "5",
                      help: "Seconds between two <service>.heartbeat events.", validate: Validate.positiveNumber),
            ConfigKey("max_message_bytes", default: String(1 << 20),
                      help: "Largest request accepted, all frames together; larger ones get message_too_large.",
                      validate: Validate.positiveInteger),
            ConfigKey("log_level", default: "info", help: "swift-log level.", validate: Validate.logLevel),
            ConfigKey("curve_key", default: "",
                      help: "Key-pair file (violin keygen). When set, every tcp:// endpoint this service binds requires CURVE."),
            ConfigKey("curve_allowed", default: "",
                      help: "The key table: the public keys allowed to connect and the role of each (`<key> <role>` lines, or a directory of *.pub files with role lines)."),
            ConfigKey("bus_public_key", default: "",
                      help: "Public-key file of the bus, when the bus requires CURVE."),
            ConfigKey("metrics_listen", default: "",
                      help: "HOST:PORT where the Prometheus exposition is served at /metrics (empty: not served). Beyond loopback it needs metrics_token_file.",
                      validate: Validate.httpAddress),
            ConfigKey("metrics_token_file", default: "",
                      help: "File holding the bearer token every scrape must send (Prometheus' `authorization` setting); required unless metrics_listen is loopback."),
        ] + extraKeys
    }
}

extension ServiceDescription {
    public struct UsageError: Error, CustomStringConvertible { public let description: String }

    /// Reads the service's own keys from the command line: `--run-dir X` or `--run-dir=X`.
    /// Pure; an unknown flag or a missing value is an error naming it.
    public func parseServiceKeys(_ args: [String]) -> Result<[String: String], UsageError> {
        let byFlag = Dictionary(uniqueKeysWithValues: extraKeys.map { ($0.flag, $0.name) })
        var out: [String: String] = [:]
        var i = 0
        while i < args.count {
            let arg = args[i]
            let parts = arg.split(separator: "=", maxSplits: 1).map(String.init)
            guard let name = byFlag[parts[0]] else {
                let known = extraKeys.map(\.flag).joined(separator: ", ")
                return .failure(UsageError(description: "unknown option '\(arg)'" + (known.isEmpty ? "" : " (this service's own: \(known))")))
            }
            if parts.count == 2 { out[name] = parts[1]; i += 1; continue }
            guard i + 1 < args.count else { return .failure(UsageError(description: "\(arg) needs a value")) }
            out[name] = args[i + 1]
            i += 2
        }
        return .success(out)
    }

    /// The service's own keys for --help.
    public var serviceKeysHelp: String {
        extraKeys.map { "  \($0.flag) VALUE    \($0.help) (default: \($0.defaultValue.isEmpty ? "none" : $0.defaultValue))" }
            .joined(separator: "\n")
    }
}

/// A service's configuration, typed.
public struct ServiceSettings: Sendable {
    public var service: String
    public var instance: String
    public var listen: [String]
    public var bus: String?
    public var heartbeatInterval: Double
    public var maxMessageBytes: Int
    public var logLevel: String
    public var server: ServerSecurity?
    /// The accepted client keys and their roles (with `server`).
    public var keys: KeyTable?
    /// The node this instance runs on: what follows the '@' of `instance` (a host's id).
    public var node: String { instance.firstIndex(of: "@").map { String(instance[instance.index(after: $0)...]) } ?? "" }

    /// Who a connection's key (its ZAP `User-Id`) is: nil when it is not (or no longer) in the
    /// key table. Without CURVE, or on a connection without ZAP (ipc, local to the host), the
    /// caller is local; the node's own key is trusted. The runtime and the bus both ask here.
    public func caller(key: String?) -> Caller? {
        guard let server, let key, !key.isEmpty else { return .local }
        if key == server.keyPair.publicKey { return Caller(key: key, roles: [], trusted: true) }
        return keys?.caller(key)
    }
    /// Our key pair and the bus's public key, when the bus requires CURVE.
    public var busSecurity: ClientSecurity?
    /// Where the Prometheus exposition is served, and the bearer token a scrape must carry.
    public var metricsListen: HTTPAddress?
    public var metricsToken: String?
    public var resolved: ResolvedConfig

    public init(service: String, instance: String, listen: [String], bus: String?, heartbeatInterval: Double = 5,
                maxMessageBytes: Int = 1 << 20, logLevel: String = "info", server: ServerSecurity? = nil,
                keys: KeyTable? = nil, busSecurity: ClientSecurity? = nil,
                resolved: ResolvedConfig = ResolvedConfig(values: [:], sources: [:])) {
        self.service = service
        self.instance = instance
        self.listen = listen
        self.bus = bus
        self.heartbeatInterval = heartbeatInterval
        self.maxMessageBytes = maxMessageBytes
        self.logLevel = logLevel
        self.server = server
        self.keys = keys
        self.busSecurity = busSecurity
        self.resolved = resolved
    }

    /// Reads the command line, the environment and the file named by `configPath`.
    public static func load(_ description: ServiceDescription, commandLine: [String: String],
                            configPath: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigError) -> ServiceSettings
    {
        var file: [String: (value: String, line: Int?)] = [:]
        let path = configPath ?? environment["VIOLIN_CONFIG"]
        if let path, !path.isEmpty {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigError(key: "config", source: .file(path: path, line: nil), reason: "cannot read the file")
            }
            file = try ConfigResolver.parseFile(text: text, path: path)
        }
        let r = try ConfigResolver.resolve(keys: description.keys, commandLine: commandLine,
                                           environment: environment, file: file, filePath: path ?? "")
        return try settings(description, r)
    }

    static func settings(_ d: ServiceDescription, _ r: ResolvedConfig) throws(ConfigError) -> ServiceSettings {
        func fail(_ key: String, _ reason: String) -> ConfigError {
            ConfigError(key: key, source: r.sources[key] ?? .defaultValue, reason: reason)
        }
        var server: ServerSecurity?
        var keyPair: CurveKeyPair?
        if !r["curve_key"].isEmpty {
            do { keyPair = try KeyFiles.readKeyPair(r["curve_key"]) } catch {
                throw fail("curve_key", "\(error)")
            }
            // With allowed keys it serves over CURVE; with only the bus's key it is a CURVE client
            // of the bus (a host node's services publishing to the control node's bus).
            if !r["curve_allowed"].isEmpty || r["bus_public_key"].isEmpty { server = ServerSecurity(keyPair: keyPair!) }
        }
        var keys: KeyTable?
        if !r["curve_allowed"].isEmpty {
            do { keys = try KeyTable(path: r["curve_allowed"], ownKey: keyPair?.publicKey ?? "") } catch {
                throw fail("curve_allowed", "\(error)")
            }
        }
        if server != nil && r["curve_allowed"].isEmpty {
            throw fail("curve_allowed", "required when curve_key is set (which clients may connect?)")
        }
        var busSecurity: ClientSecurity?
        if !r["bus_public_key"].isEmpty {
            guard let keyPair else { throw fail("bus_public_key", "needs curve_key (our own key pair) too") }
            do {
                busSecurity = ClientSecurity(keyPair: keyPair, serverPublicKey: try KeyFiles.readPublicKey(r["bus_public_key"]))
            } catch { throw fail("bus_public_key", "\(error)") }
        }
        let bus = r["bus"]
        var out = ServiceSettings(
            service: d.name, instance: r["instance"], listen: r.list("listen"),
            bus: bus.isEmpty || bus == "none" ? nil : bus,
            heartbeatInterval: r.double("heartbeat_interval"), maxMessageBytes: r.int("max_message_bytes"),
            logLevel: r["log_level"], server: server, keys: keys, busSecurity: busSecurity, resolved: r)
        (out.metricsListen, out.metricsToken) = try httpServing(r, listenKey: "metrics_listen", tokenKey: "metrics_token_file")
        return out
    }

    /// An HTTP endpoint's address and bearer token from two keys: a token file must hold one
    /// line of 1 to 4096 characters; an address beyond loopback without a token is refused.
    public static func httpServing(_ r: ResolvedConfig, listenKey: String, tokenKey: String) throws(ConfigError) -> (HTTPAddress?, String?) {
        func fail(_ key: String, _ reason: String) -> ConfigError {
            ConfigError(key: key, source: r.sources[key] ?? .defaultValue, reason: reason)
        }
        var token: String?
        if !r[tokenKey].isEmpty {
            guard let text = try? String(contentsOfFile: r[tokenKey], encoding: .utf8) else { throw fail(tokenKey, "cannot read \(r[tokenKey])") }
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard (1...4096).contains(t.count), !t.contains(where: \.isNewline) else { throw fail(tokenKey, "must hold one line of 1 to 4096 characters") }
            token = t
        }
        guard !r[listenKey].isEmpty else { return (nil, token) }
        guard let address = HTTPAddress(r[listenKey]) else { throw fail(listenKey, "HOST:PORT with an IPv4 address or [IPv6]") }
        if token == nil && !address.isLoopback {
            throw fail(listenKey, "\(address) is beyond loopback: set \(tokenKey) (a bearer token every client must send)")
        }
        return (address, token)
    }
}

/// CURVE key files. A key-pair file holds `public-key = ...` and `secret-key = ...` lines; a
/// public-key file (`.pub`) holds the `public-key` line alone.
public enum KeyFiles {
    public struct KeyFileError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public static func fields(_ path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError(description: "cannot read key file \(path)")
        }
        var out: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("#") || t.isEmpty { continue }
            let parts = t.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    public static func readKeyPair(_ path: String) throws -> CurveKeyPair {
        let f = try fields(path)
        guard let pub = f["public-key"], let sec = f["secret-key"] else {
            throw KeyFileError(description: "\(path) lacks public-key or secret-key (write one with `violin keygen`)")
        }
        guard let pair = try? CurveKeyPair(publicKey: pub, secretKey: sec),
              (try? CurveKeyPair.publicKey(forSecret: sec)) == pub else {
            throw KeyFileError(description: "\(path) holds no valid CURVE key pair")
        }
        return pair
    }

    public static func readPublicKey(_ path: String) throws -> String {
        guard let pub = try fields(path)["public-key"], CurveKeyPair.isValidKey(pub) else {
            throw KeyFileError(description: "\(path) holds no valid public-key line")
        }
        return pub
    }

    /// Writes `<base>.key` (mode 0600, the pair) and `<base>.pub` (the public key, and its
    /// role when given: a `.pub` in a key-table directory needs one).
    public static func write(_ pair: CurveKeyPair, base: String, role: Role? = nil) throws {
        let secret = "# VIOLIN CURVE key pair. Keep it secret.\npublic-key = \(pair.publicKey)\nsecret-key = \(pair.secretKey)\n"
        let pub = "# VIOLIN CURVE public key\npublic-key = \(pair.publicKey)\n" + (role.map { "role = \($0)\n" } ?? "")
        let fm = FileManager.default
        guard fm.createFile(atPath: base + ".key", contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]),
              fm.createFile(atPath: base + ".pub", contents: Data(pub.utf8), attributes: [.posixPermissions: 0o644])
        else { throw KeyFileError(description: "cannot write \(base).key / \(base).pub") }
    }
}

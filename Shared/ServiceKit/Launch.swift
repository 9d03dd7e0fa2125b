import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VIOLINProtocol

/// The options every service takes on its command line; each overrides the environment
/// (VIOLIN_<KEY>) and the configuration file (`--config`, YAML).
public struct ServiceOptions: ParsableArguments {
    public init() {}

    @Option(help: "Configuration file (YAML mapping of keys to values).") public var config: String?
    @Option(help: "Endpoint(s) where requests are answered, comma-separated.") public var listen: String?
    @Option(help: "The bus's publisher endpoint, or 'none'.") public var bus: String?
    @Option(help: "Name of this instance.") public var instance: String?
    @Option(help: "Seconds between heartbeat events.") public var heartbeatInterval: String?
    @Option(help: "Largest request accepted, in bytes.") public var maxMessageBytes: String?
    @Option(help: "trace|debug|info|notice|warning|error|critical") public var logLevel: String?
    @Option(help: "Key-pair file: require CURVE on every tcp:// endpoint.") public var curveKey: String?
    @Option(help: "Allowed client public keys: file or directory of *.pub.") public var curveAllowed: String?
    @Option(help: "Public-key file of the bus, when the bus requires CURVE.") public var busPublicKey: String?
    @Option(help: "HOST:PORT serving the Prometheus exposition at /metrics.") public var metricsListen: String?
    @Option(help: "Bearer-token file a scrape must match (required beyond loopback).") public var metricsTokenFile: String?
    /// The service's own keys, as `--kebab-name VALUE` or `--kebab-name=VALUE` (see the
    /// service's --help): declared once, in its `ServiceDescription`, and read from here.
    @Argument(parsing: .allUnrecognized, help: .hidden) public var serviceKeys: [String] = []

    public var commandLineValues: [String: String] {
        var v: [String: String] = [:]
        v["listen"] = listen
        v["bus"] = bus
        v["instance"] = instance
        v["heartbeat_interval"] = heartbeatInterval
        v["max_message_bytes"] = maxMessageBytes
        v["log_level"] = logLevel
        v["curve_key"] = curveKey
        v["curve_allowed"] = curveAllowed
        v["bus_public_key"] = busPublicKey
        v["metrics_listen"] = metricsListen
        v["metrics_token_file"] = metricsTokenFile
        return v
    }
}

public enum ServiceMain {
    /// Loads the settings, or exits non-zero with a message naming the key.
    public static func settings(_ description: ServiceDescription, _ options: ServiceOptions) -> ServiceSettings {
        let own: [String: String]
        switch description.parseServiceKeys(options.serviceKeys) {
        case .success(let values): own = values
        case .failure(let message):
            FileHandle.standardError.write(Data("violin-\(description.name): \(message)\n".utf8))
            exit(64)   // EX_USAGE
        }
        do {
            return try ServiceSettings.load(description, commandLine: options.commandLineValues.merging(own) { a, _ in a },
                                            configPath: options.config)
        } catch {
            FileHandle.standardError.write(Data("violin-\(description.name): \(error)\n".utf8))
            exit(78)   // EX_CONFIG
        }
    }

    public static func logger(_ settings: ServiceSettings) -> Logger {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
            return h
        }
        var logger = Logger(label: "violin-\(settings.service)")
        logger[metadataKey: "instance"] = "\(settings.instance)"
        return logger
    }

    /// Loads the settings, builds the runtime and runs it: the whole `main` of a service whose
    /// work is done by `handler` (or, for a skeleton, by the admin requests alone).
    public static func run(_ description: ServiceDescription, _ options: ServiceOptions,
                           handler: RequestHandler? = nil) async {
        let settings = settings(description, options)
        do {
            await run(try ServiceRuntime(settings: settings, logger: logger(settings), handler: handler))
        } catch {
            FileHandle.standardError.write(Data("violin-\(description.name): cannot start: \(error)\n".utf8))
            exit(1)
        }
    }

    /// Runs the service until SIGINT or SIGTERM, then shuts it down in order.
    /// `afterStart` runs once the runtime is up (so `<service>.started` is its first event).
    public static func run(_ runtime: ServiceRuntime, also: [any Service] = [], afterStart: () throws -> Void = {}) async {
        do {
            try runtime.start()
            try afterStart()
        } catch {
            runtime.logger.critical("cannot start", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("violin-\(runtime.settings.service): cannot start: \(error)\n".utf8))
            runtime.stop(reason: "start failed")
            exit(1)
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: runtime)] + also.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: runtime.logger))
        do {
            try await group.run()
        } catch {
            runtime.logger.error("service group ended", metadata: ["error": "\(error)"])
            runtime.stop(reason: "error")
            exit(1)
        }
    }
}

/// A service that only waits for graceful shutdown and then runs `action` (stopping a thread
/// the process owns beside its runtime: the bus proxy, a forwarder, the mesh's heartbeats).
public struct ShutdownHook: Service {
    let action: @Sendable () -> Void
    public init(_ action: @escaping @Sendable () -> Void) { self.action = action }
    public func run() async throws {
        try? await gracefulShutdown()
        action()
    }
}

/// A service's own logic beside its runtime: it answers requests, publishes events through
/// `publish`, and stops its threads in `stop`.
public protocol ServiceLogic: RequestHandler, Sendable {
    var publish: (String, JSONValue) -> Void { get set }
    func stop()
    /// A CURVE key the handshake refused, and the address it came from (on the ZAP thread).
    func keyRefused(_ key: String, address: String)
}

extension ServiceLogic {
    public func keyRefused(_ key: String, address: String) {}

    /// Publishes a typed event (the only way a service's own events are built).
    public func emit(_ event: some EventBody) { publish(type(of: event).event, event.json) }
}

extension ServiceMain {
    /// Builds the service's logic (a failure exits 1, naming it), wires its events to a
    /// runtime, and runs both until SIGINT or SIGTERM; `afterStart` runs once the runtime is up.
    public static func run<Logic: ServiceLogic>(_ settings: ServiceSettings, logger: Logger, server make: () throws -> Logic,
                                               afterStart: @escaping (Logic) throws -> Void) async throws {
        let server: Logic
        do { server = try make() } catch {
            FileHandle.standardError.write(Data("violin-\(settings.service): \(error)\n".utf8))
            throw ExitCode(1)
        }
        let runtime = try ServiceRuntime(settings: settings, logger: logger, handler: server)
        server.publish = { [weak runtime] name, body in runtime?.publish(name, body) }
        runtime.onRefusedKey = { key, address in server.keyRefused(key, address: address) }
        await run(runtime, also: [ShutdownHook { server.stop() }], afterStart: { try afterStart(server) })
    }
}

extension ServiceDescription {
    /// The executable's command configuration: `violin-<name>`, its abstract, and its own keys
    /// listed in `--help`.
    public func command(abstract: String) -> CommandConfiguration {
        CommandConfiguration(commandName: "violin-\(name)", abstract: abstract,
                             discussion: "Its own keys (also VIOLIN_<KEY> or the --config file):\n" + serviceKeysHelp)
    }
}

import Foundation
import Logging
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// A service runtime on an ephemeral loopback port, torn down by `stop()`.
func makeRuntime(_ name: String = "mesh", instance: String? = nil, maxBytes: Int = 1 << 20, bus: String? = nil, heartbeat: Double = 5,
                 server: ServerSecurity? = nil, allowed: Set<String> = [], keys: KeyTable? = nil, busSecurity: ClientSecurity? = nil,
                 handler: RequestHandler? = nil) throws -> ServiceRuntime {
    let settings = ServiceSettings(service: name, instance: instance ?? "\(name)@test", listen: ["tcp://127.0.0.1:*"], bus: bus,
                                   heartbeatInterval: heartbeat, maxMessageBytes: maxBytes, server: server,
                                   keys: keys ?? KeyTable(entries: allowed.map { KeyTable.Entry(key: $0, roles: [.operator]) }),
                                   busSecurity: busSecurity)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let runtime = try ServiceRuntime(settings: settings, logger: logger, handler: handler)
    try runtime.start()
    return runtime
}

/// A client context closed on every path.
func withContext<T>(_ body: (ZMQContext) throws -> T) rethrows -> T {
    let ctx = ZMQContext()
    defer { ctx.shutdown(); ctx.terminate() }
    return try body(ctx)
}

/// A client context with a bus (an in-process proxy on ephemeral loopback ports), both torn
/// down on every path.
func withBus<T>(_ body: (ZMQContext, EventProxy) throws -> T) throws -> T {
    try withContext { ctx in
        let proxy = try EventProxy(context: ctx, frontend: ["tcp://127.0.0.1:*"], backend: ["tcp://127.0.0.1:*"])
        proxy.start()
        defer { proxy.stop() }
        return try body(ctx, proxy)
    }
}

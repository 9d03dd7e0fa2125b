import ArgumentParser
import ServiceKit
import ServiceLifecycle
import ZeroMQ

/// violin-bus: the event bus, an XSUB/XPUB proxy. Services publish to its `publishers`
/// endpoint, subscribers read every service's events from its `subscribers` endpoint. It also
/// answers the admin requests on `listen` and publishes its own bus.* events through itself.
@main
struct Main: AsyncParsableCommand {
    static let configuration = description.command(abstract: "VIOLIN event bus.")
    static let description = ServiceDescription(name: "bus", defaultListen: "tcp://127.0.0.1:\(ServicePorts.bus)", extraKeys: [
        ConfigKey("publishers", default: "tcp://127.0.0.1:\(ServicePorts.busPublishers)",
                  help: "Endpoint(s) publishers connect to (XSUB side).", validate: Validate.endpoints),
        ConfigKey("subscribers", default: "tcp://127.0.0.1:\(ServicePorts.busSubscribers)",
                  help: "Endpoint(s) subscribers connect to (XPUB side).", validate: Validate.endpoints),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        var settings = ServiceMain.settings(Self.description, options)
        let fronts = settings.resolved.list("publishers")
        // The bus publishes its own events into its own frontend, unless told otherwise.
        if settings.resolved.sources["bus"] == .defaultValue { settings.bus = fronts.first }
        if settings.server != nil, settings.busSecurity == nil, let pair = settings.server?.keyPair {
            settings.busSecurity = ClientSecurity(keyPair: pair, serverPublicKey: pair.publicKey)
        }
        let runtime = try ServiceRuntime(settings: settings, logger: ServiceMain.logger(settings))
        let proxy: EventProxy
        do {
            proxy = try EventProxy(context: runtime.context, frontend: fronts,
                                   backend: settings.resolved.list("subscribers"), security: settings.server,
                                   maxMessageBytes: Int64(settings.maxMessageBytes) * 4, filter: BusFilter.make(settings))
        } catch {
            runtime.logger.critical("cannot bind the bus", metadata: ["error": "\(error)"])
            print("violin-bus: cannot bind: \(error)")
            runtime.stop(reason: "bind failed")
            throw ExitCode(1)
        }
        runtime.extraCounters = {
            let c = proxy.snapshot
            return ["bus_events_forwarded": c.events, "bus_subscriptions_forwarded": c.subscriptions, "bus_events_refused": c.refused]
        }
        proxy.start()
        runtime.logger.info("bus up", metadata: ["publishers": "\(proxy.frontendEndpoints)",
                                                  "subscribers": "\(proxy.backendEndpoints)"])
        await ServiceMain.run(runtime, also: [ShutdownHook { proxy.stop() }])
    }
}

import ArgumentParser
import ServiceKit

/// violin-monitor: the metrics collection. A skeleton for now: it answers the admin requests and
/// publishes monitor.started and monitor.heartbeat; later issues give it its own requests.
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-monitor", abstract: "VIOLIN metrics collection (one per host).")
    static let description = ServiceDescription(name: "monitor", defaultListen: "tcp://127.0.0.1:7702")

    @OptionGroup var options: ServiceOptions

    func run() async { await ServiceMain.run(Self.description, options) }
}

import ArgumentParser
import ServiceKit

/// violin-policy: the adaptation manager. A skeleton for now: it answers the admin requests and
/// publishes policy.started and policy.heartbeat; later issues give it its own requests.
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-policy", abstract: "VIOLIN adaptation manager (one per infrastructure).")
    static let description = ServiceDescription(name: "policy", defaultListen: "tcp://127.0.0.1:7703")

    @OptionGroup var options: ServiceOptions

    func run() async { await ServiceMain.run(Self.description, options) }
}

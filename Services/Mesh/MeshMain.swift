import ArgumentParser
import ServiceKit

/// violin-mesh: the switch control plane. A skeleton for now: it answers the admin requests and
/// publishes mesh.started and mesh.heartbeat; later issues give it its own requests.
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-mesh", abstract: "VIOLIN switch control plane (one per host).")
    static let description = ServiceDescription(name: "mesh", defaultListen: "tcp://127.0.0.1:7701")

    @OptionGroup var options: ServiceOptions

    func run() async { await ServiceMain.run(Self.description, options) }
}

import ArgumentParser
import ServiceKit

/// violin-executor: the migration executor. A skeleton for now: it answers the admin requests and
/// publishes executor.started and executor.heartbeat; later issues give it its own requests.
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-executor", abstract: "VIOLIN migration executor (one per host).")
    static let description = ServiceDescription(name: "executor", defaultListen: "tcp://127.0.0.1:7704")

    @OptionGroup var options: ServiceOptions

    func run() async { await ServiceMain.run(Self.description, options) }
}

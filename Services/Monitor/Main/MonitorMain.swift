import ArgumentParser
import Foundation
import Hypervisor
import MonitorService
import ServiceKit

/// violin-monitor: metrics collection on one host (PROTOCOL.md §8.3).
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-monitor", abstract: "VIOLIN metrics collection (one per host).",
        discussion: "Its own keys (also VIOLIN_<KEY> or the --config file):\n" + description.serviceKeysHelp)
    static let description = ServiceDescription(name: "monitor", defaultListen: "tcp://127.0.0.1:7702", extraKeys: [
        ConfigKey("libvirt_uri", default: "qemu:///system", help: "The hypervisor to read (test:///default for tests)."),
        ConfigKey("sample_interval", default: "5", help: "Seconds between two samples.", validate: Validate.positiveNumber),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        let settings = ServiceMain.settings(Self.description, options)
        let logger = ServiceMain.logger(settings)
        let uri = settings.resolved["libvirt_uri"]
        let node: MonitorNode
        do {
            node = try MonitorNode(interval: settings.resolved.double("sample_interval"), logger: logger) {
                try LibvirtHypervisor(uri: uri)
            }
        } catch {
            FileHandle.standardError.write(Data("violin-monitor: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let runtime = try ServiceRuntime(settings: settings, logger: logger, handler: node)
        node.publish = { [weak runtime] name, body in runtime?.publish(name, body) }
        await ServiceMain.run(runtime, also: [ShutdownHook { node.stop() }], afterStart: { try node.start() })
    }
}

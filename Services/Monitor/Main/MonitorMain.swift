import ArgumentParser
import Foundation
import Hypervisor
import MonitorService
import ServiceKit

/// violin-monitor: metrics collection on one host (PROTOCOL.md §8.3).
@main
struct Main: AsyncParsableCommand {
    static let configuration = description.command(abstract: "VIOLIN metrics collection (one per host).")
    static let description = ServiceDescription(name: "monitor", defaultListen: "tcp://127.0.0.1:\(ServicePorts.monitor)", extraKeys: [
        ConfigKey("libvirt_uri", default: "qemu:///system", help: "The hypervisor to read (test:///default for tests)."),
        ConfigKey("sample_interval", default: "5", help: "Seconds between two samples.", validate: Validate.positiveNumber),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        let settings = ServiceMain.settings(Self.description, options)
        let logger = ServiceMain.logger(settings)
        let uri = settings.resolved["libvirt_uri"]
        try await ServiceMain.run(settings, logger: logger, server: {
            try MonitorServer(interval: settings.resolved.double("sample_interval"), logger: logger) { try LibvirtHypervisor(uri: uri) }
        }, afterStart: { try $0.start() })
    }
}

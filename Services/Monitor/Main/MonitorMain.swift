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
        ConfigKey("mesh", default: "", help: "The host's violin-mesh, where each VM's network figures are read from its switch port (empty: none)."),
        ConfigKey("memory_mb", default: "0", help: "Memory this host offers to VMs, MiB (0: what libvirt reports); free memory is what the guests leave of it.",
                  validate: { Int($0).map { $0 >= 0 } == true ? nil : "an integer >= 0" }),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        let settings = ServiceMain.settings(Self.description, options)
        let logger = ServiceMain.logger(settings)
        let uri = settings.resolved["libvirt_uri"]
        try await ServiceMain.run(settings, logger: logger, server: {
            let server = try MonitorServer(interval: settings.resolved.double("sample_interval"), logger: logger) {
                let hv = try LibvirtHypervisor(uri: uri)
                hv.readsGuestMemory = true
                return hv
            }
            server.mesh = settings.resolved["mesh"]
            server.memoryMB = Int(settings.resolved["memory_mb"]) ?? 0
            server.keyPair = settings.server?.keyPair
            return server
        }, afterStart: { try $0.start() })
    }
}

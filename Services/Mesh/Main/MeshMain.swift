import ArgumentParser
import Foundation
import MeshService
import ServiceKit
import ServiceLifecycle
import VIOLINProtocol

/// violin-mesh: the switch control plane of one host (PROTOCOL.md §8.2).
@main
struct Main: AsyncParsableCommand {
    static let configuration = description.command(abstract: "VIOLIN switch control plane (one per host).")
    static let description = ServiceDescription(name: "mesh", defaultListen: "tcp://127.0.0.1:\(ServicePorts.mesh)", extraKeys: [
        ConfigKey("advertise", default: "", help: "Our mesh endpoint as other hosts reach it (default: the first listen endpoint)."),
        ConfigKey("host_address", default: "127.0.0.1", help: "This host's underlay address, IPv4 or IPv6: where its switches' tunnels listen (a VIOLIN's switches all use one family).",
                  validate: { v in UnderlayAddress.isValid(v.contains(":") ? "[\(v)]" : v, anyPort: false) ? nil : "an IPv4 or IPv6 address" }),
        ConfigKey("switch_binary", default: "", help: "Path of violin-switch (default: beside violin-mesh)."),
        ConfigKey("run_dir", default: "", help: "Directory for switch control sockets, their logs and the mesh's state; mode 0700, this user's (default: /run/violin/mesh-<port>)."),
        ConfigKey("max_members", default: "256", help: "Other hosts one VIOLIN may have as members here, at most.", validate: Validate.positiveInteger),
        ConfigKey("max_violins", default: "256", help: "VIOLINs present on this host at most (a switch process each).", validate: Validate.positiveInteger),
        ConfigKey("member_interval", default: "1", help: "Seconds between heartbeats to each member.", validate: Validate.positiveNumber),
        ConfigKey("member_timeout", default: "3", help: "Seconds of silence before a member leaves the peer sets.", validate: Validate.positiveNumber),
        ConfigKey("traffic_interval", default: "10", help: "Seconds between mesh.traffic events (who talks to whom through each switch); 0: none.",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("switch_queues", default: "1", help: "Forwarding threads of each switch this mesh starts, 1-16 (violin-switch --queues).",
                  validate: { v in Int(v).map { (1...16).contains($0) } == true ? nil : "a whole number 1-16" }),
        ConfigKey("member_forget_after", default: "", help: "Seconds of silence before a member is forgotten (default: 20 member timeouts, at least 60).",
                  validate: { $0.isEmpty ? nil : Validate.positiveNumber($0) }),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        let settings = ServiceMain.settings(Self.description, options)
        let r = settings.resolved
        let me = r["advertise"].isEmpty ? settings.listen[0] : r["advertise"]
        let port = me.split(separator: ":").last.map(String.init) ?? "mesh"
        let selfDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        var mo = MeshServer.Options(me: me, hostAddress: r["host_address"],
                                  switchBinary: r["switch_binary"].isEmpty ? selfDir + "/violin-switch" : r["switch_binary"],
                                  runDirectory: r["run_dir"].isEmpty ? "\(PrivateDirectory.root)/mesh-\(port)" : r["run_dir"])
        mo.interval = r.double("member_interval")
        mo.timeout = r.double("member_timeout")
        mo.trafficInterval = r.double("traffic_interval")
        mo.switchQueues = Int(r["switch_queues"]) ?? 1
        mo.forgetAfter = r["member_forget_after"].isEmpty ? nil : r.double("member_forget_after")
        mo.maxViolins = Int(r["max_violins"]) ?? 256
        mo.maxMembers = Int(r["max_members"]) ?? 256
        mo.keyPair = settings.server?.keyPair
        let logger = ServiceMain.logger(settings)
        try await ServiceMain.run(settings, logger: logger, server: { try MeshServer(options: mo, logger: logger) },
                                  afterStart: { $0.start() })
    }
}


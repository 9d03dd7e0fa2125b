import ArgumentParser
import ExecutorService
import Foundation
import ServiceKit

/// violin-executor: VMs and their live migration on one host (PROTOCOL.md §8.5).
@main
struct Main: AsyncParsableCommand {
    static let configuration = description.command(abstract: "VIOLIN migration executor (one per host).")
    static let description = ServiceDescription(name: "executor", defaultListen: "tcp://127.0.0.1:\(ServicePorts.executor)", extraKeys: [
        ConfigKey("host_id", default: "", help: "This host's id (default: the hostname)."),
        ConfigKey("libvirt_uri", default: "qemu:///system", help: "The host's libvirt."),
        ConfigKey("migration_uri", default: "", help: "How other hosts' libvirt reach ours, e.g. qemu+tcp://10.0.0.2/system (default: libvirt_uri)."),
        ConfigKey("mesh", default: "tcp://127.0.0.1:\(ServicePorts.mesh)", help: "The host's violin-mesh, as other hosts reach it."),
        ConfigKey("database", default: "/var/lib/violin/executor.sqlite", help: "SQLite journal of the migration jobs."),
        ConfigKey("image_dir", default: "/var/lib/violin/images", help: "The host's image store: a directory per image with vmlinuz, and optionally initrd and cmdline."),
        ConfigKey("console_dir", default: "", help: "Where each VM's serial console is logged, <vm>.log (default: console/ beside the database)."),
        ConfigKey("uplink_network", default: "default", help: "The libvirt network (NAT) a VM's uplink NIC joins; every host defines it under this name (empty: no uplinks)."),
        ConfigKey("max_migrations", default: "2", help: "Concurrent outgoing migrations.", validate: Validate.positiveInteger),
        ConfigKey("progress_interval", default: "0.5", help: "Seconds between progress events.", validate: Validate.positiveNumber),
        ConfigKey("control", default: "", help: "The control node's policy endpoint, where a migration's destination is looked up (required with keys; empty: an open lab takes to_executor).",
                  validate: { $0.isEmpty || $0.hasPrefix("tcp://") || $0.hasPrefix("ipc://") ? nil : "a ZeroMQ endpoint" }),
        ConfigKey("memory_mb", default: "0", help: "Memory this host offers to VMs, MiB (0: what libvirt reports free).",
                  validate: { Int($0).map { $0 >= 0 } == true ? nil : "an integer >= 0" }),
        ConfigKey("libvirt_pki", default: "", help: "This host's TLS client certificate directory for other hosts' libvirt (cacert.pem, clientcert.pem, clientkey.pem; empty: /etc/pki).",
                  validate: { $0.isEmpty || $0.hasPrefix("/") ? nil : "an absolute path" }),
        ConfigKey("max_jobs", default: "64", help: "Migrations queued or running at once, at most (one more is conflict).", validate: Validate.positiveInteger),
        ConfigKey("retention_days", default: "90", help: "Days the job journal keeps what is finished (pruned at start).", validate: Validate.positiveNumber),
        ConfigKey("stale_sweep", default: "15", help: "Seconds between looks for VM ports no VM here uses, removed when two looks in a row find them (0: none).",
                  validate: Validate.nonNegativeNumber),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        let settings = ServiceMain.settings(Self.description, options)
        let r = settings.resolved
        var hostname = [CChar](repeating: 0, count: 256)
        gethostname(&hostname, 255)
        var eo = ExecutorServer.Options(hostID: r["host_id"].isEmpty ? String(cString: hostname) : r["host_id"],
                                      libvirtURI: r["libvirt_uri"],
                                      migrationURI: r["migration_uri"].isEmpty ? r["libvirt_uri"] : r["migration_uri"],
                                      mesh: r["mesh"], database: r["database"])
        eo.maxMigrations = Int(r["max_migrations"]) ?? 2
        eo.progressInterval = r.double("progress_interval")
        eo.memoryMB = Int(r["memory_mb"]) ?? 0
        eo.imageDir = r["image_dir"]
        eo.uplinkNetwork = r["uplink_network"]
        eo.consoleDir = r["console_dir"].isEmpty
            ? URL(fileURLWithPath: r["database"]).deletingLastPathComponent().appendingPathComponent("console").path : r["console_dir"]
        eo.keyPair = settings.server?.keyPair
        eo.control = r["control"].isEmpty ? nil : r["control"]
        eo.retentionDays = r.double("retention_days")
        eo.staleSweepS = r.double("stale_sweep")
        eo.maxJobs = Int(r["max_jobs"]) ?? 64
        eo.libvirtPKI = r["libvirt_pki"]
        eo.controlKey = settings.busSecurity?.serverPublicKey ?? ""
        let logger = ServiceMain.logger(settings)
        try await ServiceMain.run(settings, logger: logger, server: { try ExecutorServer(options: eo, logger: logger) },
                                  afterStart: { $0.recover() })
    }
}

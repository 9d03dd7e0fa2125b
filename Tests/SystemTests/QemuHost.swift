import Foundation

/// One libvirt daemon of the lab (compose/lab-libvirt.sh) in a scratch directory, the tiny
/// guest image built; guests booted on it, and processes spawned beside it, all go with `stop`
/// (the processes by PID, then the guests, the daemon and its cgroup partition, then the files).
final class QemuHost {
    static let script = packageRoot + "/compose/lab-libvirt.sh"
    static let cache = "/var/cache/violin-test-guest"
    let scratch: Scratch
    let lab: String
    var uri: String { "qemu+unix:///system?socket=\(lab)/sock/libvirt-sock" }
    private var procs: [Spawned] = []

    /// `cgroups`: the daemon's guests in its own partition of the cgroup v1 cpu hierarchy.
    init(_ name: String, cgroups: Bool) throws {
        scratch = try Scratch(name)
        lab = scratch.file("lab")
        do {
            let built = try sh("bash \(Self.script) guest \(Self.cache)", timeout: 300)
            guard built.status == 0 else { throw LabError(description: "guest: \(built.err)") }
            let daemon = try sh("mkdir -p \(lab) && \(cgroups ? "VIOLIN_LAB_CGROUPS=cpu " : "")bash \(Self.script) daemon \(lab)", timeout: 120)
            guard daemon.status == 0 else {
                let log = (try? String(contentsOfFile: lab + "/libvirtd.out", encoding: .utf8)) ?? "(no log)"
                throw LabError(description: "libvirtd: \(daemon.err) \(log.suffix(600))")
            }
        } catch {
            stop()
            throw error
        }
    }

    /// Boots guest `name` (`lab-libvirt.sh boot` options: --cpus, --memory, --cmdline).
    func boot(_ name: String, _ options: String = "") throws {
        let r = try sh("bash \(Self.script) boot \(lab) \(Self.cache) \(name) \(options)", timeout: 60)
        guard r.status == 0 else { throw LabError(description: "boot \(name): \(r.err)") }
    }

    /// A process that `stop` ends.
    func spawn(_ executable: String, _ arguments: [String]) throws -> Spawned {
        let p = try Spawned(executable, arguments)
        procs.append(p)
        return p
    }

    /// violin-bus, `violin watch` of `topics` (its lines: the events) and violin-monitor on this
    /// daemon, sampling every `interval` seconds.
    func monitored(watching topics: String, instance: String? = nil, interval: String = "1") throws -> (watch: Spawned, monitor: Spawned) {
        _ = try spawn("violin-bus", ["--listen", scratch.ipc("bus"), "--publishers", scratch.ipc("pub"), "--subscribers", scratch.ipc("sub")])
        let watch = try spawn("violin", ["watch", "--bus", scratch.ipc("sub"), topics, "--timeout", "280"])
        let monitor = try spawn("violin-monitor", ["--listen", scratch.ipc("monitor"), "--bus", scratch.ipc("pub"), "--libvirt-uri", uri,
                                                   "--sample-interval", interval] + (instance.map { ["--instance", $0] } ?? []))
        return (watch, monitor)
    }

    func stop() {
        procs.reversed().forEach { $0.destroy() }
        procs = []
        _ = try? sh("bash \(Self.script) stop \(lab)", timeout: 60)
        scratch.cleanup()
    }
}

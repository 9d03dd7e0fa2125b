import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol

/// What the cluster says of its VIOLINs: the policy's inventory, and each host's executor (the
/// VMs it runs, their state, MAC and VIOLIN) and monitor (their CPU use). Hosts that do not
/// answer are named, not waited for.
struct ClusterView {
    struct VM {
        var name: String, violin: String, host: String, domain: String
        var memoryMB: Int
        /// As the host's executor reports it; "lost" when the host did not answer (it may come
        /// back), "missing" when it answered without the VM.
        var state: String
        var mac: String?, vni: UInt32?
        var cpuPercent: Double?
        var ip: String?, vcpus: Int?
        /// Its newest migration job on any host ("h2 -> h3 completed 2026-...").
        var lastMigration: String?
    }
    var inventory: PolicyAPI.InventoryReply
    var vms: [VM] = []
    var silent: [String] = []

    /// With `jobs`, each VM's last migration too (every host's journal is read).
    static func gather(_ connection: ConnectionOptions, control: String, jobs: Bool = false) throws -> ClusterView {
        let cluster = try Cluster(connection, control: control)
        defer { cluster.close() }
        let inv = cluster.inventory
        var view = ClusterView(inventory: inv)
        var running: [String: (ExecutorAPI.VMsReply.VM, cpu: Double?)] = [:]
        var last: [String: ExecutorAPI.JobReport] = [:]
        for h in inv.hosts {
            guard let vms = cluster.ask(h, ExecutorAPI.VMs()) else { view.silent.append(h.id); continue }
            if jobs {
                for j in cluster.ask(h, ExecutorAPI.Jobs(limit: 200))?.jobs ?? [] where j.createdAt > (last[j.vm]?.createdAt ?? "") { last[j.vm] = j }
            }
            var cpu: [String: Double] = [:]
            if !h.monitor.isEmpty, let samples = cluster.ask(h, MonitorAPI.Samples(), at: h.monitor) {
                for v in samples.vms { if let n = v["name"]?.stringValue, let c = v["cpu_percent"]?.numberValue { cpu[n] = c } }
            }
            for vm in vms.vms { running[vm.name] = (vm, cpu[vm.name]) }
        }
        let domainOf = Dictionary(uniqueKeysWithValues: inv.hosts.map { ($0.id, $0.domain) })
        for v in inv.vms {
            let seen = running[v.id]
            let state = seen?.0.state ?? (view.silent.contains(v.host) ? "lost" : "missing")
            view.vms.append(VM(name: v.id, violin: v.violin, host: v.host, domain: domainOf[v.host] ?? "", memoryMB: v.memoryMB,
                               state: state, mac: seen?.0.mac, vni: seen?.0.vni, cpuPercent: seen?.cpu, ip: v.ip, vcpus: v.vcpus,
                               lastMigration: last[v.id].map { "\($0.from) -> \($0.to) \($0.state) \($0.createdAt)" }))
        }
        return view
    }

    /// `running` when every VM runs, else `degraded`.
    func phase(_ violin: String) -> String {
        // A VM its user stopped is not a fault.
        vms.filter { $0.violin == violin }.allSatisfy { ["running", "stopped"].contains($0.state) } ? "running" : "degraded"
    }
}

/// How long ago an ISO 8601 time was, the way `kubectl get` says it: 45s, 12m, 3h, 2d.
func age(_ iso: String?) -> String {
    guard let iso, let t = ISO8601DateFormatter().date(from: iso) else { return "-" }
    let s = max(0, Int(Date().timeIntervalSince(t)))
    return s < 120 ? "\(s)s" : s < 7200 ? "\(s / 60)m" : s < 172_800 ? "\(s / 3600)h" : "\(s / 86_400)d"
}

/// `violin list`: every VIOLIN with its phase, VMs running of all, hosts and domains.
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The VIOLINs: phase, VMs running/total, VNI, hosts, domains.")
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let view = try ClusterView.gather(connection, control: control)
        var rows: [JSONValue] = []
        for v in view.inventory.violins {
            let vms = view.vms.filter { $0.violin == v.id }
            rows.append(["name": .string(v.id), "phase": .string(view.phase(v.id)), "home_domain": .string(v.homeDomain),
                         "created_at": v.createdAt.map { .string($0) } ?? .null,
                         "vni": .array(Set(vms.compactMap(\.vni)).sorted().map { .number(Double($0)) }),
                         "vms_running": .number(Double(vms.filter { $0.state == "running" }.count)), "vms": .number(Double(vms.count)),
                         "hosts": .array(Set(vms.map(\.host)).sorted().map { .string($0) }),
                         "domains": .array(Set(vms.map(\.domain)).sorted().map { .string($0) })])
        }
        if json { printJSON(["violins": .array(rows), "hosts_not_answering": .array(view.silent.map { .string($0) })]); return }
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        print(col("NAME", 14) + col("PHASE", 10) + col("VMS", 7) + col("VNI", 10) + col("HOSTS", 20) + col("DOMAINS", 12) + "AGE")
        for r in rows {
            func words(_ k: String) -> String { (r[k]?.items ?? []).map { $0.stringValue ?? $0.intValue.map(String.init) ?? "" }.joined(separator: ",") }
            print(col(r["name"]?.stringValue ?? "", 14) + col(r["phase"]?.stringValue ?? "", 10)
                  + col("\(r["vms_running"]?.intValue ?? 0)/\(r["vms"]?.intValue ?? 0)", 7) + col(words("vni"), 10)
                  + col(words("hosts"), 20) + col(words("domains"), 12) + age(r["created_at"]?.stringValue))
        }
        if !view.silent.isEmpty { print("hosts not answering: \(view.silent.joined(separator: ", "))") }
    }
}

/// `violin show NAME`: one VIOLIN, VM by VM.
struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One VIOLIN, per VM: host, domain, state, MAC, memory, CPU %.")
    @Argument(help: "The VIOLIN's name.") var name: String
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let view = try ClusterView.gather(connection, control: control, jobs: true)
        guard let violin = view.inventory.violins.first(where: { $0.id == name }) else {
            throw fail("no VIOLIN named \(name) (violin list shows them)", code: Exit.errorReply)
        }
        let vms = view.vms.filter { $0.violin == name }
        if json {
            printJSON(["name": .string(name), "phase": .string(view.phase(name)), "home_domain": .string(violin.homeDomain),
                       "head": .string(violin.head),
                       "vms": .array(vms.map { v in
                           ["name": .string(v.name), "host": .string(v.host), "domain": .string(v.domain), "state": .string(v.state),
                            "mac": v.mac.map { .string($0) } ?? .null, "vni": v.vni.map { .number(Double($0)) } ?? .null,
                            "memory_mb": .number(Double(v.memoryMB)), "cpu_percent": v.cpuPercent.map { .number($0) } ?? .null,
                            "head": .bool(v.name == violin.head), "ip": v.ip.map { .string($0) } ?? .null,
                            "vcpus": v.vcpus.map { .number(Double($0)) } ?? .null, "last_migration": v.lastMigration.map { .string($0) } ?? .null]
                       })])
            return
        }
        print("VIOLIN \(name): \(view.phase(name)), home domain \(violin.homeDomain), head \(violin.head)")
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        print(col("VM", 14) + col("HOST", 8) + col("DOMAIN", 8) + col("STATE", 10) + col("MAC", 19) + col("IP", 16) + col("MEMORY", 8)
              + col("VCPUS", 7) + col("CPU %", 7) + "LAST MIGRATION")
        for v in vms {
            print(col(v.name + (v.name == violin.head ? "*" : ""), 14) + col(v.host, 8) + col(v.domain, 8) + col(v.state, 10)
                  + col(v.mac ?? "-", 19) + col(v.ip ?? "-", 16) + col("\(v.memoryMB)", 8) + col(v.vcpus.map(String.init) ?? "-", 7)
                  + col(v.cpuPercent.map { String(format: "%.1f", $0) } ?? "-", 7) + (v.lastMigration ?? "-"))
        }
    }
}

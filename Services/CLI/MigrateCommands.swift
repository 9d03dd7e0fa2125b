import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The cluster as the command-line tool reaches it: the policy's inventory, and each host's
/// services with the host's key when our own is given. The one place the CLI's cluster
/// commands (list, show, migrate, jobs, cancel, images) talk to hosts from.
struct Cluster {
    let inventory: PolicyAPI.InventoryReply
    let connection: ConnectionOptions
    let context = ZMQContext()
    let own: ClientSecurity?

    init(_ connection: ConnectionOptions, control: String) throws {
        let policy = ServicePorts.endpoint(control, ServicePorts.policy)
        inventory = try connection.with(policy) { client in
            do { return try client.call(PolicyAPI.Inventory(), retries: connection.retries) } catch {
                throw fail("the policy at \(policy): \(error)", code: Exit.noReply)
            }
        }
        self.connection = connection
        own = try connection.security()
    }

    func close() { context.shutdown(); context.terminate() }

    func host(_ id: String) throws -> PolicyAPI.InventoryReply.Host {
        guard let h = inventory.hosts.first(where: { $0.id == id }) else {
            throw fail("no host \(id) in the inventory (\(inventory.hosts.map(\.id).joined(separator: ", ")))", code: Exit.errorReply)
        }
        return h
    }

    /// A client of one of `host`'s services (its executor unless told otherwise).
    private func client(_ host: PolicyAPI.InventoryReply.Host, endpoint: String? = nil) -> ServiceClient {
        ServiceClient(context: context, endpoint: endpoint ?? host.executor, security: security(host), timeoutMs: Int(connection.timeout * 1000))
    }

    /// How this command reaches `host`'s services: CURVE with our key when the host has one.
    func security(_ host: PolicyAPI.InventoryReply.Host) -> ClientSecurity? {
        own.flatMap { host.key.isEmpty ? nil : ClientSecurity(keyPair: $0.keyPair, serverPublicKey: host.key) }
    }

    /// One request to a host's executor; an error reply or silence ends the command.
    func call<R: RequestBody>(_ host: PolicyAPI.InventoryReply.Host, _ request: R) throws -> R.Reply {
        let c = client(host)
        defer { c.close() }
        do { return try c.call(request, retries: connection.retries) } catch {
            switch error {
            case .error(let e): throw fail("\(host.id): \(e.code.rawValue): \(e.message)", code: Exit.errorReply)
            default: throw fail("\(host.id): \(error)", code: Exit.noReply)
            }
        }
    }

    /// The reply of a host's executor (or of the service at `endpoint`), or nil on any failure
    /// (nothing printed): for scanning hosts.
    func ask<R: RequestBody>(_ host: PolicyAPI.InventoryReply.Host, _ request: R, at endpoint: String? = nil) -> R.Reply? {
        let c = client(host, endpoint: endpoint)
        defer { c.close() }
        return try? c.call(request, retries: 0)
    }

    /// Waits for each job to end, with one progress line that never runs backwards (pages
    /// sent again do not take the figure down); whether all completed.
    func wait(_ jobs: [(job: String, vm: String, host: PolicyAPI.InventoryReply.Host)], seconds: Double) throws -> Bool {
        var sent: [String: Int] = [:]
        let end = Date().addingTimeInterval(seconds)
        var done: [String: ExecutorAPI.JobReport] = [:]
        while done.count < jobs.count {
            for j in jobs where done[j.job] == nil {
                let r = try call(j.host, ExecutorAPI.Job(job: j.job))
                sent[j.job] = max(sent[j.job] ?? 0, r.processedBytes ?? 0)
                if ["completed", "failed", "cancelled", "rolled_back"].contains(r.state) { done[j.job] = r }
                let left = (r.remainingBytes ?? 0) >> 20, rate = (r.rateBps ?? 0) >> 20
                FileHandle.standardError.write(Data("\r  \(j.vm): \(r.state), \(sent[j.job]! >> 20) MiB sent, \(left) MiB left, \(rate) MiB/s    ".utf8))
            }
            if done.count < jobs.count {
                guard Date() < end else { throw fail("\n\(jobs.count - done.count) job(s) still running after \(Int(seconds)) s", code: Exit.noReply) }
                usleep(300_000)
            }
        }
        FileHandle.standardError.write(Data("\n".utf8))
        for j in jobs {
            let r = done[j.job]!
            print("\(j.vm): \(r.state) \(r.from) -> \(r.to)" + (r.state == "completed"
                ? ", \(r.elapsedMs ?? 0) ms, downtime \(r.downtimeMs.map(String.init) ?? "?") ms" : ": \(r.error)"))
        }
        return done.values.allSatisfy { $0.state == "completed" }
    }
}

/// `violin migrate VM --to HOST` or `violin migrate VIOLIN --to-domain D`.
struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Live-migrate a VM to a host, or a whole VIOLIN to a domain (its head node stays home).")
    @Argument(help: "A VM, or with --to-domain a VIOLIN.") var target: String
    @Option(help: "The destination host (one VM).") var to: String?
    @Option(help: "The destination domain (a whole VIOLIN; the host there with the most free memory).") var toDomain: String?
    @Option(help: "MiB/s (0: no limit).") var bandwidth = 0
    @Flag(help: "Switch to post-copy after the first pass over memory.") var postcopy = false
    @Flag(help: "Slow the guest down if it dirties memory faster than it can be sent.") var autoConverge = false
    @Option(help: "Wait this many seconds for the migration(s) to end, with a progress line (0: do not wait).") var wait: Double = 0
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (to == nil) != (toDomain == nil) else { throw ValidationError("give --to HOST (a VM) or --to-domain DOMAIN (a VIOLIN)") }
        guard (0...1_000_000).contains(bandwidth), wait >= 0 else { throw ValidationError("--bandwidth is 0-1000000 and --wait >= 0") }
    }

    func options(_ dest: PolicyAPI.InventoryReply.Host) -> ExecutorAPI.MigrationOptions {
        var o = ExecutorAPI.MigrationOptions(toExecutor: dest.executor)
        o.toKey = dest.key; o.to = dest.id; o.bandwidthMiBps = bandwidth; o.postcopy = postcopy; o.autoConverge = autoConverge
        o.reason = "operator: violin migrate"
        return o
    }

    func run() throws {
        let ex = try Cluster(connection, control: control)
        defer { ex.close() }
        let jobs = try toDomain.map { try violin($0, ex) } ?? vm(to!, ex)
        for j in jobs { print("job \(j.job): \(j.vm) from \(j.host.id)") }
        if wait > 0, try !ex.wait(jobs, seconds: wait) { throw ExitCode(Exit.errorReply) }
    }

    func vm(_ hostID: String, _ ex: Cluster) throws -> [(job: String, vm: String, host: PolicyAPI.InventoryReply.Host)] {
        let inv = ex.inventory
        guard let vm = inv.vms.first(where: { $0.id == target }) else { throw fail("no VM \(target) in the inventory", code: Exit.errorReply) }
        let source = try ex.host(vm.host), dest = try ex.host(hostID)
        guard dest.id != source.id else { throw fail("\(target) is on \(dest.id) already", code: Exit.errorReply) }
        guard !dest.draining else { throw fail("\(dest.id) is draining: it takes no VM", code: Exit.errorReply) }
        if let v = inv.violins.first(where: { $0.id == vm.violin }), v.head == vm.id, dest.domain != v.homeDomain {
            throw fail("\(vm.id) is the head node of \(v.id): it never leaves its home domain \(v.homeDomain)", code: Exit.errorReply)
        }
        let started = try ex.call(source, ExecutorAPI.Migrate(vm: vm.id, options: options(dest)))
        return [(started.job, vm.id, source)]
    }

    func violin(_ domain: String, _ ex: Cluster) throws -> [(job: String, vm: String, host: PolicyAPI.InventoryReply.Host)] {
        let inv = ex.inventory
        guard let v = inv.violins.first(where: { $0.id == target }) else { throw fail("no VIOLIN \(target) in the inventory", code: Exit.errorReply) }
        let candidates = inv.hosts.filter { $0.domain == domain && !$0.draining }
        let free = try candidates.map { h in (h, try ex.call(h, ExecutorAPI.HostInfo()).freeMemoryMB) }
        guard let dest = free.max(by: { ($0.1, $1.0.id) < ($1.1, $0.0.id) })?.0 else {
            throw fail("no host of domain \(domain) can take VMs", code: Exit.errorReply)
        }
        let keep = domain == v.homeDomain ? [] : [v.head]
        var out: [(job: String, vm: String, host: PolicyAPI.InventoryReply.Host)] = []
        for hostID in Set(inv.vms.filter { $0.violin == v.id && !keep.contains($0.id) }.map(\.host)).sorted() where hostID != dest.id {
            let source = try ex.host(hostID)
            let running = try ex.call(source, ExecutorAPI.VMs()).vms
            guard let vni = running.first(where: { vm in inv.vms.contains { $0.id == vm.name && $0.violin == v.id } })?.vni else { continue }
            let started = try ex.call(source, ExecutorAPI.MigrateViolin(vni: vni, keep: keep, options: options(dest)))
            out += started.jobs.map { ($0.job, $0.vm, source) }
        }
        guard !out.isEmpty else { throw fail("nothing of \(v.id) to move to \(domain)", code: Exit.errorReply) }
        return out
    }
}

/// `violin jobs`: every executor's recent migration jobs.
struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recent migration jobs on every host, newest first.")
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Option(help: "Jobs per host.") var limit = 20
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        guard (1...10_000).contains(limit) else { throw fail("--limit must be 1-10000", code: Exit.usage) }
        let ex = try Cluster(connection, control: control)
        defer { ex.close() }
        var all: [ExecutorAPI.JobReport] = []
        for h in ex.inventory.hosts { all += ex.ask(h, ExecutorAPI.Jobs(limit: limit))?.jobs ?? [] }
        all.sort { $0.createdAt > $1.createdAt }
        if json { printJSON(["jobs": .array(all.map(\.json))]); return }
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        print(col("JOB", 16) + col("VM", 12) + col("FROM", 8) + col("TO", 8) + col("STATE", 12) + col("ELAPSED ms", 12) + "DOWNTIME ms")
        for j in all {
            print(col(j.job, 16) + col(j.vm, 12) + col(j.from, 8) + col(j.to, 8) + col(j.state, 12)
                  + col(j.elapsedMs.map(String.init) ?? "-", 12) + (j.downtimeMs.map(String.init) ?? "-"))
        }
    }
}

/// `violin cancel JOB`: asks the executor that runs it to abort it (not in post-copy).
struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a running migration job (one in post-copy cannot be).")
    @Argument(help: "The job's id (violin jobs lists them).") var job: String
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let ex = try Cluster(connection, control: control)
        defer { ex.close() }
        for h in ex.inventory.hosts {
            guard ex.ask(h, ExecutorAPI.Job(job: job)) != nil else { continue }
            let r = try ex.call(h, ExecutorAPI.Cancel(job: job))
            print("\(r.job): \(r.state) on \(h.id)")
            return
        }
        throw fail("no host knows job \(job)", code: Exit.errorReply)
    }
}

/// `violin images`: each host's image store.
struct Images: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The images in every host's store (what create_vm may name).")
    @OptionGroup var list: ImageCommand.List

    func run() throws { try list.run() }
}

/// `violin image list [--host H]`.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "The hosts' image stores.", subcommands: [List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The images in every host's store, or one host's (what a spec's image may name).")
        @Option(help: "Only this host.") var host: String?
        @Option(help: "The control node's address.") var control = "127.0.0.1"
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let ex = try Cluster(connection, control: control)
            defer { ex.close() }
            let chosen = try host.map { [try ex.host($0)] } ?? ex.inventory.hosts
            var hosts: [String: JSONValue] = [:]
            for h in chosen {
                guard let r = ex.ask(h, ExecutorAPI.Images()) else { hosts[h.id] = .null; continue }
                hosts[h.id] = .array(r.images.map { .string($0.name) })
            }
            if json { printJSON(["hosts": .object(hosts)]); return }
            for (h, images) in hosts.sorted(by: { $0.key < $1.key }) {
                print("\(h): " + (images == .null ? "(does not answer)" : (images.items ?? []).compactMap(\.stringValue).joined(separator: " ")))
            }
            if let host, hosts[host] == .null { throw ExitCode(Exit.noReply) }
        }
    }
}

/// `violin stop VM` and `violin start VM`: on the host that holds it; the VM keeps its place.
struct StopStart {
    /// The VM a command acts on, found through the control node's inventory.
    struct Target: ParsableArguments {
        @Argument(help: "The VM.") var vm: String
        @Option(help: "The control node's address.") var control = "127.0.0.1"
        @OptionGroup var connection: ConnectionOptions

        /// The cluster (waiting as long as work on a host takes), the VM's row and its host.
        func locate() throws -> (Cluster, PolicyAPI.InventoryReply.VM, PolicyAPI.InventoryReply.Host) {
            let cluster = try Cluster(connection.forWork, control: control)
            guard let row = cluster.inventory.vms.first(where: { $0.id == vm }), !row.host.isEmpty else {
                cluster.close()
                throw fail("no VM \(vm) in the inventory", code: Exit.errorReply)
            }
            do { return (cluster, row, try cluster.host(row.host)) } catch { cluster.close(); throw error }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stop",
            abstract: "Stop a VM; its host keeps it (MAC, NIC ports, VIOLIN) for violin start.")
        @OptionGroup var target: Target
        func run() throws {
            let (cluster, _, host) = try target.locate()
            defer { cluster.close() }
            _ = try cluster.call(host, ExecutorAPI.StopVM(name: target.vm))
            print("\(target.vm): stopped on \(host.id)")
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a stopped VM again on its host.")
        @OptionGroup var target: Target
        func run() throws {
            let (cluster, row, host) = try target.locate()
            defer { cluster.close() }
            // Its host's mesh may have left the VIOLIN with the VM's port: it joins again through
            // the mesh of another host that runs a VM of the VIOLIN.
            var request = ExecutorAPI.StartVM(name: target.vm)
            let others = Set(cluster.inventory.vms.filter { $0.violin == row.violin && $0.id != target.vm && $0.host != host.id }.map(\.host))
            for id in others.sorted() {
                guard let other = try? cluster.host(id), let mesh = cluster.ask(other, ExecutorAPI.HostInfo())?.mesh, !mesh.isEmpty else { continue }
                request.seed = mesh
                request.seedKey = other.key.isEmpty ? nil : other.key
                break
            }
            _ = try cluster.call(host, request)
            print("\(target.vm): started on \(host.id)")
        }
    }
}

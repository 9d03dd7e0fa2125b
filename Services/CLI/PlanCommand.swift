import ArgumentParser
import Foundation
import PolicyCore
import ServiceKit
import SpecFile
import VIOLINProtocol
import ZeroMQ

/// `violin plan -f FILE`: reads a VIOLIN spec, asks the policy for the inventory and every
/// host's executor for its free memory, VMs and ports, and prints where each VM would go and
/// what it would be given — creating nothing.
struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Where a VIOLIN's VMs would go (placement, VNI, MACs, NIC ports), from its spec file; creates nothing.",
        discussion: "The spec's fields are documented in compose/violin-spec.yaml. A bad spec exits 78 naming the key and its line.")
    @Option(name: .shortAndLong, help: "The VIOLIN's spec file (YAML).") var file: String
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Option(help: "Memory each VM costs its host beyond its own, MiB.") var vmOverheadMb = Placement.defaultOverheadMB
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw fail("cannot read \(file): \(error)", code: Exit.usage) }
        let spec: ViolinSpec
        do { spec = try SpecFile.parse(text) } catch { throw fail("\(file): \(error)", code: Exit.config) }
        guard (0...4096).contains(vmOverheadMb) else { throw fail("--vm-overhead-mb must be 0-4096", code: Exit.usage) }
        let (hosts, vnis) = try inventory()
        switch Placement.place(spec, hosts: hosts, usedVNIs: vnis, overheadMB: vmOverheadMb) {
        case .failure(let refusal):
            throw fail("\(spec.name) does not fit: \(refusal)", code: Exit.errorReply)
        case .success(let plan):
            if json { printJSON(Self.json(spec, plan)); return }
            print("VIOLIN \(spec.name): VNI \(plan.vni), home domain \(spec.homeDomain), head \(spec.head), \(spec.placement.rawValue)")
            print("VM              HOST      DOMAIN  MEMORY  MAC                NIC PORT  WHY")
            for p in plan.vms {
                func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
                print(col(p.vm.name, 16) + col(p.host, 10) + col(p.domain, 8) + col("\(p.vm.memoryMB)", 8) + col(p.mac, 19)
                      + col("\(p.nicPort)", 10) + p.reason)
            }
        }
    }

    static func json(_ spec: ViolinSpec, _ plan: Placement.Plan) -> JSONValue {
        ["name": .string(spec.name), "vni": .number(Double(plan.vni)), "home_domain": .string(spec.homeDomain), "head": .string(spec.head),
         "vms": .array(plan.vms.map { p in
             ["name": .string(p.vm.name), "host": .string(p.host), "domain": .string(p.domain), "memory_mb": .number(Double(p.vm.memoryMB)),
              "vcpus": .number(Double(p.vm.vcpus)), "image": .string(p.vm.image), "mac": .string(p.mac),
              "nic_port": .number(Double(p.nicPort)), "ip": p.vm.ip.map { .string($0) } ?? .null, "why": .string(p.reason)]
         })]
    }

    /// The hosts as the placement sees them — free memory, ports in use and draining from the
    /// policy's inventory and each host's executor — and the VNIs in use anywhere.
    func inventory() throws -> ([Placement.Host], Set<UInt32>) {
        let policy = ServicePorts.endpoint(control, ServicePorts.policy)
        let inv = try connection.with(policy) { client in
            do { return try client.call(PolicyAPI.Inventory(), retries: connection.retries) } catch {
                throw fail("the policy at \(policy): \(error)", code: Exit.noReply)
            }
        }
        let ctx = ZMQContext()
        defer { ctx.shutdown(); ctx.terminate() }
        let own = try connection.security()
        var hosts: [Placement.Host] = [], vnis = Set<UInt32>()
        for h in inv.hosts {
            let security = own.flatMap { h.key.isEmpty ? nil : ClientSecurity(keyPair: $0.keyPair, serverPublicKey: h.key) }
            let client = ServiceClient(context: ctx, endpoint: h.executor, security: security, timeoutMs: Int(connection.timeout * 1000))
            defer { client.close() }
            // A host whose executor does not answer cannot take a VM now.
            guard let info = try? client.call(ExecutorAPI.HostInfo(), retries: 0), let vms = try? client.call(ExecutorAPI.VMs(), retries: 0) else {
                continue
            }
            var host = Placement.Host(id: h.id, domain: h.domain, freeMB: info.freeMemoryMB)
            host.draining = h.draining
            host.usedPorts = Set(vms.vms.compactMap(\.nicPort))
            vnis.formUnion(vms.vms.compactMap(\.vni))
            hosts.append(host)
        }
        return (hosts, vnis)
    }
}

extension SpecNode {
    /// The spec as it travels in `create_environment_request` (scalars as text).
    var json: JSONValue {
        switch self {
        case .scalar(let s, _): return .string(s)
        case .list(let items, _): return .array(items.map(\.json))
        case .mapping(let entries, _): return .object(Dictionary(entries.map { ($0.key, $0.value.json) }, uniquingKeysWith: { a, _ in a }))
        }
    }
}

/// `violin create -f FILE`: one request to the policy, which places, allocates and makes the
/// VIOLIN on the hosts — all of it, or nothing.
struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a VIOLIN from its spec file: placed, given VNI, MACs and NIC ports, made on the hosts — all or nothing.",
        discussion: "The spec's fields are documented in compose/violin-spec.yaml. A bad spec exits 78 naming the key and its line.")
    @Option(name: .shortAndLong, help: "The VIOLIN's spec file (YAML).") var file: String
    @Flag(help: "Place and allocate only; create nothing.") var dryRun = false
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Flag(help: "Print the policy's reply as JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw fail("cannot read \(file): \(error)", code: Exit.usage) }
        let tree: SpecNode
        do { tree = try SpecFile.tree(text); _ = try ViolinSpec.parse(tree) } catch { throw fail("\(file): \(error)", code: Exit.config) }
        let policy = ServicePorts.endpoint(control, ServicePorts.policy)
        try request(connection, to: policy, PolicyAPI.CreateEnvironment(spec: tree.json, dryRun: dryRun)) { body in
            if json { printJSON(body); return }
            guard let r = try? PolicyAPI.CreateEnvironment.Reply.decode(body) else { printJSON(body); return }
            print("VIOLIN \(r.name): \(r.phase), VNI \(r.vni)")
            for v in r.vms { print("  \(v.name) on \(v.host) (\(v.domain)), \(v.mac), NIC port \(v.nicPort): \(v.why)") }
        }
    }
}

/// `violin destroy NAME`: every VM of the VIOLIN destroyed on its host, its inventory rows gone.
struct Destroy: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Destroy a VIOLIN made from a spec: every VM on every host, then its inventory rows.")
    @Argument(help: "The VIOLIN's name.") var name: String
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        try request(connection, to: ServicePorts.endpoint(control, ServicePorts.policy), PolicyAPI.DestroyEnvironment(name: name))
    }
}

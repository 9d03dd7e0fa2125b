import ArgumentParser
import Foundation
import PolicyCore
import ServiceKit
import SpecFile
import VIOLINProtocol

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
/// VIOLIN on the hosts — all of it, or nothing. With `--dry-run` the policy only places and
/// allocates (from every executor's own figures) and says where each VM would go and why.
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
        let tree = try readSpec(file)
        let policy = ServicePorts.endpoint(control, ServicePorts.policy)
        try request(connection.forWork, to: policy, PolicyAPI.CreateEnvironment(spec: tree.json, dryRun: dryRun)) { body in
            if json { printJSON(body); return }
            guard let r = try? PolicyAPI.CreateEnvironment.Reply.decode(body) else { printJSON(body); return }
            print("VIOLIN \(r.name): \(r.phase), VNI \(r.vni)")
            for v in r.vms { print("  \(v.name) on \(v.host) (\(v.domain)), \(v.mac), NIC port \(v.nicPort): \(v.why)") }
        }
    }
}

/// A spec file read and checked here first: a mistake exits 78 naming the key and its line.
func readSpec(_ file: String) throws -> SpecNode {
    let text: String
    do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw fail("cannot read \(file): \(error)", code: Exit.usage) }
    do {
        let tree = try SpecFile.tree(text)
        _ = try ViolinSpec.parse(tree)
        return tree
    } catch { throw fail("\(file): \(error)", code: Exit.config) }
}

/// `violin apply -f FILE`: a running VIOLIN brought to its changed spec — VMs added or removed.
struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a running VIOLIN to its changed spec file: VMs added (placed and made, all or nothing) or removed.",
        discussion: "Any other change (home domain, head, a VM's memory, image, address, pins, placement) is refused, saying what.")
    @Option(name: .shortAndLong, help: "The VIOLIN's spec file (YAML).") var file: String
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Flag(help: "Print the policy's reply as JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let tree = try readSpec(file)
        try request(connection.forWork, to: ServicePorts.endpoint(control, ServicePorts.policy), PolicyAPI.ApplyEnvironment(spec: tree.json)) { body in
            if json { printJSON(body); return }
            guard let r = try? PolicyAPI.ApplyEnvironment.Reply.decode(body) else { printJSON(body); return }
            print("VIOLIN \(r.name): \(r.added.count) added, \(r.removed.count) removed" + (r.left.isEmpty ? "" : ", left on hosts that did not answer: \(r.left.joined(separator: ", "))"))
            for v in r.added { print("  + \(v.name) on \(v.host) (\(v.domain)), \(v.mac), NIC port \(v.nicPort): \(v.why)") }
            for v in r.removed { print("  - \(v)") }
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
        try request(connection.forWork, to: ServicePorts.endpoint(control, ServicePorts.policy), PolicyAPI.DestroyEnvironment(name: name))
    }
}

import ArgumentParser
import Foundation
import Logging
import ServiceKit
import VIOLINProtocol
import ZeroMQ

extension Bench {
    /// VIOLINs made and destroyed from their specs, end to end: a real `violin-policy` and real
    /// `violin-executor`s (child processes beside this executable), each executor on libvirt's
    /// test driver (`test:///<file>`: a private in-memory hypervisor per host) with an image store
    /// holding `tiny`. The meshes are stand-ins in this process that answer `add_port` and
    /// `remove_port` at once (a real mesh starts a switch process per VIOLIN). Prints the time
    /// from `violin create` to `running` per VIOLIN, and of its destroy, as median and p99.
    struct CreateBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create",
            abstract: "Create and destroy VIOLINs through violin-policy and violin-executors on libvirt's test driver.")
        @Option(help: "VIOLINs made, one after another.") var violins = 50
        @Option(help: "VMs per VIOLIN.") var vms = 8
        @Option(help: "Host nodes (an executor each).") var hosts = 8

        func run() throws {
            guard (1...1000).contains(violins), (1...100).contains(vms), (1...64).contains(hosts) else {
                throw fail("--violins 1-1000, --vms 1-100, --hosts 1-64", code: Exit.usage)
            }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-cbench-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: dir + "/images/tiny", withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            for f in ["vmlinuz", "initrd.gz"] { try Data(f.utf8).write(to: URL(fileURLWithPath: "\(dir)/images/tiny/\(f)")) }
            let ctx = ZMQContext()
            defer { ctx.shutdown(); ctx.terminate() }
            let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
            var children: [ChildProcess] = []
            defer { for c in children { c.terminate(); c.wait() } }
            func start(_ name: String, _ args: [String], endpoint: String) throws -> ChildProcess {
                let c = try ChildProcess(bin + "/" + name, args + ["--listen", endpoint, "--log-level", "error"],
                                         stdout: .null, stderr: .append(dir + "/\(name).log"))
                children.append(c)
                guard ServiceClient.waitUntilAnswers(context: ctx, endpoint: endpoint, within: 30, alive: { c.isRunning }) else {
                    throw fail("\(name) did not start (\(dir)/\(name).log)", code: Exit.noReply)
                }
                return c
            }
            let policyEndpoint = "ipc://\(dir)/policy.sock"
            _ = try start("violin-policy", ["--database", dir + "/policy.sqlite", "--subscribe", "none", "--evaluate-interval", "3600",
                                            "--reconcile-interval", "0"], endpoint: policyEndpoint)
            let policy = ServiceClient(context: ctx, endpoint: policyEndpoint, timeoutMs: 600_000)
            defer { policy.close() }
            _ = try policy.call(PolicyAPI.RegisterDomain(id: "d1"))
            let memoryPerHost = (vms * violins / hosts + vms) * 160
            var quiet = Logger(label: "bench")
            quiet.logLevel = .error
            var meshes: [ServiceRuntime] = []
            var standIns: [StandInMesh] = []     // a runtime holds its handler weakly
            defer { meshes.forEach { $0.stop() } }
            var executors: [ServiceClient] = []
            defer { executors.forEach { $0.close() } }
            for i in 1...hosts {
                let stand = StandInMesh()
                standIns.append(stand)
                let mesh = try ServiceRuntime(settings: ServiceSettings(service: "mesh", instance: "mesh@h\(i)", listen: ["ipc://\(dir)/mesh-h\(i).sock"],
                                                                       bus: nil), logger: quiet, handler: stand)
                try mesh.start()
                meshes.append(mesh)
                try Self.testDriverNode(memoryMB: memoryPerHost).write(toFile: "\(dir)/h\(i).xml", atomically: true, encoding: .utf8)
                let endpoint = "ipc://\(dir)/executor-h\(i).sock"
                _ = try start("violin-executor", [
                    "--host-id", "h\(i)", "--libvirt-uri", "test://\(dir)/h\(i).xml", "--mesh", mesh.endpoints[0],
                    "--database", "\(dir)/executor-h\(i).sqlite", "--image-dir", dir + "/images", "--memory-mb", "\(memoryPerHost)",
                ], endpoint: endpoint)
                executors.append(ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 10_000))
                _ = try policy.call(PolicyAPI.RegisterHost(id: "h\(i)", domain: "d1", cores: 8, memoryMB: memoryPerHost, executor: endpoint))
            }
            let (created, running, destroyed, left) = try cycle(policy, executors)
            _ = standIns
            try report(created, running, destroyed, left)
        }

        /// Every VIOLIN made, one after another, then destroyed: the times of each, and the VMs the
        /// executors ran after the creations and after the destroys.
        func cycle(_ policy: ServiceClient, _ executors: [ServiceClient]) throws -> ([Double], Int, [Double], Int) {
            var created: [Double] = [], destroyed: [Double] = []
            for v in 1...violins {
                let spec: JSONValue = ["name": .string("bench-\(v)"), "home_domain": "d1", "image": "tiny", "memory_mb": 96,
                                       "workers": ["count": .number(Double(vms)), "name": .string("v\(v)w")]]
                let t0 = monotonicMillis()
                let reply = try policy.call(PolicyAPI.CreateEnvironment(spec: spec))
                created.append(Double(monotonicMillis() - t0))
                guard reply.phase == "running", reply.vms.count == vms else { throw fail("bench-\(v): \(reply.phase), \(reply.vms.count) VMs", code: 1) }
            }
            let running = try executors.reduce(0) { $0 + (try $1.call(ExecutorAPI.VMs()).vms.count) }
            for v in 1...violins {
                let t0 = monotonicMillis()
                let reply = try policy.call(PolicyAPI.DestroyEnvironment(name: "bench-\(v)"))
                destroyed.append(Double(monotonicMillis() - t0))
                guard reply.left.isEmpty, reply.destroyed.count == vms else { throw fail("bench-\(v): left \(reply.left)", code: 1) }
            }
            let left = try executors.reduce(0) { $0 + (try $1.call(ExecutorAPI.VMs()).vms.count) }
            return (created, running, destroyed, left)
        }

        func report(_ created: [Double], _ running: Int, _ destroyed: [Double], _ left: Int) throws {
            func line(_ what: String, _ t: [Double]) -> String {
                let s = t.sorted()
                return String(format: "%@ violins=%d vms=%d hosts=%d: median %.0f ms p99 %.0f ms max %.0f ms", what, violins, vms, hosts,
                              s[s.count / 2], s[min(s.count - 1, s.count * 99 / 100)], s.last!)
            }
            print(line("create_to_running", created))
            print(line("destroy", destroyed))
            print("vms_running_after_create \(running) (expected \(violins * vms)); vms_left_after_destroy \(left) (expected 0)")
            if running != violins * vms || left != 0 { throw ExitCode(1) }
        }

        /// A test-driver host: CPUs and memory, no domains.
        static func testDriverNode(memoryMB: Int) -> String {
            """
            <node>
              <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads><active>8</active><mhz>2000</mhz><model>x86_64</model></cpu>
              <memory>\(memoryMB * 1024)</memory>
            </node>

            """
        }
    }
}

/// A host's mesh as far as an executor creating and destroying VMs needs it: ports added and
/// removed, at once.
final class StandInMesh: RequestHandler, @unchecked Sendable {
    var state: JSONValue { [:] }
    private lazy var table: RequestTable = {
        var t = RequestTable()
        t.on(MeshAPI.AddPort.self) { r in
            MeshAPI.AddPortReply(vni: r.vni, port: .init(name: r.port.name, kind: "udp", local: "", remote: ""))
        }
        t.on(MeshAPI.RemovePort.self) { r in MeshAPI.RemovePortReply(vni: r.vni, port: .init(removed: r.name, last: nil)) }
        return t
    }()
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try table.handle(request) }
}

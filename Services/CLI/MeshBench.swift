import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol
import ZeroMQ

extension Bench {
    /// Joins one more host to meshes of several sizes and times how long until every member's
    /// switch forwards to it (has its tunnel in its peer set). Members are violin-mesh
    /// processes on loopback addresses 127.0.1.x, each with its own switch.
    struct Mesh: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time from a host's join request to every peer forwarding to it, for meshes of several sizes.")
        @Option(help: "Mesh sizes, comma-separated.") var sizes = "3,10,50"
        @Option(help: "Heartbeat interval of the members, seconds.") var interval = 1.0

        func run() throws {
            let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
            print("members  join_to_full_mesh_ms")
            for n in sizes.split(separator: ",").compactMap({ Int($0) }) where n >= 2 && n <= 200 {
                let ms = try measure(n, bin: bin)
                print(String(format: "%7d  %20.1f", n, ms))
            }
        }

        func measure(_ n: Int, bin: String) throws -> Double {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-meshbench-\(UUID().uuidString.prefix(8))").path
            var procs: [ChildProcess] = []
            let ctx = ZMQContext()
            defer {
                procs.forEach { $0.terminate() }
                procs.forEach { $0.wait() }
                // The meshes' switches outlive them by design.
                try? ChildProcess("/usr/bin/pkill", ["-9", "-f", dir]).wait()
                ctx.shutdown(); ctx.terminate()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let endpoint = { (i: Int) in "tcp://127.0.1.\(i + 1):7950" }
            for i in 0..<n {
                let p = try ChildProcess(bin + "/violin-mesh",
                    ["--listen", endpoint(i), "--host-address", "127.0.1.\(i + 1)", "--run-dir", "\(dir)/m\(i)",
                     "--bus", "none", "--member-interval", "\(interval)", "--member-timeout", "\(interval * 5)",
                     "--log-level", "error"], stdout: .null, stderr: .null)
                procs.append(p)
            }
            func call<R: RequestBody>(_ i: Int, _ request: R, timeoutMs: Int = 15_000) throws -> R.Reply {
                let c = ServiceClient(context: ctx, endpoint: endpoint(i), timeoutMs: timeoutMs)
                defer { c.close() }
                return try c.call(request, retries: 0)
            }
            for i in 0..<n {   // every mesh answers
                guard ServiceClient.waitUntilAnswers(context: ctx, endpoint: endpoint(i), within: 20) else {
                    throw fail("mesh \(i) did not start", code: Exit.noReply)
                }
            }
            _ = try call(0, MeshAPI.JoinViolin(vni: 9))
            for i in 1..<(n - 1) { _ = try call(i, MeshAPI.JoinViolin(vni: 9, seed: endpoint(0))) }
            // The measured join: the last host, through the first.
            let start = monotonicMillis()
            _ = try call(n - 1, MeshAPI.JoinViolin(vni: 9, seed: endpoint(0)))
            let newcomer = "127.0.1.\(n):4789"
            var pending = Set(0..<(n - 1))
            let deadline = start + 60_000
            while !pending.isEmpty && monotonicMillis() < deadline {
                for i in pending.sorted() {
                    let c = ServiceClient(context: ctx, endpoint: "ipc://\(dir)/m\(i)/switch-9.sock", timeoutMs: 1000)
                    if let stats = try? c.call(SwitchAPI.Stats(), retries: 0), stats.peers.contains(newcomer) { pending.remove(i) }
                    c.close()
                }
            }
            guard pending.isEmpty else { throw fail("\(pending.count) members never peered with the newcomer", code: Exit.noReply) }
            return Double(monotonicMillis() - start)
        }
    }
}

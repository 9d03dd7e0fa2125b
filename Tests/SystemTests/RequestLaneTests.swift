import Foundation
import ServiceKit
import TestSupport
import Testing
import VIOLINProtocol
import ZeroMQ

/// Long requests run on a service's worker: `ping` is answered while one is still running.
/// Shown as an ordering — the ping's reply arrives while the long request is held at a gate the
/// test controls, and the long request finishes only after the test opens it.
@Suite(.serialized) struct RequestLaneTests {
    /// What one call in the background ended with; nil while it runs.
    final class Pending: @unchecked Sendable {
        private let lock = NSLock()
        private var result: Result<JSONValue, Error>?
        var value: Result<JSONValue, Error>? { lock.lock(); defer { lock.unlock() }; return result }
        func finish(_ r: Result<JSONValue, Error>) { lock.lock(); result = r; lock.unlock() }
    }

    /// The mesh starts a VIOLIN's switch through a wrapper that holds at a FIFO until the test
    /// writes to it (a switch start of any length); meanwhile the mesh answers `ping`.
    @Test func meshAnswersPingWhileASwitchStarts() throws {
        let scratch = try Scratch("lanes")
        let gate = scratch.file("gate"), started = scratch.file("started")
        var mesh: Spawned?
        defer {
            mesh?.destroy()
            // The switch outlives its mesh by design; this test's one goes by its run directory.
            _ = try? run("/usr/bin/pkill", ["-9", "-f", scratch.path])
            scratch.cleanup()
        }
        #expect(mkfifo(gate, 0o600) == 0)
        let wrapper = scratch.file("slow-switch.sh")
        try """
            #!/bin/sh
            : > '\(started)'
            read _ < '\(gate)'
            exec '\(binDir)/violin-switch' "$@"
            """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        #expect(chmod(wrapper, 0o755) == 0)
        let endpoint = scratch.ipc("mesh")
        mesh = try Spawned("violin-mesh", ["--listen", endpoint, "--host-address", "127.0.0.1", "--run-dir", scratch.file("run"),
                                           "--switch-binary", wrapper, "--bus", "none", "--log-level", "warning"])
        let ctx = ZMQContext()
        defer { ctx.shutdown(); ctx.terminate() }
        #expect(ServiceClient.waitUntilAnswers(context: ctx, endpoint: endpoint, within: 20))

        let join = Pending()
        Thread {
            let client = ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 60_000)
            defer { client.close() }
            do { join.finish(.success(try client.call(MeshAPI.JoinViolin(vni: 4242), retries: 0).json)) } catch {
                join.finish(.failure(error))
            }
        }.start()
        // The mesh is inside the join: the switch's wrapper has started and waits at the gate.
        try #require(try eventually(deadline: 20) { FileManager.default.fileExists(atPath: started) }, "the switch start never began")

        let pinger = ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 5000)
        defer { pinger.close() }
        let ping = try pinger.call(AdminAPI.Ping(), retries: 0)
        #expect(ping.service == "mesh")
        let status = try pinger.call(AdminAPI.Status(), retries: 0)
        #expect(status.service == "mesh")
        #expect(join.value == nil, "ping and status were answered while the join still waited for its switch")

        // Open the gate: the switch starts and the join completes with the VIOLIN present.
        let fd = open(gate, O_WRONLY)
        #expect(fd >= 0)
        _ = write(fd, "go\n", 3)
        close(fd)
        try #require(try eventually(deadline: 30) { join.value != nil }, "the join never finished")
        guard case .success(let reply) = join.value! else { Issue.record("join failed: \(join.value!)"); return }
        #expect(reply["vni"] == 4242)
        _ = try pinger.call(MeshAPI.LeaveViolin(vni: 4242), retries: 0)
    }
}

/// A mesh holds at most `max_violins` VIOLINs (each is a switch process): one more is refused
/// with `conflict` naming the cap, and a place freed by a leave can be taken again.
@Suite struct MeshCapTests {
    @Test(.timeLimit(.minutes(2))) func aMeshRefusesMoreVIOLINsThanItsCap() throws {
        let scratch = try Scratch("meshcap")
        let endpoint = scratch.ipc("mesh")
        // A loopback address of its own: its switches' tunnels clash with no other test's.
        let address = "127.0.\(UInt8.random(in: 1...250)).\(UInt8.random(in: 1...250))"
        let mesh = try Spawned("violin-mesh", ["--listen", endpoint, "--host-address", address, "--run-dir", scratch.file("run"),
                                               "--switch-binary", "\(binDir)/violin-switch", "--bus", "none", "--log-level", "warning",
                                               "--max-violins", "2"])
        let ctx = ZMQContext()
        let client = ServiceClient(context: ctx, endpoint: endpoint, timeoutMs: 20_000)
        defer {
            for vni: UInt32 in [1, 2, 3] { _ = try? client.call(MeshAPI.LeaveViolin(vni: vni), retries: 0) }
            client.close()
            mesh.destroy()
            ctx.shutdown(); ctx.terminate()
            scratch.cleanup()
        }
        #expect(ServiceClient.waitUntilAnswers(context: ctx, endpoint: endpoint, within: 20))
        _ = try client.call(MeshAPI.JoinViolin(vni: 1), retries: 0)
        _ = try client.call(MeshAPI.JoinViolin(vni: 2), retries: 0)
        do { _ = try client.call(MeshAPI.JoinViolin(vni: 3), retries: 0); Issue.record("a third VIOLIN joined") } catch {
            guard case .error(let e) = error else { Issue.record("\(error)"); return }
            #expect(e.code == .conflict && e.message.contains("max_violins"), "\(e)")
        }
        _ = try client.call(MeshAPI.JoinViolin(vni: 1), retries: 0)   // one present already: no new place needed
        _ = try client.call(MeshAPI.LeaveViolin(vni: 1), retries: 0)
        _ = try client.call(MeshAPI.JoinViolin(vni: 3), retries: 0)
        #expect(Set(try client.call(MeshAPI.Ports(), retries: 0).violins.map(\.vni)) == [2, 3])
        // A join through a seed that does not answer fails and keeps nothing: a VIOLIN left here
        // with no member would be an island a later add_port takes for joined.
        _ = try client.call(MeshAPI.LeaveViolin(vni: 3), retries: 0)
        let silent = try freeTCPEndpoint()
        do {
            _ = try client.call(MeshAPI.AddPort(vni: 4, port: SwitchAPI.AddPort(name: "p4", kind: .udp(local: "127.0.0.1:0", remote: "127.0.0.1:29999")),
                                                seed: silent), retries: 0)
            Issue.record("joined through a seed that does not answer")
        } catch {
            guard case .error(let e) = error else { Issue.record("\(error)"); return }
            #expect(e.code == .unavailable && e.message.contains(silent), "\(e)")
        }
        #expect(try client.call(MeshAPI.Ports(), retries: 0).violins.map(\.vni) == [2], "the failed join left VIOLIN 4 here")
    }
}

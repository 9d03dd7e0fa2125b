import ExecutorService
import Foundation
import Hypervisor
import ServiceKit
import TestSupport
import Testing
import VIOLINProtocol
import ZeroMQ

/// A console client as PROTOCOL.md §4.1 describes it: a DEALER socket, requests with an empty
/// delimiter frame, replies and stream messages read from the same socket.
final class StreamClient {
    let socket: ZMQSocket
    var factory = MessageFactory(sender: "test")
    /// Everything received that was not yet taken.
    var inbox: [Message] = []

    init(_ context: ZMQContext, _ endpoint: String) throws {
        socket = try ZMQSocket(context, .dealer)
        try socket.setLinger(ms: 0)
        try socket.connect(endpoint)
    }
    deinit { socket.close() }

    @discardableResult
    func send<R: RequestBody>(_ request: R) throws -> String {
        let m = factory.request(R.msgType, body: request.json)
        _ = try socket.send([[]] + Codec.encode(m))
        return m.header.msgId
    }

    /// The first message (received now or before) that `match` accepts, within `timeoutMs`.
    func take(timeoutMs: Int = 10_000, _ match: (Message) -> Bool) throws -> Message? {
        let deadline = monotonicMillis() + Int64(timeoutMs)
        while true {
            if let i = inbox.firstIndex(where: match) { return inbox.remove(at: i) }
            let left = Int(deadline - monotonicMillis())
            guard left > 0, let frames = try socket.receive(timeoutMs: left) else { return nil }
            if let m = try? Codec.decode(Array(frames.drop { $0.isEmpty })) { inbox.append(m) }
        }
    }

    /// The reply to the request `id`.
    func reply(to id: String) throws -> JSONValue? { try take { $0.header.parentId == id && $0.header.msgType.hasSuffix("_reply") }?.body }

    func open(_ vm: String) throws -> ExecutorAPI.ConsoleOpenReply {
        let body = try #require(try reply(to: send(ExecutorAPI.ConsoleOpen(vm: vm))))
        return try ExecutorAPI.ConsoleOpenReply.decode(try Replies.result(of: body).get())
    }

    /// Console output of `stream` until `text` appears in it.
    func output(_ stream: String, until text: String) throws -> String {
        var seen = ""
        while !seen.contains(text) {
            guard let m = try take(timeoutMs: 10_000, { $0.header.msgType == ExecutorAPI.ConsoleOutput.topic }),
                  let out = ExecutorAPI.ConsoleOutput(m.body), out.stream == stream else { break }
            seen += String(decoding: out.bytes, as: UTF8.self)
        }
        return seen
    }

    func closed(_ stream: String, timeoutMs: Int = 10_000) throws -> ExecutorAPI.ConsoleClosed? {
        try take(timeoutMs: timeoutMs) { $0.header.msgType == ExecutorAPI.ConsoleClosed.topic }.flatMap { ExecutorAPI.ConsoleClosed($0.body) }
    }
}

/// Console streams (PROTOCOL.md §4.1) on the executor, against the in-memory hypervisor whose
/// console echoes what is typed, over real ZeroMQ.
extension ExecutorOrchestrationTests {
    @Test func aConsoleStreamCarriesBothWaysAndBelongsToItsClient() throws {
        try withTwoHosts { _, h1, _, _, _ in
            try withContext { ctx in
                let client = try StreamClient(ctx, h1.endpoint)
                let opened = try client.open("a1")
                #expect(opened.vm == "a1" && opened.host == "h1" && opened.idleTimeoutS == 30)
                let typed = try client.send(ExecutorAPI.ConsoleInput(stream: opened.stream, bytes: Array("echo hi\n".utf8)))
                #expect(try client.reply(to: typed)?["written"] == 8)
                #expect(try client.output(opened.stream, until: "echo hi\n").contains("echo hi\n"))
                // Another client cannot type into it, nor close it: to it the stream does not exist.
                let stranger = try StreamClient(ctx, h1.endpoint)
                let forged = try stranger.reply(to: stranger.send(ExecutorAPI.ConsoleInput(stream: opened.stream, bytes: [65])))
                #expect(forged?["code"] == "not_found")
                #expect(try stranger.reply(to: stranger.send(ExecutorAPI.ConsoleClose(stream: opened.stream)))?["code"] == "not_found")
                // Its owner closes it: the last message says so, and the stream is gone.
                _ = try client.send(ExecutorAPI.ConsoleClose(stream: opened.stream))
                #expect(try client.closed(opened.stream)?.reason == "closed")
                #expect(try client.reply(to: client.send(ExecutorAPI.ConsoleInput(stream: opened.stream, bytes: [])))?["code"] == "not_found")
                #expect(try client.reply(to: client.send(ExecutorAPI.ConsoleOpen(vm: "nope")))?["code"] == "not_found")
                // Too much at once is refused before it reaches the console.
                let big = ExecutorAPI.ConsoleInput(stream: opened.stream, bytes: [UInt8](repeating: 65, count: ExecutorAPI.consoleChunkBytes + 1))
                #expect(try client.reply(to: client.send(big))?["code"] == "invalid_body")
            }
        }
    }

    @Test func aConsoleFollowsItsVMAwayAndEndsWhenItIsGone() throws {
        try withTwoHosts { world, h1, h2, c1, _ in
            try withContext { ctx in
                let client = try StreamClient(ctx, h1.endpoint)
                let opened = try client.open("a1")
                _ = try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint)))
                try #require(world.waitForMigration("a1", timeout: 20))
                world.finish("a1")
                let closed = try #require(try client.closed(opened.stream))
                #expect(closed.reason == "migrated" && closed.to == "h2", "\(closed)")
                // At its new host the console answers again; when the VM is destroyed it ends.
                let there = try StreamClient(ctx, h2.endpoint)
                let again = try there.open("a1")
                #expect(again.host == "h2")
                _ = try there.send(ExecutorAPI.ConsoleInput(stream: again.stream, bytes: Array("still here\n".utf8)))
                #expect(try there.output(again.stream, until: "still here").contains("still here"))
                let c2 = ServiceClient(context: ctx, endpoint: h2.endpoint, timeoutMs: 10_000)
                defer { c2.close() }
                _ = try c2.call(ExecutorAPI.DestroyVM(name: "a1"))
                #expect(try there.closed(again.stream)?.reason == "vm_gone")
            }
        }
    }

    @Test func aQuietConsoleIsClosedAndAKeepaliveKeepsItOpen() throws {
        try withTwoHosts(consoleIdleTimeout: 0.6) { _, h1, _, _, _ in
            try withContext { ctx in
                let client = try StreamClient(ctx, h1.endpoint)
                let kept = try client.open("a1")
                let quiet = try StreamClient(ctx, h1.endpoint)
                let dropped = try quiet.open("a1")
                // Empty input every 200 ms keeps one open while the other, silent, is closed.
                let deadline = monotonicMillis() + 10_000
                var closed: ExecutorAPI.ConsoleClosed?
                while closed == nil && monotonicMillis() < deadline {
                    _ = try client.send(ExecutorAPI.ConsoleInput(stream: kept.stream, bytes: []))
                    closed = try quiet.closed(dropped.stream, timeoutMs: 200)
                }
                #expect(closed?.reason == "idle")
                let still = try client.reply(to: client.send(ExecutorAPI.ConsoleInput(stream: kept.stream, bytes: Array("x".utf8))))
                #expect(still?["status"] == "ok")
            }
        }
    }
}

/// Stopping a VM and starting it again on its host: the definition, ports and VIOLIN kept.
extension ExecutorOrchestrationTests {
    @Test func aStoppedVMKeepsItsPlaceAndStartsAgain() throws {
        try withTwoHosts { world, h1, h2, c1, _ in
            _ = try c1.call(ExecutorAPI.StopVM(name: "a1"))
            #expect(world.state("mem://h1", "a1") == .absent, "the domain is gone")
            let listed = try c1.call(ExecutorAPI.VMs()).vms
            #expect(listed.map(\.name) == ["a1"] && listed[0].state == "stopped" && listed[0].vni == 101 && listed[0].nicPort == 20001
                    && listed[0].mac == "52:54:00:0a:00:01", "\(listed)")
            #expect(h1.mesh.requests(MeshAPI.RemovePort.msgType).count == 1, "its port left the switch")
            // Its name stays taken on this host; it cannot migrate while stopped.
            let again = ExecutorAPI.CreateVM(name: "a1", vni: 101, mac: MACAddress("52:54:00:0a:00:01")!, kernel: "/bin/sh", nicPort: 20001)
            #expect(throws: ServiceClient.Failure.self) { try c1.call(again) }
            #expect(throws: ServiceClient.Failure.self) { try c1.call(ExecutorAPI.Migrate(vm: "a1", options: .init(toExecutor: h2.endpoint))) }
            #expect(throws: ServiceClient.Failure.self) { try c1.call(ExecutorAPI.StopVM(name: "a1")) }

            _ = try c1.call(ExecutorAPI.StartVM(name: "a1", seed: "tcp://10.9.9.9:7701"))
            #expect(world.state("mem://h1", "a1") == .running)
            let added = h1.mesh.requests(MeshAPI.AddPort.msgType)
            #expect(added.count == 2 && added.last?["seed"] == "tcp://10.9.9.9:7701" && added.last?["remote"] == "127.0.0.1:20002",
                    "the same port again, joining through the seed: \(added)")
            #expect(try c1.call(ExecutorAPI.VMs()).vms.map(\.state) == ["running"])
            #expect(throws: ServiceClient.Failure.self) { try c1.call(ExecutorAPI.StartVM(name: "a1")) }

            // A stopped VM is destroyed like a running one: nothing of it is left.
            _ = try c1.call(ExecutorAPI.StopVM(name: "a1"))
            _ = try c1.call(ExecutorAPI.DestroyVM(name: "a1"))
            #expect(try c1.call(ExecutorAPI.VMs()).vms.isEmpty)
            #expect(throws: ServiceClient.Failure.self) { try c1.call(ExecutorAPI.StartVM(name: "a1")) }
        }
    }
}

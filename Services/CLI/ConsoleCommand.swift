import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// `violin console VM`: the terminal attached to the VM's serial console wherever it runs
/// (PROTOCOL.md §4.1). `Ctrl-]` detaches; when the VM migrates, the console follows it.
struct Console: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach to a VM's serial console (Ctrl-] detaches; follows the VM when it migrates).")
    @Argument(help: "The VM.") var vm: String
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @OptionGroup var connection: ConnectionOptions

    static let detach: UInt8 = 0x1d   // Ctrl-]

    func run() throws {
        let cluster = try Cluster(connection, control: control)
        defer { cluster.close() }
        guard let row = cluster.inventory.vms.first(where: { $0.id == vm }), !row.host.isEmpty else {
            throw fail("no VM \(vm) in the inventory", code: Exit.errorReply)
        }
        let terminal = RawTerminal()
        defer { terminal.restore() }
        var host = try cluster.host(row.host)
        while true {
            let session = try ConsoleSession(cluster: cluster, host: host, vm: vm, timeoutMs: Int(connection.timeout * 1000))
            note("connected to \(vm) on \(host.id)" + (terminal.active ? " (Ctrl-] detaches)" : ""))
            let end = try session.relay()
            session.close()
            switch end {
            case .detached: note("detached"); return
            case .moved(let to):
                note("\(vm) moved to \(to); reconnecting")
                host = try cluster.host(to)
            case .closed(let reason, let message):
                note("console closed: \(reason)" + (message.isEmpty ? "" : ", \(message)"))
                if reason != "closed" { throw ExitCode(Exit.errorReply) }
                return
            }
        }
    }

    func note(_ s: String) { FileHandle.standardError.write(Data("\r\n[violin: \(s)]\r\n".utf8)) }
}

/// One console stream on one executor, over a DEALER socket.
final class ConsoleSession {
    enum End { case detached, moved(String), closed(String, String) }
    let socket: ZMQSocket
    var factory = MessageFactory(sender: "violin-cli")
    let stream: String
    let keepaliveMs: Int64

    init(cluster: Cluster, host: PolicyAPI.InventoryReply.Host, vm: String, timeoutMs: Int) throws {
        socket = try ZMQSocket(cluster.context, .dealer)
        try socket.setLinger(ms: 0)
        if let security = cluster.security(host) { try socket.makeCurveClient(security) }
        try socket.connect(host.executor)
        let open = factory.request(ExecutorAPI.ConsoleOpen.msgType, body: ExecutorAPI.ConsoleOpen(vm: vm).json)
        _ = try socket.send([[]] + Codec.encode(open))
        let deadline = monotonicMillis() + Int64(timeoutMs)
        while true {
            let left = Int(deadline - monotonicMillis())
            guard left > 0, let frames = try socket.receive(timeoutMs: left) else {
                socket.close()
                throw fail("\(host.id): no answer from \(host.executor) within \(timeoutMs) ms", code: Exit.noReply)
            }
            guard let m = try? Codec.decode(Array(frames.drop { $0.isEmpty })), m.header.parentId == open.header.msgId else { continue }
            switch Replies.result(of: m.body) {
            case .failure(let e):
                socket.close()
                throw fail("\(host.id): \(e.code.rawValue): \(e.message)", code: Exit.errorReply)
            case .success(let body):
                let reply = try ExecutorAPI.ConsoleOpenReply.decode(body)
                stream = reply.stream
                keepaliveMs = Int64(max(1, reply.idleTimeoutS)) * 1000 / 3
                return
            }
        }
    }

    func close() {
        _ = try? socket.send([[]] + Codec.encode(factory.request(ExecutorAPI.ConsoleClose.msgType, body: ExecutorAPI.ConsoleClose(stream: stream).json)),
                             dontWait: true)
        socket.close()
    }

    func send(_ bytes: [UInt8]) throws {
        let m = factory.request(ExecutorAPI.ConsoleInput.msgType, body: ExecutorAPI.ConsoleInput(stream: stream, bytes: bytes).json)
        _ = try socket.send([[]] + Codec.encode(m))
    }

    /// Relays stdin to the console and the console to stdout until one side ends.
    func relay() throws -> End {
        var items = [PollItem(socket: socket), PollItem(fd: STDIN_FILENO)]
        var stdinOpen = true
        var lastSent = monotonicMillis()
        var buffer = [UInt8](repeating: 0, count: ExecutorAPI.consoleChunkBytes)
        while true {
            if !stdinOpen { items = [items[0]] }
            _ = try poll(&items, timeoutMs: 1000)
            if stdinOpen, items.count > 1, items[1].readable || items[1].hungUp {
                let n = read(STDIN_FILENO, &buffer, buffer.count)
                if n <= 0 {
                    stdinOpen = false
                    return .detached
                }
                let bytes = Array(buffer.prefix(n))
                if let cut = bytes.firstIndex(of: Console.detach) {
                    if cut > 0 { try send(Array(bytes[..<cut])) }
                    return .detached
                }
                try send(bytes)
                lastSent = monotonicMillis()
            }
            if items[0].readable {
                while let frames = try socket.receive(dontWait: true) {
                    if let end = try handle(frames) { return end }
                }
            }
            if monotonicMillis() - lastSent > keepaliveMs {
                try send([])
                lastSent = monotonicMillis()
            }
        }
    }

    /// One message from the executor: output is printed, a closing ends the relay, an error
    /// reply to our input (the stream is gone) too.
    func handle(_ frames: [Frame]) throws -> End? {
        guard let m = try? Codec.decode(Array(frames.drop { $0.isEmpty })) else { return nil }
        switch m.header.msgType {
        case ExecutorAPI.ConsoleOutput.topic:
            guard let out = ExecutorAPI.ConsoleOutput(m.body), out.stream == stream else { return nil }
            FileHandle.standardOutput.write(Data(out.bytes))
        case ExecutorAPI.ConsoleClosed.topic:
            guard let c = ExecutorAPI.ConsoleClosed(m.body), c.stream == stream else { return nil }
            return c.reason == "migrated" && !c.to.isEmpty ? .moved(c.to) : .closed(c.reason, c.message)
        default:
            if case .failure(let e) = Replies.result(of: m.body) { return .closed("error", "\(e.code.rawValue): \(e.message)") }
        }
        return nil
    }
}

/// The terminal in raw mode while the console is attached (when stdin is a terminal).
final class RawTerminal {
    private var saved = termios()
    let active: Bool

    init() {
        guard isatty(STDIN_FILENO) == 1, tcgetattr(STDIN_FILENO, &saved) == 0 else { active = false; return }
        var raw = saved
        cfmakeraw(&raw)
        active = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0
    }

    func restore() {
        if active { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
    }
}

import Foundation
import Hypervisor
import Primitives
import ServiceKit
import VIOLINProtocol

/// The executor's console streams (PROTOCOL.md §4.1): each relays one VM's serial console
/// (libvirt's console stream, on a connection of its own) to the client that opened it. A
/// thread per stream reads the console; input arrives as requests on the loop thread. A stream
/// ends when its client closes it or goes quiet for `idleTimeoutS`, or when the console ends —
/// the VM migrated (the closing message names the host it went to) or is gone.
public final class ConsoleRelay: @unchecked Sendable {
    public static let idleTimeoutS = 30
    static let maxStreams = 16

    private final class Stream: @unchecked Sendable {
        let id: String, vm: String, route: Route, parent: String
        let console: any ConsoleStream
        var lastHeard = monotonicMillis()
        var seq = 0
        init(id: String, vm: String, route: Route, parent: String, console: any ConsoleStream) {
            self.id = id; self.vm = vm; self.route = route; self.parent = parent; self.console = console
        }
    }

    private let lock = NSLockLite()
    private var streams: [String: Stream] = [:]
    private var sender: (any StreamSender)?
    private var sweeper: DispatchSourceTimer?
    let host: String
    /// Opens a VM's console (on a hypervisor connection of its own).
    let openConsole: (String) throws(ProtocolError) -> any ConsoleStream
    /// Why a VM's console ended: the host it migrated to, or nil when it did not move.
    let movedTo: (String) -> String?
    let idleTimeoutMs: Int64

    init(host: String, open: @escaping (String) throws(ProtocolError) -> any ConsoleStream, movedTo: @escaping (String) -> String?,
         idleTimeout: Double) {
        self.host = host; self.openConsole = open; self.movedTo = movedTo
        idleTimeoutMs = Int64(max(0.05, idleTimeout) * 1000)
    }

    func attach(_ sender: any StreamSender) {
        lock.withLock { self.sender = sender }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        let every = min(1.0, Double(idleTimeoutMs) / 4000)
        timer.schedule(deadline: .now() + every, repeating: every)
        timer.setEventHandler { [weak self] in self?.sweep() }
        timer.resume()
        lock.withLock { sweeper = timer }
    }

    var count: Int { lock.withLock { streams.count } }

    func open(_ r: ExecutorAPI.ConsoleOpen, parent: String, route: Route) throws(ProtocolError) -> ExecutorAPI.ConsoleOpenReply {
        guard count < Self.maxStreams else {
            throw ProtocolError(.conflict, "host \(host) has \(Self.maxStreams) consoles open; close one first")
        }
        let console = try openConsole(r.vm)
        let stream = Stream(id: UUID().uuidString.lowercased(), vm: r.vm, route: route, parent: parent, console: console)
        lock.withLock { streams[stream.id] = stream }
        let reader = Thread { [weak self] in self?.relay(stream) }
        reader.name = "console-\(r.vm)"
        reader.start()
        return ExecutorAPI.ConsoleOpenReply(stream: stream.id, vm: r.vm, host: host, idleTimeoutS: Int(max(1, (idleTimeoutMs + 999) / 1000)))
    }

    func input(_ r: ExecutorAPI.ConsoleInput, route: Route) throws(ProtocolError) -> ExecutorAPI.ConsoleInputReply {
        let stream = try owned(r.stream, by: route)
        lock.withLock { stream.lastHeard = monotonicMillis() }
        if !r.bytes.isEmpty {
            do { try stream.console.write(r.bytes) } catch {
                throw ProtocolError(.unavailable, "console of \(stream.vm): \(error.message)")
            }
        }
        return ExecutorAPI.ConsoleInputReply(stream: r.stream, written: r.bytes.count)
    }

    func close(_ r: ExecutorAPI.ConsoleClose, route: Route) throws(ProtocolError) -> ExecutorAPI.ConsoleInputReply {
        _ = try owned(r.stream, by: route)
        end(r.stream, ExecutorAPI.ConsoleClosed(stream: r.stream, reason: "closed"))
        return ExecutorAPI.ConsoleInputReply(stream: r.stream, written: 0)
    }

    /// Every stream ends (the executor stops).
    func stop() {
        lock.withLock { sweeper?.cancel(); sweeper = nil }
        for id in lock.withLock({ Array(streams.keys) }) {
            end(id, ExecutorAPI.ConsoleClosed(stream: id, reason: "error", message: "the executor of \(host) stops"))
        }
    }

    /// A stream only its own client may use; to anyone else it does not exist.
    private func owned(_ id: String, by route: Route) throws(ProtocolError) -> Stream {
        guard let s = lock.withLock({ streams[id] }), s.route == route else { throw ProtocolError(.notFound, "no console stream \(id)") }
        return s
    }

    private func relay(_ stream: Stream) {
        while true {
            let bytes: [UInt8]
            do { bytes = try stream.console.read(max: ExecutorAPI.consoleChunkBytes) } catch {
                end(stream.id, ExecutorAPI.ConsoleClosed(stream: stream.id, reason: "error", message: error.message))
                return
            }
            if bytes.isEmpty { break }
            let (sender, seq) = lock.withLock { () -> ((any StreamSender)?, Int) in stream.seq += 1; return (self.sender, stream.seq) }
            guard lock.withLock({ streams[stream.id] != nil }) else { return }
            sender?.send(ExecutorAPI.ConsoleOutput(stream: stream.id, seq: seq, bytes: bytes), parent: stream.parent, to: stream.route)
        }
        guard lock.withLock({ streams[stream.id] != nil }) else { return }
        if let to = movedTo(stream.vm) {
            end(stream.id, ExecutorAPI.ConsoleClosed(stream: stream.id, reason: "migrated", to: to, message: "\(stream.vm) moved to \(to)"))
        } else {
            end(stream.id, ExecutorAPI.ConsoleClosed(stream: stream.id, reason: "vm_gone", message: "\(stream.vm) is no longer running on \(host)"))
        }
    }

    /// Ends a stream once: its console closes and its client gets the closing message.
    private func end(_ id: String, _ closing: ExecutorAPI.ConsoleClosed) {
        guard let (stream, sender) = lock.withLock({ () -> (Stream, (any StreamSender)?)? in
            guard let s = streams.removeValue(forKey: id) else { return nil }
            return (s, self.sender)
        }) else { return }
        stream.console.close()
        sender?.send(closing, parent: stream.parent, to: stream.route)
    }

    private func sweep() {
        let now = monotonicMillis()
        let idle = lock.withLock { streams.values.filter { now - $0.lastHeard > idleTimeoutMs }.map(\.id) }
        for id in idle {
            end(id, ExecutorAPI.ConsoleClosed(stream: id, reason: "idle", message: "no request for \(Double(idleTimeoutMs) / 1000) s"))
        }
    }
}

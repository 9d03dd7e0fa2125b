import Foundation
import ServiceKit
import TestSupport
import Testing
import VIOLINProtocol
import ZeroMQ

/// Where the built executables are: VIOLIN_BIN_DIR, else beside the test bundle, else .build/debug.
let binDir: String = {
    if let dir = ProcessInfo.processInfo.environment["VIOLIN_BIN_DIR"] { return dir }
    let fm = FileManager.default
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        if fm.isExecutableFile(atPath: dir.appendingPathComponent("violin-bus").path) { return dir.path }
        dir = dir.deletingLastPathComponent()
    }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug").path
}()

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A private scratch directory for one test: ipc sockets, keys, logs. Removed by `cleanup`.
final class Scratch {
    let path: String
    init(_ name: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("violin-\(name)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func ipc(_ name: String) -> String { "ipc://\(path)/\(name).sock" }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

private let spawnLock = NSLock()

/// A child process with its output collected line by line. Killed by PID when the test ends.
/// Each pipe is drained by a thread of its own (blocking reads until end of file), so no two
/// threads ever read one handle. Started through ServiceKit's `ChildProcess` (posix_spawn, not
/// Foundation's `Process`: see there why).
final class Spawned: @unchecked Sendable {
    let name: String
    let pid: pid_t
    private let child: ChildProcess
    private let changed = NSCondition()
    private var out: [String] = []
    private var err = ""
    private var partial = ""
    private let drained = DispatchSemaphore(value: 0)

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        name = executable
        let path = executable.hasPrefix("/") ? executable : "\(binDir)/\(executable)"
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        // One spawn at a time: the pipes are marked close-on-exec before any other child can
        // inherit them (a stray copy of a write end would hold another child's output open).
        spawnLock.lock()
        defer { spawnLock.unlock() }
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0 else { throw LabError(description: "pipe: errno \(errno)") }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw LabError(description: "pipe: errno \(errno)")
        }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(outPipe[1]); close(errPipe[1]) }
        do {
            child = try ChildProcess(path, arguments, environment: env,
                                     stdout: .descriptor(outPipe[1]), stderr: .descriptor(errPipe[1]))
        } catch {
            close(outPipe[0]); close(errPipe[0])
            throw LabError(description: "\(error)")
        }
        pid = child.pid
        for (fd, isErr) in [(outPipe[0], false), (errPipe[0], true)] {
            let reader = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            let t = Thread { [weak self] in
                while true {
                    let data = reader.availableData
                    if data.isEmpty { break }
                    self?.append(data, toErr: isErr)
                }
                self?.drained.signal()
            }
            t.start()
        }
    }

    var isRunning: Bool { child.isRunning }

    private func append(_ data: Data, toErr: Bool) {
        changed.lock()
        let text = String(decoding: data, as: UTF8.self)
        if toErr { err += text } else {
            partial += text
            // By bytes: "\r\n" (a terminal's line end) is one Character, which "\n" does not match.
            while let nl = partial.utf8.firstIndex(of: UInt8(ascii: "\n")) {
                out.append(String(partial[..<nl]))
                partial = String(partial[partial.utf8.index(after: nl)...])
            }
        }
        changed.broadcast()
        changed.unlock()
    }

    var lines: [String] { changed.lock(); defer { changed.unlock() }; return out }
    var stderrText: String { changed.lock(); defer { changed.unlock() }; return err }

    /// Waits for a line of stdout that satisfies `match`, up to `timeout` seconds.
    func waitForLine(timeout: Double, _ match: (String) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        changed.lock()
        defer { changed.unlock() }
        var checked = 0
        while true {
            while checked < out.count {
                if match(out[checked]) { return out[checked] }
                checked += 1
            }
            if !changed.wait(until: deadline) { return nil }
        }
    }

    private var reaped = false

    /// Waits for the process to end (and its output to be read, for up to 2 s more); nil if it
    /// did not end within `timeout` seconds.
    func waitExit(timeout: Double) -> Int32? {
        changed.lock()
        let already = reaped
        changed.unlock()
        if !already {
            guard child.wait(timeout: timeout) != nil else { return nil }
            // Output still in the pipes (unless a child of the process holds them open).
            _ = drained.wait(timeout: .now() + 2)
            _ = drained.wait(timeout: .now() + 2)
            changed.lock()
            reaped = true
            changed.unlock()
        }
        return child.exitStatus ?? -1
    }

    func signal(_ sig: Int32) { child.terminate(sig) }

    /// SIGKILL if still running, then reap.
    func destroy() {
        signal(SIGKILL)
        _ = waitExit(timeout: 10)
    }
}

/// Runs a command to completion (with a deadline) and returns its exit status and output.
func run(_ executable: String, _ arguments: [String], timeout: Double = 30) throws -> (status: Int32, out: String, err: String) {
    let p = try Spawned(executable, arguments)
    guard let status = p.waitExit(timeout: timeout) else {
        p.destroy()
        Issue.record("\(executable) \(arguments) did not finish within \(timeout) s")
        return (-1, p.lines.joined(separator: "\n"), p.stderrText)
    }
    return (status, p.lines.joined(separator: "\n"), p.stderrText)
}

/// A free loopback TCP port (bound and released; the test binds it again at once).
func freeTCPEndpoint() throws -> String {
    let ctx = ZMQContext()
    defer { ctx.shutdown(); ctx.terminate() }
    let s = try ZMQSocket(ctx, .rep)
    try s.bind("tcp://127.0.0.1:*")
    let endpoint = try s.lastEndpoint()
    s.close()
    return endpoint
}

/// A counter from the output of `violin metrics` (nil when it is not a metrics reply).
func metricsCounter(_ output: String, _ name: String) -> Int? {
    guard let v = try? JSONText.parse(Array(output.utf8)) else { return nil }
    return v["counters"]?[name]?.intValue
}

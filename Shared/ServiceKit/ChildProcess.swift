import CPrimitives
import Foundation

/// A child process started with `posix_spawn`, reaped by a thread of its own.
///
/// Used instead of Foundation's `Process`: on Linux, `Process.run()` in this toolchain lists
/// /proc/self/fd copying whole 256-byte `d_name` fields and now and then reads past a page into
/// nothing (swift-corelibs-foundation PR #5472) — a SIGSEGV of the parent (it took down a test
/// run about once in a dozen; `violin-mesh` starting switches was exposed the same way).
///
/// The child gets its own process group (a Ctrl-C meant for the parent's terminal does not
/// reach it, as with `Process`), default signal dispositions and an empty signal mask.
public final class ChildProcess: @unchecked Sendable {
    /// Where a standard stream of the child goes.
    public enum Stream: Sendable {
        case inherit
        case null
        /// Appended to this file (created if missing).
        case append(String)
        /// This descriptor of the parent (e.g. a pipe's write end); the parent keeps its copy.
        case descriptor(Int32)
    }

    public let pid: pid_t
    private let changed = NSCondition()
    private var status: Int32?

    /// Starts `path` with `arguments`; `environment` nil inherits the parent's. `onExit` runs
    /// on the reaping thread once the child has ended.
    public init(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                stdout: Stream = .inherit, stderr: Stream = .inherit,
                onExit: (@Sendable (ChildProcess) -> Void)? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        for (stream, fd) in [(stdout, Int32(1)), (stderr, Int32(2))] {
            switch stream {
            case .inherit: break
            case .null: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            // O_NOFOLLOW: a symlink planted at a log path makes the spawn fail, not a write elsewhere.
            case .append(let file): posix_spawn_file_actions_addopen(&actions, fd, file, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0o644)
            case .descriptor(let d): posix_spawn_file_actions_adddup2(&actions, d, fd)
            }
        }
        // Nothing else of ours reaches the child: a switch outliving its killed mesh must not
        // hold the mesh's listening sockets (its metrics port among them) against the next one.
        vp_spawn_close_from(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let env = environment.map { $0.map { "\($0.key)=\($0.value)" } }
            ?? ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { for p in argv + envp { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw ChildProcessError(path: path, code: rc) }
        pid = child
        let waiter = Thread { [self, child] in
            // Wait for the end without reaping, then reap under the lock: `terminate` (which
            // signals only while `status` is nil, under the same lock) can never reach a
            // process that reused the PID.
            var info = siginfo_t()
            while waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
            changed.lock()
            var raw: Int32 = 0
            while waitpid(child, &raw, 0) < 0 && errno == EINTR {}
            // Exit code, or the signal that ended it (as Foundation's terminationStatus).
            status = raw & 0x7F == 0 ? (raw >> 8) & 0xFF : raw & 0x7F
            changed.broadcast()
            changed.unlock()
            onExit?(self)
        }
        waiter.name = "reaper-\(child)"
        waiter.start()
    }

    public var isRunning: Bool { changed.lock(); defer { changed.unlock() }; return status == nil }

    /// The exit code, or the number of the signal that ended it; nil while it runs.
    public var exitStatus: Int32? { changed.lock(); defer { changed.unlock() }; return status }

    /// Sends `signal` (SIGTERM by default) unless the child has already been reaped.
    public func terminate(_ signal: Int32 = SIGTERM) {
        changed.lock()
        defer { changed.unlock() }
        if status == nil { kill(pid, signal) }
    }

    /// Waits for the child to end: its exit status, or nil if `timeout` seconds passed first.
    @discardableResult
    public func wait(timeout: Double = .infinity) -> Int32? {
        changed.lock()
        defer { changed.unlock() }
        // Foundation's NSCondition traps on `wait(until: .distantFuture)`: no deadline, no date.
        guard timeout.isFinite else {
            while status == nil { changed.wait() }
            return status
        }
        let deadline = Date().addingTimeInterval(timeout)
        while status == nil {
            if !changed.wait(until: deadline) { return status }
        }
        return status
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public let path: String
    public let code: Int32
    public var description: String { "cannot start \(path): \(String(cString: strerror(code)))" }
}

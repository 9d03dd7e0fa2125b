import Foundation
import VIOLINProtocol
import ZeroMQ

/// The keys a service accepts and the role of each (PROTOCOL.md §7.1), read from the
/// `curve_allowed` file or directory. The file is read again whenever it changes (checked at
/// most every `recheckMs` — by default at every message), so a key revoked on disk is refused
/// at its next message without a restart. The node's own key is trusted: its services are one
/// party.
///
/// File form, one key per line: `<key> <role>[,<role>...]`, `#` comments; `public-key = <key>`
/// lines take the role from a following `role = <role>` line. Directory form: `*.pub` files,
/// each with `public-key = ...` and `role = ...`.
public final class KeyTable: @unchecked Sendable {
    public struct Entry: Equatable, Sendable {
        public var key: String
        public var roles: [Role]
        public init(key: String, roles: [Role]) { self.key = key; self.roles = roles }
    }

    public let path: String?
    public let ownKey: String
    private let lock = NSLockLite()
    private var entries: [String: [Role]]
    private var stamp: FileStamp?
    private let recheckMs: Int64
    private var checkedAt: Int64 = 0

    /// A table read from `path` (file or directory); throws naming the line that is wrong.
    public init(path: String, ownKey: String, recheckMs: Int64 = 0) throws {
        self.path = path
        self.ownKey = ownKey
        self.recheckMs = recheckMs
        stamp = FileStamp(path)
        entries = try Self.read(path)
    }

    /// A table held in memory (tests, and a service without a file).
    public init(entries: [Entry], ownKey: String = "") {
        path = nil
        self.ownKey = ownKey
        recheckMs = 0
        self.entries = Dictionary(entries.map { ($0.key, $0.roles) }, uniquingKeysWith: { a, b in a + b })
    }

    /// Who `key` is, or nil when it is not accepted (unknown, or revoked since).
    public func caller(_ key: String) -> Caller? {
        if !ownKey.isEmpty && key == ownKey { return Caller(key: key, roles: [], trusted: true) }
        reloadIfChanged()
        return lock.withLock { entries[key] }.map { Caller(key: key, roles: $0) }
    }

    public func accepts(_ key: String) -> Bool { caller(key) != nil }

    public var all: [Entry] {
        reloadIfChanged()
        return lock.withLock { entries.map { Entry(key: $0.key, roles: $0.value) }.sorted { $0.key < $1.key } }
    }

    private func reloadIfChanged() {
        guard let path else { return }
        let now = monotonicMillis()
        let due = lock.withLock { () -> Bool in
            guard now - checkedAt >= recheckMs else { return false }
            checkedAt = now
            return true
        }
        guard due else { return }
        let current = FileStamp(path)
        guard current != lock.withLock({ stamp }) else { return }
        // A file that cannot be read (half written, removed) refuses everyone until it can.
        let fresh = (try? Self.read(path)) ?? [:]
        lock.withLock { entries = fresh; stamp = current }
    }

    // MARK: - Files

    public static func read(_ path: String) throws -> [String: [Role]] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw KeyFiles.KeyFileError(description: "\(path) does not exist")
        }
        if isDir.boolValue {
            var out: [String: [Role]] = [:]
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".pub") }.sorted()
            for name in names {
                let file = path + "/" + name
                let key = try KeyFiles.readPublicKey(file)
                guard let text = try KeyFiles.fields(file)["role"] else {
                    throw KeyFiles.KeyFileError(description: "\(file) has no role line (role = operator, control, domain-admin:<d> or host:<id>)")
                }
                out[key, default: []] += try roles(text, where: file)
            }
            return out
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFiles.KeyFileError(description: "cannot read \(path)")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws -> [String: [Role]] {
        var out: [String: [Role]] = [:]
        var pending: (key: String, line: Int)?
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            let here = "\(path) line \(i + 1)"
            if t.hasPrefix("public-key") || t.hasPrefix("role") {
                let value = t.split(separator: "=", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                if t.hasPrefix("role") {
                    guard let p = pending else { throw KeyFiles.KeyFileError(description: "\(here): a role line with no public-key line before it") }
                    out[p.key, default: []] += try roles(value, where: here)
                    pending = nil
                    continue
                }
                if let p = pending { throw missingRole(path, p.line) }
                guard CurveKeyPair.isValidKey(value) else { throw KeyFiles.KeyFileError(description: "\(here) is not a CURVE public key") }
                pending = (value, i + 1)
                continue
            }
            if let p = pending { throw missingRole(path, p.line) }
            let parts = t.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard CurveKeyPair.isValidKey(parts[0]) else { throw KeyFiles.KeyFileError(description: "\(here) is not a CURVE public key") }
            guard parts.count == 2 else { throw missingRole(path, i + 1) }
            out[parts[0], default: []] += try roles(parts[1], where: here)
        }
        if let p = pending { throw missingRole(path, p.line) }
        return out
    }

    private static func missingRole(_ path: String, _ line: Int) -> Error {
        KeyFiles.KeyFileError(description: "\(path) line \(line): a key needs its role after it (operator, control, domain-admin:<d> or host:<id>)")
    }

    static func roles(_ text: String, where place: String) throws -> [Role] {
        try text.split(separator: ",").map { part in
            guard let role = Role(part.trimmingCharacters(in: .whitespaces)) else {
                throw KeyFiles.KeyFileError(description: "\(place): '\(part)' is not a role (operator, control, domain-admin:<d> or host:<id>)")
            }
            return role
        }
    }

    /// Writes a table file atomically (a new file renamed over the old, mode 0600).
    public static func save(_ entries: [Entry], to path: String) throws {
        var text = "# VIOLIN key table: <public key> <role>. Edited by `violin keys`.\n"
        for e in entries.sorted(by: { $0.key < $1.key }) {
            text += "\(e.key) \(e.roles.map(\.description).joined(separator: ","))\n"
        }
        let tmp = path + ".new"
        unlink(tmp)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyFiles.KeyFileError(description: "cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw KeyFiles.KeyFileError(description: "cannot write \(path)")
        }
    }
}

/// What tells a file's versions apart cheaply: inode, size and modification time.
struct FileStamp: Equatable {
    var inode: UInt64 = 0, size: Int64 = 0, mtimeNs: Int64 = 0
    init?(_ path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }
}

extension RequestTable {
    /// A handler that checks what the authorization table cannot (PROTOCOL.md §7.1): it gets
    /// the request's caller (`Caller.local` for a request made in-process).
    public mutating func on<R: RequestBody>(_ type: R.Type, caller handle: @escaping (R, Caller) throws -> R.Reply) {
        on(type, withSender: { r, sender in try handle(r, (sender as? Requester)?.caller ?? .local) })
    }
}

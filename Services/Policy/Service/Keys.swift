import Foundation
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The control node's keys and host records (PROTOCOL.md §7.1, §8.4): enrolment (pending,
/// accepted, rejected, revoked), who may register what, and where a migration may go.
extension PolicyServer {
    var keyTable: KeyTable? { options.keyTable }

    /// A key refused at the handshake is pending, unless it was rejected or is accepted now.
    public func keyRefused(_ key: String, address: String) {
        guard CurveKeyPair.isValidKey(key), keyTable?.accepts(key) != true else { return }
        if (try? store.keyStates().first { $0.key == key }?.state) == "rejected" { return }
        try? store.notePendingKey(key, address: address)
    }

    func forbidden(_ why: String) -> ProtocolError { ProtocolError(.forbidden, why) }

    /// A domain admin acts only on its own domain's hosts.
    func requireDomain(of host: String, _ caller: Caller) throws(ProtocolError) {
        guard !caller.isOperator, !caller.adminDomains.isEmpty else { return }
        let domain = try storeCall { try store.hostLinks(host)?.domain }
        guard let domain else { throw ProtocolError(.notFound, "no host \(host)") }
        guard caller.adminDomains.contains(domain) else { throw forbidden("\(caller.audit) administers \(caller.adminDomains.joined(separator: ",")), not \(domain) (host \(host))") }
    }

    func registerDomain(_ r: PolicyAPI.RegisterDomain, _ caller: Caller) throws(ProtocolError) -> PolicyAPI.IDReply {
        if !caller.isOperator && caller.hostIDs.isEmpty && !caller.adminDomains.contains(r.id) {
            throw forbidden("\(caller.audit) may register only its own domain")
        }
        try storeCall { try store.registerDomain(r.id) }
        audit("register_domain", ["id": .string(r.id)], caller)
        return PolicyAPI.IDReply(id: r.id)
    }

    /// A host registers itself only, under its own key; a domain admin only into its domain.
    /// The links must hang together (`Destinations.check`) when given.
    func registerHost(_ r: PolicyAPI.RegisterHost, _ caller: Caller) throws(ProtocolError) -> PolicyAPI.IDReply {
        var r = r
        if !caller.isOperator {
            if !caller.hostIDs.isEmpty {
                guard caller.hostIDs.contains(r.id) else { throw forbidden("\(caller.audit) may register only itself, not \(r.id)") }
                if r.key.isEmpty { r.key = caller.key }
                guard r.key == caller.key else { throw forbidden("host \(r.id) registers with its own key only") }
            } else if !caller.adminDomains.contains(r.domain) {
                throw forbidden("\(caller.audit) may register hosts of \(caller.adminDomains.joined(separator: ",")) only, not of \(r.domain)")
            }
        }
        if !r.migrationURI.isEmpty || !r.mesh.isEmpty {
            if let why = Destinations.check(executor: r.executor, mesh: r.mesh, migrationURI: r.migrationURI) {
                throw ProtocolError(.invalidBody, why)
            }
        }
        try storeCall { try store.registerHost(id: r.id, domain: r.domain, cores: r.cores, memoryMB: r.memoryMB, executor: r.executor,
                                               monitor: r.monitor, key: r.key, mesh: r.mesh, migrationURI: r.migrationURI) }
        audit("register_host", ["id": .string(r.id), "domain": .string(r.domain)], caller)
        return PolicyAPI.IDReply(id: r.id)
    }

    /// Whether a host may take or give a VM now: not draining, and (with keys) its key is
    /// registered and still accepted.
    func usable(_ h: PolicyStore.HostLinks) -> (Bool, String?) {
        if h.draining { return (false, "host \(h.id) is draining") }
        if let table = keyTable {
            if h.key.isEmpty { return (false, "host \(h.id) registered no key") }
            if !table.accepts(h.key) { return (false, "host \(h.id)'s key is not accepted (revoked?)") }
        }
        if h.migrationURI.isEmpty || h.mesh.isEmpty { return (false, "host \(h.id) registered no migration_uri and mesh") }
        return (true, nil)
    }

    func hostRecord(_ id: String) throws(ProtocolError) -> PolicyAPI.HostRecordReply {
        guard let h = try storeCall({ try store.hostLinks(id) }) else { throw ProtocolError(.notFound, "no host \(id)") }
        let (ok, why) = usable(h)
        return PolicyAPI.HostRecordReply(id: h.id, domain: h.domain, executor: h.executor, mesh: h.mesh, migrationURI: h.migrationURI,
                                         key: h.key, usable: ok, why: why)
    }

    /// Hosts whose key is not accepted any more: no VM goes to them or leaves them by a decision.
    func revokedHosts(_ inv: PolicyStore.Inventory) -> Set<String> {
        guard let table = keyTable else { return [] }
        return Set(inv.keys.filter { !$0.value.isEmpty && !table.accepts($0.value) }.map(\.key))
    }

    // MARK: - Enrolment

    func keysTable() throws(ProtocolError) -> KeyTable {
        guard let table = keyTable, table.path != nil else {
            throw ProtocolError(.unavailable, "this control node runs without a key table (curve_allowed): nothing to enrol")
        }
        return table
    }

    func keys() throws(ProtocolError) -> PolicyAPI.KeysReply {
        let table = try keysTable()
        let states = try storeCall { try store.keyStates() }
        let accepted = Set(table.all.map(\.key))
        func waiting(_ state: String) -> [PolicyAPI.KeysReply.Waiting] {
            states.filter { $0.state == state && !accepted.contains($0.key) }
                .map { .init(key: $0.key, address: $0.address, firstSeen: $0.firstSeen, attempts: $0.attempts) }
        }
        return PolicyAPI.KeysReply(accepted: table.all.map { .init(key: $0.key, roles: $0.roles.map(\.description)) },
                                   pending: waiting("pending"), rejected: waiting("rejected"))
    }

    func hostKeys() throws(ProtocolError) -> PolicyAPI.HostKeysReply {
        let table = try keysTable()
        var accepted = table.all.map { PolicyAPI.KeysReply.Accepted(key: $0.key, roles: $0.roles.map(\.description)) }
        // The control node's own key is not in its table: a host needs it as `control`.
        if !table.ownKey.isEmpty && !accepted.contains(where: { $0.key == table.ownKey }) {
            accepted.append(.init(key: table.ownKey, roles: ["control"]))
        }
        return PolicyAPI.HostKeysReply(accepted: accepted)
    }

    func acceptKey(_ r: PolicyAPI.AcceptKey, _ caller: Caller) throws(ProtocolError) -> PolicyAPI.KeyReply {
        let table = try keysTable()
        let role = Role(r.role)!
        if !caller.isOperator {
            guard case .host(let id) = role else { throw forbidden("a domain admin accepts host keys only (host:<id>)") }
            let domain = try storeCall { try store.hostLinks(id)?.domain }
            if let domain, !caller.adminDomains.contains(domain) { throw forbidden("host \(id) is in \(domain), not administered by \(caller.audit)") }
        }
        do { try KeyTableFile.add(r.key, role: role, to: table.path!) } catch { throw ProtocolError(.internalError, "\(error)") }
        try storeCall { try store.setKeyState(r.key, nil) }
        audit("accept_key", ["key": .string(r.key), "role": .string(r.role)], caller)
        return PolicyAPI.KeyReply(key: r.key, state: "accepted")
    }

    func rejectKey(_ r: PolicyAPI.RejectKey, _ caller: Caller) throws(ProtocolError) -> PolicyAPI.KeyReply {
        let table = try keysTable()
        guard !table.accepts(r.key) else { throw ProtocolError(.conflict, "the key is accepted: revoke it instead") }
        try storeCall { try store.setKeyState(r.key, "rejected") }
        audit("reject_key", ["key": .string(r.key)], caller)
        return PolicyAPI.KeyReply(key: r.key, state: "rejected")
    }

    func revokeKey(_ r: PolicyAPI.RevokeKey, _ caller: Caller) throws(ProtocolError) -> PolicyAPI.KeyReply {
        let table = try keysTable()
        guard let entry = table.all.first(where: { $0.key == r.key }) else { throw ProtocolError(.notFound, "the key is not in the key table") }
        guard r.key != table.ownKey else { throw ProtocolError(.conflict, "that is this control node's own key") }
        if !caller.isOperator {
            for role in entry.roles {
                guard case .host(let id) = role else { throw forbidden("a domain admin revokes host keys only") }
                try requireDomain(of: id, caller)
            }
        }
        do { try KeyTableFile.remove(r.key, from: table.path!) } catch { throw ProtocolError(.internalError, "\(error)") }
        try storeCall { try store.setKeyState(r.key, "rejected") }
        audit("revoke_key", ["key": .string(r.key), "roles": .string(entry.roles.map(\.description).joined(separator: ","))], caller)
        return PolicyAPI.KeyReply(key: r.key, state: "revoked")
    }

    /// The audit trail: who asked for a change of state, in the ledger.
    func audit(_ kind: String, _ body: JSONValue, _ caller: Caller) {
        try? store.audit(kind: kind, body: JSONText.string(body), askedBy: caller.audit)
    }
}

/// Edits a key table on disk (a `<key> <role>` file, or a directory of `.pub` files) the way
/// every service reads it: a new file renamed over the old, or one `.pub` per key.
enum KeyTableFile {
    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func add(_ key: String, role: Role, to path: String) throws {
        if isDirectory(path) {
            let base = role.hostID ?? "key-" + key.filter { $0.isLetter || $0.isNumber }.prefix(12)
            var name = "\(path)/\(base).pub"
            var n = 1
            while FileManager.default.fileExists(atPath: name) {
                if (try? KeyFiles.readPublicKey(name)) == key { unlink(name); break }
                n += 1
                name = "\(path)/\(base)-\(n).pub"
            }
            let text = "# VIOLIN CURVE public key, accepted by violin keys\npublic-key = \(key)\nrole = \(role)\n"
            let fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw KeyFiles.KeyFileError(description: "cannot write \(name)") }
            defer { close(fd) }
            let bytes = Array(text.utf8)
            guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                throw KeyFiles.KeyFileError(description: "cannot write \(name)")
            }
            return
        }
        var entries = try KeyTable.read(path).map { KeyTable.Entry(key: $0.key, roles: $0.value) }
        entries.removeAll { $0.key == key }
        entries.append(KeyTable.Entry(key: key, roles: [role]))
        try KeyTable.save(entries, to: path)
    }

    static func remove(_ key: String, from path: String) throws {
        if isDirectory(path) {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where name.hasSuffix(".pub") {
                if (try? KeyFiles.readPublicKey("\(path)/\(name)")) == key { unlink("\(path)/\(name)") }
            }
            return
        }
        let entries = try KeyTable.read(path).filter { $0.key != key }.map { KeyTable.Entry(key: $0.key, roles: $0.value) }
        try KeyTable.save(entries, to: path)
    }
}

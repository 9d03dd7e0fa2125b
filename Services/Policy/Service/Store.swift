import Foundation
import GRDB
import PolicyCore

/// The adaptation manager's inventory and decision ledger, in SQLite (GRDB), so a restarted
/// violin-policy loses nothing.
public final class PolicyStore: @unchecked Sendable {
    let db: DatabaseQueue
    /// The inventory as last read, until the next write: every `mesh.traffic` event and every
    /// request reads it, writes are rare. `generation` counts writes, so a read that raced one
    /// is not kept.
    private let cacheLock = NSLock()
    private var cached: Inventory?
    private var generation = 0

    /// A write transaction; the cached inventory goes with it.
    private func write<T>(_ updates: (Database) throws -> T) throws -> T {
        defer { cacheLock.withLock { cached = nil; generation += 1 } }
        return try db.write(updates)
    }

    public struct Failure: Error, CustomStringConvertible {
        public enum Kind { case notFound, conflict, invalid }
        public let kind: Kind
        public let description: String
    }

    public init(path: String) throws {
        var config = Configuration()
        config.foreignKeysEnabled = true
        db = try DatabaseQueue(path: path, configuration: config)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE domain(id TEXT PRIMARY KEY);
                CREATE TABLE host(id TEXT PRIMARY KEY, domain TEXT NOT NULL REFERENCES domain(id), cores INTEGER NOT NULL,
                                  memory_mb INTEGER NOT NULL, executor TEXT NOT NULL DEFAULT '', monitor TEXT NOT NULL DEFAULT '');
                CREATE TABLE violin(id TEXT PRIMARY KEY, home_domain TEXT NOT NULL REFERENCES domain(id), head TEXT NOT NULL);
                CREATE TABLE vm(id TEXT PRIMARY KEY, violin TEXT NOT NULL REFERENCES violin(id) ON DELETE CASCADE,
                                memory_mb INTEGER NOT NULL, host TEXT NOT NULL REFERENCES host(id), last_decided REAL);
                CREATE TABLE decision(id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, kind TEXT NOT NULL,
                                      body TEXT NOT NULL, reason TEXT NOT NULL, inputs TEXT NOT NULL, mode TEXT NOT NULL,
                                      outcome TEXT NOT NULL);
                CREATE TABLE setting(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
        }
        migrator.registerMigration("v2-draining") { db in
            try db.execute(sql: "ALTER TABLE host ADD COLUMN draining INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v3-host-key") { db in
            try db.execute(sql: "ALTER TABLE host ADD COLUMN key TEXT NOT NULL DEFAULT ''")
        }
        migrator.registerMigration("v4-creation") { db in
            // A VIOLIN being made from its spec: the VMs and their hosts, until it is done.
            try db.execute(sql: "CREATE TABLE creation(name TEXT PRIMARY KEY, vms TEXT NOT NULL, started REAL NOT NULL)")
        }
        migrator.registerMigration("v5-leftover") { db in
            // VMs of a destroyed VIOLIN whose host did not answer: destroyed when it does.
            try db.execute(sql: "CREATE TABLE leftover(vm TEXT NOT NULL, host TEXT NOT NULL, violin TEXT NOT NULL, PRIMARY KEY (vm, host))")
        }
        migrator.registerMigration("v6-spec") { db in
            // The spec a VIOLIN was made from (JSON), and its VNI: what `apply` compares with.
            try db.execute(sql: """
                CREATE TABLE spec(violin TEXT PRIMARY KEY REFERENCES violin(id) ON DELETE CASCADE, body TEXT NOT NULL, vni INTEGER NOT NULL,
                                  created_at TEXT NOT NULL)
                """)
        }
        migrator.registerMigration("v7-host-links") { db in
            // Where other hosts reach a host's mesh and libvirt: a migration's destination comes
            // from here (registered by the host, checked), never from a request.
            try db.execute(sql: """
                ALTER TABLE host ADD COLUMN mesh TEXT NOT NULL DEFAULT '';
                ALTER TABLE host ADD COLUMN migration_uri TEXT NOT NULL DEFAULT '';
                """)
        }
        migrator.registerMigration("v8-keys") { db in
            // Keys refused at their first contact (pending) or for good (rejected); the accepted
            // ones are the key table file itself.
            try db.execute(sql: """
                CREATE TABLE key_state(key TEXT PRIMARY KEY, state TEXT NOT NULL, address TEXT NOT NULL,
                                       first_seen TEXT NOT NULL, attempts INTEGER NOT NULL);
                ALTER TABLE decision ADD COLUMN asked_by TEXT NOT NULL DEFAULT '';
                """)
        }
        Self.registerLeverMigrations(&migrator)
        try migrator.migrate(db)
    }

    /// The fine-grain levers' effects (v9), each VM's MAC (v10), the hosts' silence (v11), the NIC
    /// ports of VMs and of leftover copies (v12).
    static func registerLeverMigrations(_ m: inout DatabaseMigrator) {
        m.registerMigration("v9-effect") { db in
            // What a fine-grain lever did, measured after it settled.
            try db.execute(sql: "ALTER TABLE decision ADD COLUMN effect TEXT NOT NULL DEFAULT ''")
        }
        m.registerMigration("v10-vm-mac") { db in
            // Each VM's MAC as it was made: what a restart knows of a VIOLIN's MACs when one of its
            // hosts does not answer ('' for VMs made before).
            try db.execute(sql: "ALTER TABLE vm ADD COLUMN mac TEXT NOT NULL DEFAULT ''")
        }
        m.registerMigration("v11-silence") { db in
            // Since when each host has not answered the reconciliation (seconds since 1970).
            try db.execute(sql: "CREATE TABLE silence(host TEXT PRIMARY KEY, since REAL NOT NULL)")
        }
        m.registerMigration("v12-nic-port") { db in
            // Each VM's NIC port as it was made, and an old copy's: a port pair stays bound on a host
            // that does not answer, so a placement must not give it again (0 where unknown).
            try db.execute(sql: "ALTER TABLE vm ADD COLUMN nic_port INTEGER NOT NULL DEFAULT 0")
            try db.execute(sql: "ALTER TABLE leftover ADD COLUMN nic_port INTEGER NOT NULL DEFAULT 0")
        }
    }

    /// A host's links as registered: executor, mesh, libvirt URI and key.
    public struct HostLinks: Equatable, Sendable {
        public var id: String, domain: String, executor: String, mesh: String, migrationURI: String, key: String, draining: Bool
    }

    public func hostLinks(_ id: String) throws -> HostLinks? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM host WHERE id = ?", arguments: [id]).map {
                HostLinks(id: $0["id"], domain: $0["domain"], executor: $0["executor"], mesh: $0["mesh"], migrationURI: $0["migration_uri"],
                          key: $0["key"], draining: ($0["draining"] as Int?) == 1)
            }
        }
    }

    /// Notes a key refused at its first contact (pending), unless it was rejected; at most
    /// `cap` are kept (the oldest pending go first).
    public func notePendingKey(_ key: String, address: String, cap: Int = 256) throws {
        try write { db in
            try db.execute(sql: """
                INSERT INTO key_state(key, state, address, first_seen, attempts) VALUES (?, 'pending', ?, ?, 1)
                ON CONFLICT(key) DO UPDATE SET attempts = MIN(attempts + 1, 1000000000), address = excluded.address
                """, arguments: [key, address, ISO8601DateFormatter().string(from: Date())])
            try db.execute(sql: """
                DELETE FROM key_state WHERE state = 'pending' AND rowid NOT IN
                (SELECT rowid FROM key_state WHERE state = 'pending' ORDER BY first_seen DESC, rowid DESC LIMIT ?)
                """, arguments: [cap])
        }
    }

    public func setKeyState(_ key: String, _ state: String?) throws {
        try write { db in
            if let state {
                try db.execute(sql: """
                    INSERT INTO key_state(key, state, address, first_seen, attempts) VALUES (?, ?, '', ?, 0)
                    ON CONFLICT(key) DO UPDATE SET state = excluded.state
                    """, arguments: [key, state, ISO8601DateFormatter().string(from: Date())])
            } else {
                try db.execute(sql: "DELETE FROM key_state WHERE key = ?", arguments: [key])
            }
        }
    }

    public func keyStates() throws -> [(key: String, state: String, address: String, firstSeen: String, attempts: Int)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM key_state ORDER BY first_seen DESC").map {
                ($0["key"], $0["state"], $0["address"], $0["first_seen"], $0["attempts"])
            }
        }
    }

    /// Removes ledger rows made before `cutoff`, except those about a VIOLIN or VM that still
    /// exists (their history stays while they live). Returns how many went.
    @discardableResult
    public func prune(before cutoff: Date) throws -> Int {
        try write { db in
            try db.execute(sql: """
                DELETE FROM decision WHERE time < ?
                AND NOT EXISTS (SELECT 1 FROM vm WHERE instr(decision.body, '"' || vm.id || '"') > 0)
                AND NOT EXISTS (SELECT 1 FROM violin WHERE instr(decision.body, '"' || violin.id || '"') > 0)
                """, arguments: [ISO8601DateFormatter().string(from: cutoff)])
            return db.changesCount
        }
    }

    /// Records who asked for a change of state (the audit trail in the ledger), as it is asked:
    /// its outcome is the request's own reply (and, for work, its own ledger row).
    public func audit(kind: String, body: String, askedBy: String, outcome: String = "asked") throws {
        try write { db in
            try db.execute(sql: """
                INSERT INTO decision(time, kind, body, reason, inputs, mode, outcome, asked_by) VALUES (?, ?, ?, ?, '{}', 'request', ?, ?)
                """, arguments: [ISO8601DateFormatter().string(from: Date()), kind, body, "asked by \(askedBy)", outcome, askedBy])
        }
    }

    public func saveSpec(_ violin: String, body: String, vni: UInt32) throws {
        try write { db in
            try db.execute(sql: """
                INSERT INTO spec(violin, body, vni, created_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(violin) DO UPDATE SET body = excluded.body, vni = excluded.vni
                """, arguments: [violin, body, Int(vni), ISO8601DateFormatter().string(from: Date())])
        }
    }

    /// The spec `violin` was last made or applied from, and its VNI; nil for one made otherwise.
    public func spec(_ violin: String) throws -> (body: String, vni: UInt32, createdAt: String)? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT body, vni, created_at FROM spec WHERE violin = ?", arguments: [violin]).map {
                ($0["body"], UInt32($0["vni"] as Int), $0["created_at"])
            }
        }
    }

    /// VMs joining a VIOLIN (`apply`).
    public func addVMs(_ violin: String, _ vms: [NewVM]) throws {
        try write { db in
            for vm in vms {
                try db.execute(sql: "INSERT INTO vm(id, violin, memory_mb, host, mac, nic_port) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [vm.id, violin, vm.memoryMB, vm.host, vm.mac, vm.nicPort])
            }
        }
    }

    public func removeVM(_ id: String) throws {
        try write { db in try db.execute(sql: "DELETE FROM vm WHERE id = ?", arguments: [id]) }
    }

    /// A creation is under way: its VMs (`vm@host`), journaled before the first is made.
    public func beginCreation(_ name: String, vms: [String]) throws {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO creation(name, vms, started) VALUES (?, ?, ?)",
                           arguments: [name, vms.joined(separator: " "), Date().timeIntervalSince1970])
        }
    }

    public func endCreation(_ name: String) throws {
        try write { db in try db.execute(sql: "DELETE FROM creation WHERE name = ?", arguments: [name]) }
    }

    /// An old copy of `vm` to destroy on `host` when it answers; `nicPort` is the pair it still holds.
    public func addLeftover(vm: String, host: String, violin: String, nicPort: Int = 0) throws {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO leftover(vm, host, violin, nic_port) VALUES (?, ?, ?, ?)",
                           arguments: [vm, host, violin, nicPort])
        }
    }

    public func removeLeftover(vm: String, host: String) throws {
        try write { db in try db.execute(sql: "DELETE FROM leftover WHERE vm = ? AND host = ?", arguments: [vm, host]) }
    }

    /// VMs still to destroy: (vm, host, violin).
    public func leftovers() throws -> [(vm: String, host: String, violin: String)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT vm, host, violin FROM leftover ORDER BY vm").map { ($0["vm"], $0["host"], $0["violin"]) }
        }
    }

    /// Creations a stopped policy left unfinished: name -> its VMs as `vm@host`.
    public func unfinishedCreations() throws -> [String: [String]] {
        try db.read { db in
            var out: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, vms FROM creation") {
                out[row["name"]] = (row["vms"] as String).split(separator: " ").map(String.init)
            }
            return out
        }
    }

    /// Marks a host as draining: it takes no VM from then on.
    public func setDraining(_ id: String) throws {
        try write { db in
            try db.execute(sql: "UPDATE host SET draining = 1 WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw fail(.notFound, "no host \(id)") }
        }
    }

    func fail(_ kind: Failure.Kind, _ text: String) -> Failure { Failure(kind: kind, description: text) }

    public func registerDomain(_ id: String) throws {
        try write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE id = ?", arguments: [id]) == true {
                throw fail(.conflict, "domain \(id) exists")
            }
            try db.execute(sql: "INSERT INTO domain(id) VALUES (?)", arguments: [id])
        }
    }

    public func registerHost(id: String, domain: String, cores: Int, memoryMB: Int, executor: String, monitor: String,
                             key: String = "", mesh: String = "", migrationURI: String = "") throws {
        try write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE id = ?", arguments: [domain]) == true else {
                throw fail(.notFound, "no domain \(domain)")
            }
            if let row = try Row.fetchOne(db, sql: "SELECT domain, key FROM host WHERE id = ?", arguments: [id]) {
                // A host registering again (a restarted node) updates its links; it cannot move
                // to another domain, nor change a key it registered.
                let (oldDomain, oldKey): (String, String) = (row["domain"], row["key"])
                guard oldDomain == domain else { throw fail(.conflict, "host \(id) exists, in domain \(oldDomain)") }
                guard oldKey.isEmpty || oldKey == key else { throw fail(.conflict, "host \(id) exists with another key") }
                try db.execute(sql: """
                    UPDATE host SET cores = ?, memory_mb = ?, executor = ?, monitor = ?, key = ?, mesh = ?, migration_uri = ? WHERE id = ?
                    """, arguments: [cores, memoryMB, executor, monitor, key, mesh, migrationURI, id])
                return
            }
            try db.execute(sql: """
                INSERT INTO host(id, domain, cores, memory_mb, executor, monitor, key, mesh, migration_uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id, domain, cores, memoryMB, executor, monitor, key, mesh, migrationURI])
        }
    }

    public func removeHost(_ id: String) throws {
        try write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM host WHERE id = ?", arguments: [id]) == true else {
                throw fail(.notFound, "no host \(id)")
            }
            if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM vm WHERE host = ?", arguments: [id]) ?? 0 > 0 {
                throw fail(.conflict, "host \(id) still holds VMs")
            }
            try db.execute(sql: "DELETE FROM host WHERE id = ?", arguments: [id])
        }
    }

    public struct NewVM {
        public let id: String, memoryMB: Int, host: String, mac: String, nicPort: Int
        public init(id: String, memoryMB: Int, host: String, mac: String = "", nicPort: Int = 0) {
            self.id = id; self.memoryMB = memoryMB; self.host = host; self.mac = mac; self.nicPort = nicPort
        }
    }

    public func createViolin(id: String, homeDomain: String, head: String, vms: [NewVM]) throws {
        try write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE id = ?", arguments: [homeDomain]) == true else {
                throw fail(.notFound, "no domain \(homeDomain)")
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM violin WHERE id = ?", arguments: [id]) == true {
                throw fail(.conflict, "VIOLIN \(id) exists")
            }
            guard vms.contains(where: { $0.id == head }) else { throw fail(.invalid, "the head \(head) is not one of the VMs") }
            try db.execute(sql: "INSERT INTO violin(id, home_domain, head) VALUES (?, ?, ?)", arguments: [id, homeDomain, head])
            for vm in vms {
                guard let row = try Row.fetchOne(db, sql: "SELECT domain, memory_mb FROM host WHERE id = ?", arguments: [vm.host]) else {
                    throw fail(.notFound, "no host \(vm.host)")
                }
                if vm.id == head && (row["domain"] as String) != homeDomain {
                    throw fail(.invalid, "the head \(head) must be placed in its home domain \(homeDomain)")
                }
                let used = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(memory_mb), 0) FROM vm WHERE host = ?", arguments: [vm.host]) ?? 0
                if used + vm.memoryMB > (row["memory_mb"] as Int) { throw fail(.conflict, "VM \(vm.id) does not fit in \(vm.host)'s memory") }
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM vm WHERE id = ?", arguments: [vm.id]) == true {
                    throw fail(.conflict, "VM \(vm.id) exists")
                }
                try db.execute(sql: "INSERT INTO vm(id, violin, memory_mb, host, mac, nic_port) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [vm.id, id, vm.memoryMB, vm.host, vm.mac, vm.nicPort])
            }
        }
    }

    public func destroyViolin(_ id: String) throws {
        try write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM violin WHERE id = ?", arguments: [id]) == true else {
                throw fail(.notFound, "no VIOLIN \(id)")
            }
            try db.execute(sql: "DELETE FROM violin WHERE id = ?", arguments: [id])
        }
    }

    public func setting(_ key: String) throws -> String? {
        try db.read { db in try String.fetchOne(db, sql: "SELECT value FROM setting WHERE key = ?", arguments: [key]) }
    }

    public func setSetting(_ key: String, _ value: String) throws {
        try write { db in
            try db.execute(sql: "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [key, value])
        }
    }

    /// Records that `vm` now runs on `host`.
    public func place(vm: String, on host: String) throws {
        try write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM host WHERE id = ?", arguments: [host]) == true else {
                throw fail(.notFound, "no host \(host)")
            }
            try db.execute(sql: "UPDATE vm SET host = ? WHERE id = ?", arguments: [host, vm])
            guard db.changesCount == 1 else { throw fail(.notFound, "no VM \(vm)") }
        }
    }

    /// Everything a policy round needs, with when each VM was last decided on (for the cooldown).
    public struct Inventory {
        public var domains: [String] = []
        public var hosts: [PolicyCore.Host] = []
        public var endpoints: [String: (executor: String, monitor: String)] = [:]
        public var draining: Set<String> = []
        public var keys: [String: String] = [:]        // host -> CURVE public key ("" without)
        public var violins: [Violin] = []
        public var vms: [VM] = []
        public var placement: [VMID: HostID] = [:]
        public var lastDecided: [VMID: Double] = [:]
        /// Each VM's MAC as it was made ("" where unknown).
        public var macs: [VMID: String] = [:]
        /// Each VM's NIC port as it was made (absent where unknown).
        public var nicPorts: [VMID: Int] = [:]
        /// The NIC ports the inventory knows to be bound somewhere: its VMs' and their old copies'
        /// not yet destroyed — on hosts that answer or not.
        public var heldPorts: Set<Int> = []
        public init() {}
    }

    public func inventory() throws -> Inventory {
        let (hit, seen) = cacheLock.withLock { (cached, generation) }
        if let hit { return hit }
        let inv = try readInventory()
        cacheLock.withLock { if generation == seen { cached = inv } }
        return inv
    }

    private func readInventory() throws -> Inventory {
        try db.read { db in
            var inv = Inventory()
            inv.domains = try String.fetchAll(db, sql: "SELECT id FROM domain ORDER BY id")
            for row in try Row.fetchAll(db, sql: "SELECT * FROM host ORDER BY id") {
                inv.hosts.append(PolicyCore.Host(id: row["id"], domain: row["domain"], cores: row["cores"], memoryMB: row["memory_mb"]))
                inv.endpoints[row["id"]] = (row["executor"], row["monitor"])
                if (row["draining"] as Int?) == 1 { inv.draining.insert(row["id"]) }
                inv.keys[row["id"]] = row["key"] ?? ""
            }
            for row in try Row.fetchAll(db, sql: "SELECT * FROM violin ORDER BY id") {
                inv.violins.append(Violin(id: row["id"], homeDomain: row["home_domain"], head: row["head"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT * FROM vm ORDER BY id") {
                inv.vms.append(VM(id: row["id"], violin: row["violin"], memoryMB: row["memory_mb"]))
                inv.placement[row["id"]] = row["host"]
                if let t = row["last_decided"] as Double? { inv.lastDecided[row["id"]] = t }
                inv.macs[row["id"]] = row["mac"] ?? ""
                if let port = row["nic_port"] as Int?, port > 0 { inv.nicPorts[row["id"]] = port; inv.heldPorts.insert(port) }
            }
            inv.heldPorts.formUnion(try Int.fetchAll(db, sql: "SELECT nic_port FROM leftover WHERE nic_port > 0"))
            return inv
        }
    }

    /// Appends a decision to the ledger; returns its id.
    public func record(kind: String, body: String, reason: String, inputs: String, mode: String, outcome: String,
                       vms: [VMID], at now: Double) throws -> Int64 {
        try write { db in
            try db.execute(sql: "INSERT INTO decision(time, kind, body, reason, inputs, mode, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [ISO8601DateFormatter().string(from: Date()), kind, body, reason, inputs, mode, outcome])
            let id = db.lastInsertedRowID
            for vm in vms { try db.execute(sql: "UPDATE vm SET last_decided = ? WHERE id = ?", arguments: [now, vm]) }
            return id
        }
    }

    /// A VM made again (a restart): where it runs now, with its new MAC and NIC port.
    public func remade(vm: String, on host: String, mac: String, nicPort: Int) throws {
        try write { db in
            try db.execute(sql: "UPDATE vm SET host = ?, mac = ?, nic_port = ? WHERE id = ?", arguments: [host, mac, nicPort, vm])
        }
    }

    /// The hosts that do not answer, since when.
    public func silence() throws -> [String: Double] {
        try db.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT host, since FROM silence").map { ($0["host"] as String, $0["since"] as Double) },
                       uniquingKeysWith: { a, _ in a })
        }
    }

    public func setSilence(_ silent: [String: Double]) throws {
        try write { db in
            try db.execute(sql: "DELETE FROM silence")
            for (host, since) in silent { try db.execute(sql: "INSERT INTO silence(host, since) VALUES (?, ?)", arguments: [host, since]) }
        }
    }

    public func setEffect(_ id: Int64, _ effect: String) throws {
        try write { db in try db.execute(sql: "UPDATE decision SET effect = ? WHERE id = ?", arguments: [effect, id]) }
    }

    public func setOutcome(_ id: Int64, _ outcome: String) throws {
        try write { db in try db.execute(sql: "UPDATE decision SET outcome = ? WHERE id = ?", arguments: [outcome, id]) }
    }

    /// The newest `limit` decisions; with `audit`, the requests recorded by `audit` too.
    /// How many decisions of each kind ended how (an outcome's first word: "failed: why" is "failed").
    public func decisionCounts() throws -> [DecisionKey: Int] {
        try db.read { db in
            var out: [DecisionKey: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT kind, outcome, COUNT(*) AS n FROM decision GROUP BY kind, outcome") {
                let outcome = String((row["outcome"] as String? ?? "").prefix { $0 != ":" && $0 != " " })
                out[DecisionKey(kind: row["kind"] ?? "", outcome: outcome.isEmpty ? "none" : outcome), default: 0] += row["n"] as Int? ?? 0
            }
            return out
        }
    }
    public struct DecisionKey: Hashable, Sendable { public let kind: String, outcome: String }

    public func decisions(limit: Int, audit: Bool = false) throws -> [Row] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM decision \(audit ? "" : "WHERE mode != 'request'") ORDER BY id DESC LIMIT ?", arguments: [limit])
        }
    }
}

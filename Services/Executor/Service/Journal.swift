import ExecutorCore
import Foundation
import GRDB

/// Every migration job, written before it starts and after every change of state, so a
/// restarted executor knows what was under way (SQLite through GRDB).
public final class Journal: @unchecked Sendable {
    let db: DatabaseQueue

    public struct Job: Equatable, Sendable {
        public var id: String
        public var vm: String
        public var fromHost: String
        public var toHost: String
        public var toExecutor: String
        public var destinationURI = ""
        public var destinationMesh = ""
        /// The destination host's CURVE public key ("" when its services are plain).
        public var destinationKey = ""
        /// A `copy_storage` migration: once it completes, the source's volume goes.
        public var copyStorage = false
        public var state: JobState = .queued
        public var error = ""
        public var elapsedMs: Int?
        public var downtimeMs: Int?
        public var blackoutMs: Int?
        public var processed = 0
        public var remaining = 0
        public var rate = 0
        public var decisionID = ""
        public var reason = ""
        public var createdAt = ""
        public var updatedAt = ""

        public init(id: String, vm: String, fromHost: String, toHost: String, toExecutor: String) {
            self.id = id; self.vm = vm; self.fromHost = fromHost; self.toHost = toHost; self.toExecutor = toExecutor
        }
    }

    public init(path: String) throws {
        if path != ":memory:" {
            try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                    withIntermediateDirectories: true)
        }
        db = path == ":memory:" ? try DatabaseQueue() : try DatabaseQueue(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE job(id TEXT PRIMARY KEY, vm TEXT NOT NULL, from_host TEXT NOT NULL, to_host TEXT NOT NULL,
                                 to_executor TEXT NOT NULL, destination_uri TEXT NOT NULL, destination_mesh TEXT NOT NULL,
                                 state TEXT NOT NULL, error TEXT NOT NULL, elapsed_ms INTEGER, downtime_ms INTEGER,
                                 blackout_ms INTEGER, processed INTEGER NOT NULL, remaining INTEGER NOT NULL, rate INTEGER NOT NULL,
                                 decision_id TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
                CREATE INDEX job_state ON job(state);
                """)
        }
        migrator.registerMigration("v2-destination-key") { db in
            try db.execute(sql: "ALTER TABLE job ADD COLUMN destination_key TEXT NOT NULL DEFAULT ''")
        }
        migrator.registerMigration("v3-stopped") { db in
            try db.execute(sql: "CREATE TABLE stopped(name TEXT PRIMARY KEY, definition TEXT NOT NULL, vni INTEGER NOT NULL, memory_mb INTEGER NOT NULL, stopped_at TEXT NOT NULL)")
        }
        migrator.registerMigration("v4-copy-storage") { db in
            try db.execute(sql: "ALTER TABLE job ADD COLUMN copy_storage INTEGER NOT NULL DEFAULT 0")
        }
        try migrator.migrate(db)
    }

    /// A VM stopped on this host: what creates it again.
    public struct Stopped: Equatable, Sendable {
        public var name: String, definition: String, vni: Int, memoryMB: Int
    }

    public func saveStopped(_ s: Stopped) throws {
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO stopped VALUES (?, ?, ?, ?, ?)",
                           arguments: [s.name, s.definition, s.vni, s.memoryMB, Self.now()])
        }
    }

    public func stopped() throws -> [Stopped] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM stopped ORDER BY name").map {
                Stopped(name: $0["name"], definition: $0["definition"], vni: $0["vni"], memoryMB: $0["memory_mb"])
            }
        }
    }

    public func removeStopped(_ name: String) throws {
        try db.write { db in try db.execute(sql: "DELETE FROM stopped WHERE name = ?", arguments: [name]) }
    }

    static func now() -> String { ISO8601DateFormatter().string(from: Date()) }

    /// Removes finished jobs last changed before `cutoff`; an unfinished job is never removed.
    /// Returns how many went.
    @discardableResult
    public func prune(before cutoff: Date) throws -> Int {
        let finals = [JobState.completed, .failed, .cancelled, .rolledBack].map(\.rawValue)
        return try db.write { db in
            try db.execute(sql: "DELETE FROM job WHERE updated_at < ? AND state IN (?, ?, ?, ?)",
                           arguments: StatementArguments([ISO8601DateFormatter().string(from: cutoff)] + finals))
            return db.changesCount
        }
    }

    public func save(_ job: Job) throws {
        var j = job
        j.updatedAt = Self.now()
        if j.createdAt.isEmpty { j.createdAt = j.updatedAt }
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO job VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET destination_uri = excluded.destination_uri, destination_mesh = excluded.destination_mesh,
                  state = excluded.state, error = excluded.error, elapsed_ms = excluded.elapsed_ms, downtime_ms = excluded.downtime_ms,
                  blackout_ms = excluded.blackout_ms, processed = excluded.processed, remaining = excluded.remaining,
                  rate = excluded.rate, updated_at = excluded.updated_at
                """, arguments: [j.id, j.vm, j.fromHost, j.toHost, j.toExecutor, j.destinationURI, j.destinationMesh,
                                 j.state.rawValue, j.error, j.elapsedMs, j.downtimeMs, j.blackoutMs, j.processed, j.remaining,
                                 j.rate, j.decisionID, j.reason, j.createdAt, j.updatedAt, j.destinationKey, j.copyStorage])
        }
    }

    static func job(_ row: Row) -> Job {
        var j = Job(id: row["id"], vm: row["vm"], fromHost: row["from_host"], toHost: row["to_host"], toExecutor: row["to_executor"])
        j.destinationURI = row["destination_uri"]
        j.destinationMesh = row["destination_mesh"]
        j.destinationKey = row["destination_key"] ?? ""
        j.copyStorage = row["copy_storage"] ?? false
        j.state = JobState(rawValue: row["state"]) ?? .failed
        j.error = row["error"]
        j.elapsedMs = row["elapsed_ms"]
        j.downtimeMs = row["downtime_ms"]
        j.blackoutMs = row["blackout_ms"]
        j.processed = row["processed"]
        j.remaining = row["remaining"]
        j.rate = row["rate"]
        j.decisionID = row["decision_id"]
        j.reason = row["reason"]
        j.createdAt = row["created_at"]
        j.updatedAt = row["updated_at"]
        return j
    }

    public func job(_ id: String) throws -> Job? {
        try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]).map(Self.job) }
    }

    public func recent(limit: Int) throws -> [Job] {
        try db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM job ORDER BY rowid DESC LIMIT ?", arguments: [limit]).map(Self.job) }
    }

    public func unfinished() throws -> [Job] {
        let finals = JobState.allCases.filter(\.isFinal).map(\.rawValue)
        return try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM job WHERE state NOT IN (\(finals.map { _ in "?" }.joined(separator: ","))) ORDER BY rowid",
                             arguments: StatementArguments(finals)).map(Self.job)
        }
    }
}

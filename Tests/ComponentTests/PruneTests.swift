import ExecutorCore
import ExecutorService
import Foundation
import PolicyService
import Testing

/// The ledger and the journal are pruned by age, never of what still matters.
@Suite struct PruneTests {
    @Test func theJournalKeepsUnfinishedJobs() throws {
        let journal = try Journal(path: ":memory:")
        var done = Journal.Job(id: "job-done", vm: "a1", fromHost: "h1", toHost: "h2", toExecutor: "tcp://10.0.0.2:7704")
        done.state = .completed
        var running = Journal.Job(id: "job-running", vm: "a2", fromHost: "h1", toHost: "h2", toExecutor: "tcp://10.0.0.2:7704")
        running.state = .migrating
        try journal.save(done)
        try journal.save(running)
        // Nothing is older than a day ago.
        #expect(try journal.prune(before: Date().addingTimeInterval(-86_400)) == 0)
        // Everything is older than tomorrow: the finished job goes, the running one stays.
        #expect(try journal.prune(before: Date().addingTimeInterval(86_400)) == 1)
        #expect(try journal.unfinished().map(\.id) == ["job-running"])
        #expect(try journal.job("job-done") == nil)
    }

    @Test func theLedgerKeepsWhatIsAboutALiveVIOLIN() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-prune-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try PolicyStore(path: dir + "/p.sqlite")
        try store.registerDomain("d1")
        try store.registerHost(id: "h1", domain: "d1", cores: 2, memoryMB: 4096, executor: "", monitor: "")
        try store.createViolin(id: "live", homeDomain: "d1", head: "x0", vms: [.init(id: "x0", memoryMB: 256, host: "h1")])
        for vm in ["x0", "gone1", "gone2"] {
            _ = try store.record(kind: "migrate_vm", body: #"{"vm":"\#(vm)","to":"h1"}"#, reason: "test", inputs: "{}", mode: "recommend",
                                 outcome: "recommended", vms: [], at: 0)
        }
        try store.audit(kind: "create_environment", body: #"{"name":"live"}"#, askedBy: "operator")
        #expect(try store.prune(before: Date().addingTimeInterval(-86_400)) == 0)
        #expect(try store.prune(before: Date().addingTimeInterval(86_400)) == 2)
        let left = try store.decisions(limit: 10, audit: true).map { $0["body"] as String }
        #expect(Set(left) == [#"{"vm":"x0","to":"h1"}"#, #"{"name":"live"}"#], "\(left)")
    }

    /// The inventory is read once and kept until the next write: every write shows in the next
    /// read — a VM placed, added, removed; a host draining.
    @Test func theInventoryFollowsEveryWrite() throws {
        let store = try PolicyStore(path: ":memory:")
        try store.registerDomain("d1")
        for h in ["h1", "h2"] { try store.registerHost(id: h, domain: "d1", cores: 2, memoryMB: 4096, executor: "", monitor: "") }
        try store.createViolin(id: "v", homeDomain: "d1", head: "v0", vms: [.init(id: "v0", memoryMB: 256, host: "h1")])
        #expect(try store.inventory().placement == ["v0": "h1"])
        try store.place(vm: "v0", on: "h2")
        #expect(try store.inventory().placement == ["v0": "h2"])
        try store.addVMs("v", [.init(id: "v1", memoryMB: 256, host: "h1")])
        #expect(try store.inventory().vms.map(\.id) == ["v0", "v1"])
        try store.removeVM("v1")
        #expect(try store.inventory().vms.map(\.id) == ["v0"])
        try store.setDraining("h1")
        #expect(try store.inventory().draining == ["h1"])
    }
}

import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol

/// `violin top`: the federation in the terminal, refreshed — hosts with their load and score,
/// the VMs on each, migrations in progress (phase, bytes left, rate), the last decisions.
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "The federation in the terminal, refreshed: hosts (load, score, VMs), migrations in progress, the last decisions.")
    @Option(help: "The control node's address.") var control = "127.0.0.1"
    @Option(help: "Seconds between two refreshes (0.5-3600).") var interval = 2.0
    @Option(help: "How many of the ledger's newest decisions to show.") var decisions = 5
    @Flag(help: "Print one frame and end (for scripts and logs).") var once = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        guard (0.5...3600).contains(interval) else { throw fail("--interval must be 0.5-3600 seconds", code: Exit.usage) }
        guard (0...100).contains(decisions) else { throw fail("--decisions must be 0-100", code: Exit.usage) }
        while true {
            let frame = try TopFrame.gather(connection, control: control, decisions: decisions).render(now: Date())
            // A terminal redraws in place; --once prints the frame alone.
            print(once ? frame : "\u{1B}[H\u{1B}[2J" + frame)
            if once { return }
            fflush(stdout)
            Thread.sleep(forTimeInterval: interval)
        }
    }
}

/// What one frame of `violin top` shows, gathered from the policy and every host's executor;
/// `render` is pure.
struct TopFrame {
    var inventory: PolicyAPI.InventoryReply
    var scores: [String: PolicyAPI.ExplainReply.Host] = [:]
    var deviation: Double?
    /// Jobs not yet ended, with the host whose executor runs them.
    var migrations: [ExecutorAPI.JobReport] = []
    var decisions: [JSONValue] = []
    /// Hosts whose executor did not answer.
    var silent: [String] = []

    static func gather(_ connection: ConnectionOptions, control: String, decisions: Int) throws -> TopFrame {
        let cluster = try Cluster(connection, control: control)
        defer { cluster.close() }
        var frame = TopFrame(inventory: cluster.inventory)
        let policy = ServicePorts.endpoint(control, ServicePorts.policy)
        try connection.with(policy) { client in
            if let explain = try? client.call(PolicyAPI.Explain(), retries: 0) {
                frame.scores = Dictionary(explain.hosts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                frame.deviation = explain.deviation
            }
            if decisions > 0 { frame.decisions = (try? client.call(PolicyAPI.Decisions(limit: decisions), retries: 0))?.decisions ?? [] }
        }
        for h in cluster.inventory.hosts {
            guard let jobs = cluster.ask(h, ExecutorAPI.Jobs(limit: 50)) else { frame.silent.append(h.id); continue }
            frame.migrations += jobs.jobs.filter { !["completed", "failed", "cancelled", "rolled_back"].contains($0.state) }
        }
        return frame
    }

    func render(now: Date) -> String {
        var out: [String] = []
        let clock = ISO8601DateFormatter.string(from: now, timeZone: .current, formatOptions: [.withTime, .withColonSeparatorInTime])
        out.append("VIOLIN top — policy \(inventory.policy), mode \(inventory.mode)"
                   + (deviation.map { String(format: ", deviation %.3f", $0) } ?? "") + "   \(clock)")
        out.append("")
        out.append(Self.row(["HOST", "DOMAIN", "CORES", "LOAD", "SCORE", "STATE", "VMS"], [6, 8, 6, 6, 6, 9]))
        for h in inventory.hosts.sorted(by: { ($0.domain, $0.id) < ($1.domain, $1.id) }) {
            let s = scores[h.id]
            let vms = inventory.vms.filter { $0.host == h.id }.map(\.id).sorted()
            let state = silent.contains(h.id) ? "silent" : h.draining ? "draining" : "up"
            out.append(Self.row([h.id, h.domain, "\(h.cores)", s.map { String(format: "%.2f", $0.load) } ?? "-",
                                 s.map { String(format: "%.2f", $0.score) } ?? "-", state, vms.joined(separator: " ")], [6, 8, 6, 6, 6, 9]))
        }
        out.append("")
        out.append("MIGRATIONS IN PROGRESS: \(migrations.count)")
        if !migrations.isEmpty {
            out.append(Self.row(["VM", "FROM", "TO", "PHASE", "SENT", "LEFT", "RATE", "JOB"], [6, 6, 6, 10, 10, 10, 12]))
            for j in migrations.sorted(by: { $0.createdAt < $1.createdAt }) {
                out.append(Self.row([j.vm, j.from, j.to, j.state, Self.mib(j.processedBytes), Self.mib(j.remainingBytes),
                                     j.rateBps.map { String(format: "%.0f Mbit/s", Double($0) * 8 / 1e6) } ?? "-", j.job], [6, 6, 6, 10, 10, 10, 12]))
            }
        }
        if !decisions.isEmpty {
            out.append("")
            out.append("LAST DECISIONS")
            for d in decisions {
                let reason = d["reason"]?.stringValue ?? ""
                out.append("#\(d["id"]?.intValue ?? 0) \(d["time"]?.stringValue ?? "") \(d["kind"]?.stringValue ?? "") (\(d["outcome"]?.stringValue ?? "")): "
                           + String(reason.prefix(110)))
            }
        }
        return out.joined(separator: "\n")
    }

    static func mib(_ bytes: Int?) -> String { bytes.map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "-" }

    /// Columns padded to `widths` (the last one as it is).
    static func row(_ cells: [String], _ widths: [Int]) -> String {
        cells.enumerated().map { i, c in i < widths.count ? c.padding(toLength: max(widths[i], c.count + 1), withPad: " ", startingAt: 0) : c }
            .joined()
    }
}

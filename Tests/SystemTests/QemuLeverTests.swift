import Foundation
import TestSupport
import Testing
import VIOLINProtocol

/// The memory lever end to end: violin-policy (levers on, automatic mode) reads a real QEMU
/// guest's balloon statistics from violin-monitor's samples and gives the guest memory back
/// through the same monitor when the guest fills what it has.
@Suite(.serialized) struct QemuLeverTests {
    /// From the guest's "full" on its console to a sample showing its balloon raised.
    static let raisedWithin = 60.0

    @Test(.timeLimit(.minutes(5))) func aGuestThatFillsItsMemoryGetsMore() throws {
        let host = try QemuHost("lever", cgroups: false)
        defer { host.stop() }
        let (scratch, lab) = (host.scratch, host.lab)
        let (watch, _) = try host.monitored(watching: "monitor.sampled", instance: "monitor@a")
        let policy = try host.spawn("violin-policy", ["--listen", scratch.ipc("policy"), "--bus", scratch.ipc("pub"),
                                                      "--subscribe", scratch.ipc("sub"), "--database", scratch.file("policy.sqlite"),
                                                      "--levers", "true", "--lever-settle", "5", "--evaluate-interval", "2",
                                                      "--reconcile-interval", "0"])
        func call(_ type: String, _ body: String) throws -> String {
            let r = try run("violin", ["call", scratch.ipc("policy"), type, body])
            try #require(r.status == 0, "\(type): \(r.out) \(r.err)")
            return r.out
        }
        _ = try call("register_domain", #"{"id":"d1"}"#)
        _ = try call("register_host", #"{"id":"a","domain":"d1","cores":2,"memory_mb":1024,"monitor":"\#(scratch.ipc("monitor"))"}"#)
        _ = try call("create_violin", #"{"id":"e1","home_domain":"d1","head":"filler","vms":[{"id":"filler","memory_mb":192,"host":"a"}]}"#)
        _ = try call("set_mode", #"{"mode":"automatic"}"#)

        // 192 MiB at most, the balloon at 96: the guest fills its RAM until 8 MiB are available.
        try host.boot("filler", "--memory 192/96 --cmdline violin.fill=8")
        let console = lab + "/filler.console"
        try #require(try eventually(deadline: 180) {
            ((try? String(contentsOfFile: console, encoding: .utf8)) ?? "").contains("VIOLIN-FILLED")
        }, "the guest never said it was full: \(((try? String(contentsOfFile: console, encoding: .utf8)) ?? "").suffix(400))")
        let full = Date()
        let raised = watch.waitForLine(timeout: Self.raisedWithin) { line in
            guard let v = try? JSONText.parse(Array(line.utf8)), case .array(let vms)? = v["body"]?["vms"] else { return false }
            return vms.contains { $0["name"] == "filler" && ($0["memory_mb"]?.intValue ?? 0) > 96 }
        }
        let decisions = (try? call("decisions", #"{"limit":20}"#)) ?? ""
        #expect(raised != nil, "no balloon above 96 MiB within \(Self.raisedWithin) s of the guest filling it; decisions: \(decisions.prefix(1500)); policy: \(policy.stderrText.suffix(600))")
        print(String(format: "balloon raised %.1f s after the guest filled its memory", Date().timeIntervalSince(full)))
        // The ledger: the balloon decision with why, and — once settled — what became of it.
        let ledger = try JSONText.parse(Array(try call("decisions", #"{"limit":20}"#).utf8))
        let row = ledger["decisions"]?.items.first { $0["kind"] == "set_balloon" && $0["decision"]?["vm"] == "filler" }
        let reason = row?["reason"]?.stringValue ?? ""
        #expect(reason.contains("MB available of 96"), "\(String(describing: row))")
        #expect(try eventually(deadline: 30) {
            let rows = (try? JSONText.parse(Array(try call("decisions", #"{"limit":20}"#).utf8)))?["decisions"]?.items ?? []
            return rows.contains { $0["kind"] == "set_balloon" && !($0["effect"]?.stringValue ?? "").isEmpty }
        }, "the lever's effect was never recorded")
    }
}

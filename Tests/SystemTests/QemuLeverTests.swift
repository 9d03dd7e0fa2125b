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
        /// The filler's balloon in a sample line (nil: not in it).
        func balloon(_ line: String) -> Int? {
            guard let v = try? JSONText.parse(Array(line.utf8)), case .array(let vms)? = v["body"]?["vms"] else { return nil }
            return vms.first { $0["name"] == "filler" }?["memory_mb"]?.intValue
        }
        // The guest boots with all 192 MiB until its balloon driver takes it down to 96: the
        // raise counts only after a sample at 96.
        var shrunk = false
        let raised = watch.waitForLine(timeout: Self.raisedWithin + 60) { line in
            guard let mb = balloon(line) else { return false }
            if mb <= 96 { shrunk = true }
            return shrunk && mb > 96
        }
        let decisions = (try? call("decisions", #"{"limit":20}"#)) ?? ""
        #expect(raised != nil, "no balloon above 96 MiB within \(Self.raisedWithin) s of the guest filling it; decisions: \(decisions.prefix(1500)); policy: \(policy.stderrText.suffix(600))")
        let after = Date().timeIntervalSince(full)
        print(String(format: "balloon raised %.1f s after the guest filled its memory", after))
        #expect(after <= Self.raisedWithin, "raised \(after) s after the guest filled its memory")
        // The ledger: the balloon decision with why, and — once settled — what became of it.
        let ledger = try JSONText.parse(Array(try call("decisions", #"{"limit":20}"#).utf8))
        // The raise from 96 MiB, whichever sign of pressure it read (little available, major
        // faults), and what it expects; later rows may raise it further.
        let rows = (ledger["decisions"]?.items ?? []).filter { $0["kind"] == "set_balloon" && $0["decision"]?["vm"] == "filler" }
        let reasons = rows.compactMap { $0["reason"]?.stringValue }
        #expect(reasons.contains { $0.hasPrefix("filler ") && $0.contains("balloon 96 → ") && $0.contains("expects the pressure to end") },
                "\(reasons)")
        #expect(try eventually(deadline: 30) {
            let rows = (try? JSONText.parse(Array(try call("decisions", #"{"limit":20}"#).utf8)))?["decisions"]?.items ?? []
            return rows.contains { $0["kind"] == "set_balloon" && !($0["effect"]?.stringValue ?? "").isEmpty }
        }, "the lever's effect was never recorded")
    }
}

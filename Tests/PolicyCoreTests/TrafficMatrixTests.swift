import PolicyCore
import Testing

/// The policy's traffic matrix from the switches' cumulative pair counters.
@Suite struct TrafficMatrixTests {
    let vms = ["02:00:00:00:00:01": "a1", "02:00:00:00:00:02": "a2", "02:00:00:00:00:03": "a3"]
    let hosts = ["a1": "h1", "a2": "h2", "a3": "h2"]
    func m(_ i: Int) -> String { "02:00:00:00:00:0\(i)" }

    @discardableResult
    func feed(_ t: inout TrafficMatrix, _ host: String, _ pairs: [(String, String, Int)], at: Double) -> (used: Int, refused: Int) {
        t.ingest(host: host, pairs: pairs.map { (src: $0.0, dst: $0.1, bytes: $0.2) }, atS: at, vm: { vms[$0] }, placement: { hosts[$0] })
    }

    /// Rates come from two readings; each direction is its own flow; smoothing weighs the newest half.
    @Test func ratesFromDeltasEachWay() {
        var t = TrafficMatrix(alpha: 0.5)
        feed(&t, "h1", [(m(1), m(2), 1_000)], at: 0)
        feed(&t, "h2", [(m(2), m(1), 500)], at: 0)
        #expect(t.flows(nowS: 0).isEmpty, "one reading is no rate")
        feed(&t, "h1", [(m(1), m(2), 21_000)], at: 10)
        feed(&t, "h2", [(m(2), m(1), 1_500)], at: 10)
        #expect(t.flows(nowS: 10) == [.init(from: "a1", to: "a2", bytesPerS: 2000), .init(from: "a2", to: "a1", bytesPerS: 100)])
        feed(&t, "h1", [(m(1), m(2), 21_000)], at: 20)
        #expect(t.between("a1", "a2") == 1000 + 100, "smoothed: half of 2000 and half of 0, plus the other way")
    }

    /// A host speaks only for frames its own VMs sent; MACs that are no VM are left out.
    @Test func aHostSpeaksForItsOwnVMsOnly() {
        var t = TrafficMatrix()
        #expect(feed(&t, "h1", [(m(2), m(3), 100), (m(1), "02:99:00:00:00:99", 100)], at: 0) == (0, 1))
        #expect(feed(&t, "h1", [(m(2), m(3), 900)], at: 1) == (0, 1))
        #expect(t.flows(nowS: 1).isEmpty)
    }

    /// A counter that went back (a switch restarted) starts a new baseline, not a negative rate;
    /// a flow not heard for the forgetting time goes.
    @Test func aRestartedSwitchAndASilentFlow() {
        var t = TrafficMatrix(alpha: 1, forgetAfterS: 30)
        feed(&t, "h2", [(m(2), m(3), 10_000)], at: 0)
        feed(&t, "h2", [(m(2), m(3), 20_000)], at: 10)
        feed(&t, "h2", [(m(2), m(3), 50)], at: 20)
        #expect(t.between("a2", "a3") == 1000)
        feed(&t, "h2", [(m(2), m(3), 3_050)], at: 30)
        #expect(t.between("a2", "a3") == 300)
        #expect(t.flows(nowS: 50).count == 1 && t.flows(nowS: 61).isEmpty)
    }
}

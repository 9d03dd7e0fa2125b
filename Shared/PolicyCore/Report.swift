/// Table 3 and the Fig. 7/8 plots from simulation results.
public struct Comparison: Sendable {
    public let policy: String
    public let runtimeVsStatic1: Double
    public let runtimeVsStatic2: Double
    public let s2cVsStatic1: Double
    public let s2cVsStatic2: Double
    public let migrations: Int

    public init(policy: String, autonomic: SimulationResult, static1: SimulationResult, static2: SimulationResult) {
        self.policy = policy
        runtimeVsStatic1 = autonomic.meanRuntime / static1.meanRuntime
        runtimeVsStatic2 = autonomic.meanRuntime / static2.meanRuntime
        s2cVsStatic1 = autonomic.meanSubmitToCompletion / static1.meanSubmitToCompletion
        s2cVsStatic2 = autonomic.meanSubmitToCompletion / static2.meanSubmitToCompletion
        migrations = autonomic.migrations
    }

    /// The paper's Table 3 (autonomic with its policy, over each static scenario).
    public static let paper = (runtimeVsStatic1: 1.92, runtimeVsStatic2: 1.08, s2cVsStatic1: 0.77, s2cVsStatic2: 0.90)
}

public enum Report {
    public static func table(_ rows: [Comparison], static1: SimulationResult, static2: SimulationResult) -> String {
        var out = "Table 3 (autonomic / static; below 1.00 is better)\n"
        out += "policy          runtime/s1  runtime/s2  s2c/s1  s2c/s2  saved-vs-s1  saved-vs-s2  migrations\n"
        let p = Comparison.paper
        out += "paper (2011)    \(col(p.runtimeVsStatic1, 10))  \(col(p.runtimeVsStatic2, 10))  \(col(p.s2cVsStatic1, 6))  \(col(p.s2cVsStatic2, 6))  \(pct(1 - p.s2cVsStatic1, 11))  \(pct(1 - p.s2cVsStatic2, 11))           ?\n"
        for r in rows {
            let name = r.policy.padding(15)
            out += "\(name) \(col(r.runtimeVsStatic1, 10))  \(col(r.runtimeVsStatic2, 10))  \(col(r.s2cVsStatic1, 6))  \(col(r.s2cVsStatic2, 6))  \(pct(1 - r.s2cVsStatic1, 11))  \(pct(1 - r.s2cVsStatic2, 11))  \(String(r.migrations).leftPad(10))\n"
        }
        out += "static 1 VM/core: mean runtime \(fmt(static1.meanRuntime, 0)) s, mean submission-to-completion \(fmt(static1.meanSubmitToCompletion, 0)) s\n"
        out += "static 2 VMs/core: mean runtime \(fmt(static2.meanRuntime, 0)) s, mean submission-to-completion \(fmt(static2.meanSubmitToCompletion, 0)) s\n"
        return out
    }

    public static func json(_ rows: [Comparison], seed: UInt64) -> String {
        let items = rows.map { r in
            "\"\(r.policy)\":{\"runtime_vs_static1\":\(fmt(r.runtimeVsStatic1, 4)),\"runtime_vs_static2\":\(fmt(r.runtimeVsStatic2, 4)),"
                + "\"s2c_vs_static1\":\(fmt(r.s2cVsStatic1, 4)),\"s2c_vs_static2\":\(fmt(r.s2cVsStatic2, 4)),\"migrations\":\(r.migrations)}"
        }
        return "{\"seed\":\(seed),\(items.joined(separator: ","))}"
    }

    /// Per-job values of every scenario as lines over the job number (Fig. 7: runtime,
    /// Fig. 8: submission-to-completion), as an SVG document.
    public static func svg(title: String, results: [SimulationResult], value: (JobResult) -> Double) -> String {
        let w = 900.0, h = 480.0, left = 70.0, right = 220.0, top = 40.0, bottom = 50.0
        let n = results.map(\.jobs.count).max() ?? 1
        let maxY = max(1, results.flatMap { $0.jobs.map(value) }.max() ?? 1)
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
        func x(_ i: Int) -> Double { left + Double(i) / Double(max(1, n - 1)) * (w - left - right) }
        func y(_ v: Double) -> Double { top + (1 - v / maxY) * (h - top - bottom) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"\(left)\" y=\"24\" font-size=\"15\">\(title)</text>\n"
        s += "<line x1=\"\(left)\" y1=\"\(y(0))\" x2=\"\(w - right)\" y2=\"\(y(0))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(y(0))\" stroke=\"black\"/>\n"
        for k in 0...4 {
            let v = maxY * Double(k) / 4
            s += "<text x=\"\(left - 8)\" y=\"\(fmt(y(v), 1))\" text-anchor=\"end\">\(fmt(v, 0))</text>\n"
        }
        s += "<text x=\"\(fmt((left + w - right) / 2, 0))\" y=\"\(h - 12)\" text-anchor=\"middle\">job</text>\n"
        s += "<text x=\"16\" y=\"\(fmt(top + (h - top - bottom) / 2, 0))\" transform=\"rotate(-90 16 \(fmt(top + (h - top - bottom) / 2, 0)))\" text-anchor=\"middle\">seconds</text>\n"
        for (k, r) in results.enumerated() {
            let c = colors[k % colors.count]
            let points = r.jobs.enumerated().map { "\(fmt(x($0.offset), 1)),\(fmt(y(value($0.element)), 1))" }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
            s += "<line x1=\"\(w - right + 15)\" y1=\"\(top + 20 * Double(k))\" x2=\"\(w - right + 35)\" y2=\"\(top + 20 * Double(k))\" stroke=\"\(c)\" stroke-width=\"3\"/>\n"
            s += "<text x=\"\(w - right + 40)\" y=\"\(top + 4 + 20 * Double(k))\">\(r.scenario)</text>\n"
        }
        return s + "</svg>\n"
    }

    static func col(_ v: Double, _ width: Int) -> String { fmt(v).leftPad(width) }
    static func pct(_ v: Double, _ width: Int) -> String { (fmt(v * 100, 0) + " %").leftPad(width) }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}

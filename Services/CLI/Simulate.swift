import ArgumentParser
import Foundation
import PolicyCore

/// `violin simulate`: the paper's §4.2 experiment replayed through the policy core.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay the paper's §4.2 experiment (4 VIOLINs, 65 jobs, 3 hosts) under each policy.",
        discussion: "Prints the equivalent of the paper's Table 3 and writes Fig. 7/8-like plots as SVG. The same seed gives the same result.")

    @Option(help: "Seed of the job mix.") var seed: UInt64 = 1
    @Option(help: "Directory for the SVG plots (fig7-runtime.svg, fig8-s2c.svg).") var out = "."
    @Flag(help: "Print one JSON object (per policy: runtime_vs_static1/2, s2c_vs_static1/2, migrations) and nothing else.")
    var json = false

    func run() throws {
        let jobs = Workload.paper(seed: seed)
        var sim = Simulator()
        var lastShown = -1
        if !json {
            sim.progress = { name, done in
                let pct = Int(done * 100)
                if pct / 10 != lastShown / 10 || pct == 100 && lastShown != 100 {
                    lastShown = pct
                    FileHandle.standardError.write(Data("\r\(name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(pct) %".utf8))
                    if pct == 100 { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
        }
        let static1 = sim.run(.static1, jobs: jobs, policy: nil)
        lastShown = -1
        let static2 = sim.run(.static2, jobs: jobs, policy: nil)
        let policies: [AdaptationPolicy] = [PaperPolicy(), CostBenefitPolicy()]
        var autonomic: [SimulationResult] = []
        for p in policies {
            lastShown = -1
            autonomic.append(sim.run(.autonomic(p.name), jobs: jobs, policy: p))
        }
        let rows = zip(policies, autonomic).map { Comparison(policy: $0.name, autonomic: $1, static1: static1, static2: static2) }
        if json {
            print(Report.json(rows, seed: seed))
            return
        }
        print(Report.table(rows, static1: static1, static2: static2))
        let all = [static1, static2] + autonomic
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let fig7 = out + "/fig7-runtime.svg", fig8 = out + "/fig8-s2c.svg"
        try Report.svg(title: "Per-job runtime (cf. paper Fig. 7), seed \(seed)", results: all, value: \.runtime)
            .write(toFile: fig7, atomically: true, encoding: .utf8)
        try Report.svg(title: "Per-job submission-to-completion (cf. paper Fig. 8), seed \(seed)", results: all,
                       value: \.submitToCompletion).write(toFile: fig8, atomically: true, encoding: .utf8)
        print("plots: \(fig7) \(fig8)")
    }
}

extension Bench {
    struct Policy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time one decision round of each policy over a large synthetic infrastructure.")
        @Option(help: "Hosts.") var hosts = 1000
        @Option(help: "VMs.") var vms = 20_000
        @Option(help: "VIOLINs.") var violins = 2000
        @Option(help: "Domains.") var domains = 10

        func run() throws {
            let state = PolicyBench.state(hosts: hosts, vms: vms, violins: violins, domains: domains, seed: 7)
            for policy in [PaperPolicy(), CostBenefitPolicy()] as [AdaptationPolicy] {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let decisions = policy.decide(state)
                let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                print(String(format: "policy_round_ms %@ %.1f (hosts=%d vms=%d violins=%d, decisions=%d)",
                             policy.name, ms, hosts, vms, violins, decisions.count))
            }
        }
    }
}

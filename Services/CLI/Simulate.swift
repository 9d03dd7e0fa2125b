import ArgumentParser
import Foundation
import PolicyCore

/// `violin simulate`: the paper's §4.2 experiment replayed through the policy core.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay the paper's §4.2 experiment (4 VIOLINs, 65 jobs, 3 hosts) under each policy.",
        discussion: "Prints the equivalent of the paper's Table 3 and writes Fig. 7/8-like plots as SVG. The same seed gives the same result.")

    @Option(help: "Seed of the job mix.") var seed: UInt64 = 1
    @Option(help: "Directory for the SVG plots (fig7-runtime.svg, fig8-s2c.svg; with --levers: levers-4.2-s2c.svg, levers-memory-s2c.svg).") var out = "."
    @Flag(help: "Print one JSON object (per policy: runtime_vs_static1/2, s2c_vs_static1/2, migrations) and nothing else.")
    var json = false
    @Flag(help: "Compare migrations only with fine-grain levers first, on the §4.2 mix and on a memory-pressure mix (12 GB hosts, working sets of 300-500 MB).")
    var levers = false
    @Flag(help: "Compare the policies on the communication mix (jobs of 2+ nodes exchange 5-40 MB/s per VM): saved time, migrations and bytes across domains, with and without the traffic signal.")
    var traffic = false
    @Option(help: "With --levers or --traffic: the seeds, as A-B or a comma-separated list (default: --seed); prints each and their means.")
    var seeds: String?

    func seedList() throws -> [UInt64] {
        guard let seeds else { return [seed] }
        let parts = seeds.split(separator: "-")
        if parts.count == 2, let a = UInt64(parts[0]), let b = UInt64(parts[1]), a <= b, b - a < 1000 { return Array(a...b) }
        let list = seeds.split(separator: ",").compactMap { UInt64($0) }
        guard !list.isEmpty, list.count == seeds.split(separator: ",").count else {
            throw fail("--seeds must be A-B (at most 1000) or a comma-separated list of seeds", code: Exit.usage)
        }
        return list
    }

    func run() throws {
        if traffic {
            print(TrafficComparison.table(seeds: try seedList()))
            return
        }
        if levers {
            let seeds = try seedList()
            print(LeverComparison.table(seeds: seeds))
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let files = try LeverComparison.plots(seed: seeds[0], into: out)
            print("plots: \(files.joined(separator: " "))")
            return
        }
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
        @Option(help: "Peers each VM exchanges traffic with (the traffic matrix the cost-benefit policy weighs; 0: none).") var peers = 4

        func run() throws {
            for withTraffic in [false, true] where withTraffic == false || peers > 0 {
                let state = PolicyBench.state(hosts: hosts, vms: vms, violins: violins, domains: domains, seed: 7, peers: withTraffic ? peers : 0)
                let pairs = state.traffic.values.reduce(0) { $0 + $1.count } / 2
                for policy in [PaperPolicy(), CostBenefitPolicy()] as [AdaptationPolicy] {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let decisions = policy.decide(state)
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                    print(String(format: "policy_round_ms %@ %.1f (hosts=%d vms=%d violins=%d traffic_pairs=%d, decisions=%d)",
                                 policy.name, ms, hosts, vms, violins, pairs, decisions.count))
                }
            }
        }
    }
}

/// Migrations only against levers first (`LeversFirstPolicy` around the same policy), on two
/// job mixes: the §4.2 mix (working sets of 256-384 MB, 16 GB hosts: memory is never short)
/// and a memory-pressure mix (300-500 MB, 12 GB hosts: the autonomic layout's 32 VMs on one
/// host get 384 MB balloons).
enum LeverComparison {
    struct Row { let mix: String, policy: String, savedS1: Double, savedS2: Double, migrations: Int, levers: [String: Int] }

    static let mixes: [(name: String, hostMB: Int, memory: ClosedRange<Int>)] = [("4.2", 16_384, 256...384), ("memory", 12_288, 300...500)]

    /// One mix on one seed: both static layouts, then each policy with and without levers.
    static func results(_ mix: (name: String, hostMB: Int, memory: ClosedRange<Int>), seed: UInt64)
        -> (static1: SimulationResult, static2: SimulationResult, autonomic: [(AdaptationPolicy, SimulationResult)]) {
        var sim = Simulator()
        sim.hostMemoryMB = mix.hostMB
        let jobs = Workload.withMemory(Workload.paper(seed: seed), seed: seed, memoryMB: mix.memory)
        let s1 = sim.run(.static1, jobs: jobs, policy: nil), s2 = sim.run(.static2, jobs: jobs, policy: nil)
        var autonomic: [(AdaptationPolicy, SimulationResult)] = []
        for inner in [PaperPolicy(), CostBenefitPolicy()] as [AdaptationPolicy] {
            for policy in [inner, LeversFirstPolicy(inner: inner)] as [AdaptationPolicy] {
                autonomic.append((policy, sim.run(.autonomic(policy.name), jobs: jobs, policy: policy)))
            }
        }
        return (s1, s2, autonomic)
    }

    static func rows(seed: UInt64) -> [Row] {
        var rows: [Row] = []
        for mix in mixes {
            let (s1, s2, autonomic) = results(mix, seed: seed)
            for (policy, r) in autonomic {
                let c = Comparison(policy: policy.name, autonomic: r, static1: s1, static2: s2)
                rows.append(Row(mix: mix.name, policy: policy.name, savedS1: 1 - c.s2cVsStatic1, savedS2: 1 - c.s2cVsStatic2,
                                migrations: r.migrations, levers: r.levers))
            }
        }
        return rows
    }

    /// Per mix, the jobs' submission-to-completion times (cf. Fig. 8) of the static layouts and
    /// of the better policy with and without levers, as `levers-<mix>-s2c.svg` in `dir`.
    static func plots(seed: UInt64, into dir: String) throws -> [String] {
        var files: [String] = []
        for mix in mixes {
            let (s1, s2, autonomic) = results(mix, seed: seed)
            let shown = autonomic.filter { $0.0.name.contains(CostBenefitPolicy().name) }.map(\.1)
            let file = dir + "/levers-\(mix.name)-s2c.svg"
            try Report.svg(title: "Submission-to-completion, \(mix.name == "4.2" ? "the §4.2 mix" : "the memory-pressure mix"): migrations only vs levers first, seed \(seed)",
                           results: [s1, s2] + shown, value: \.submitToCompletion).write(toFile: file, atomically: true, encoding: .utf8)
            files.append(file)
        }
        return files
    }

    static func table(seeds: [UInt64]) -> String {
        var out = "Migrations only vs levers first (saved: submission-to-completion time against static 1 / 2 VMs per core)\n"
        out += "seed  mix     policy                  saved-vs-s1  saved-vs-s2  migrations  weights  balloons\n"
        func line(_ seed: String, _ r: Row) -> String {
            seed.padding(toLength: 6, withPad: " ", startingAt: 0) + r.mix.padding(toLength: 8, withPad: " ", startingAt: 0)
                + r.policy.padding(toLength: 24, withPad: " ", startingAt: 0)
                + String(format: "%10.1f %%  %10.1f %%  %10d  %7d  %8d\n", r.savedS1 * 100, r.savedS2 * 100, r.migrations,
                         r.levers["set_cpu_weight"] ?? 0, r.levers["set_balloon"] ?? 0)
        }
        var all: [Row] = []
        for seed in seeds {
            let rows = rows(seed: seed)
            all += rows
            for r in rows { out += line("\(seed)", r) }
        }
        guard seeds.count > 1 else { return out }
        out += "means over \(seeds.count) seeds (migrations and levers: totals)\n"
        for key in all.prefix(all.count / seeds.count) {
            let same = all.filter { $0.mix == key.mix && $0.policy == key.policy }
            let n = Double(same.count)
            var levers: [String: Int] = [:]
            for r in same { levers.merge(r.levers, uniquingKeysWith: +) }
            out += line("mean", Row(mix: key.mix, policy: key.policy, savedS1: same.reduce(0) { $0 + $1.savedS1 } / n,
                                    savedS2: same.reduce(0) { $0 + $1.savedS2 } / n, migrations: same.reduce(0) { $0 + $1.migrations },
                                    levers: levers))
        }
        return out
    }
}

/// The policies on the communication mix: what the traffic signal changes.
enum TrafficComparison {
    struct Row { let seed: UInt64, policy: String, savedS1: Double, savedS2: Double, migrations: Int, interDomainGB: Double, interHostGB: Double }

    static func rows(seed: UInt64) -> [Row] {
        let sim = Simulator()
        let jobs = Workload.withCommunication(Workload.paper(seed: seed), seed: seed)
        let s1 = sim.run(.static1, jobs: jobs, policy: nil), s2 = sim.run(.static2, jobs: jobs, policy: nil)
        let policies: [AdaptationPolicy] = [PaperPolicy(), TrafficBlind(CostBenefitPolicy()), CostBenefitPolicy(), CostBenefitPolicy()]
        var rows = [Row(seed: seed, policy: "static-2vm-per-core", savedS1: 1 - s2.meanSubmitToCompletion / s1.meanSubmitToCompletion, savedS2: 0,
                        migrations: 0, interDomainGB: s2.interDomainBytes / 1e9, interHostGB: s2.interHostBytes / 1e9)]
        for (i, p) in policies.enumerated() {
            // The last: with the batch schedulers' hints of what is coming.
            var sim = sim
            sim.hints = i == policies.count - 1
            let name = p.name + (sim.hints ? "+hints" : "")
            let r = sim.run(.autonomic(name), jobs: jobs, policy: p)
            let c = Comparison(policy: p.name, autonomic: r, static1: s1, static2: s2)
            rows.append(Row(seed: seed, policy: name, savedS1: 1 - c.s2cVsStatic1, savedS2: 1 - c.s2cVsStatic2, migrations: r.migrations,
                            interDomainGB: r.interDomainBytes / 1e9, interHostGB: r.interHostBytes / 1e9))
        }
        return rows
    }

    static func table(seeds: [UInt64]) -> String {
        // The §4.2 mix (no communication) first: the policies and the hints there.
        var out0 = "the §4.2 mix (no communication)\n"
        out0 += "seed  policy                  saved vs static1  saved vs static2  migrations\n"
        var plain: [Row] = []
        for seed in seeds {
            let jobs = Workload.paper(seed: seed)
            let s1 = Simulator().run(.static1, jobs: jobs, policy: nil), s2 = Simulator().run(.static2, jobs: jobs, policy: nil)
            for (p, hinted) in [(PaperPolicy() as AdaptationPolicy, false), (CostBenefitPolicy(), false), (CostBenefitPolicy(), true)] {
                var sim = Simulator()
                sim.hints = hinted
                let name = p.name + (hinted ? "+hints" : "")
                let r = sim.run(.autonomic(name), jobs: jobs, policy: p)
                let c = Comparison(policy: name, autonomic: r, static1: s1, static2: s2)
                let row = Row(seed: seed, policy: name, savedS1: 1 - c.s2cVsStatic1, savedS2: 1 - c.s2cVsStatic2, migrations: r.migrations, interDomainGB: 0, interHostGB: 0)
                plain.append(row)
                out0 += String(format: "%-5llu %@ %15.1f %% %15.1f %% %11d\n", seed, name.padding(toLength: 23, withPad: " ", startingAt: 0),
                               row.savedS1 * 100, row.savedS2 * 100, row.migrations)
            }
        }
        out0 += "means over \(seeds.count) seeds\n"
        for name in Array(Set(plain.map(\.policy))).sorted() {
            let rs = plain.filter { $0.policy == name }
            let n = Double(rs.count)
            out0 += String(format: "      %@ %15.1f %% %15.1f %% %11.1f\n", name.padding(toLength: 23, withPad: " ", startingAt: 0),
                           rs.map(\.savedS1).reduce(0, +) / n * 100, rs.map(\.savedS2).reduce(0, +) / n * 100, Double(rs.map(\.migrations).reduce(0, +)) / n)
        }
        return out0 + "\n" + tableCommunication(seeds: seeds)
    }

    static func tableCommunication(seeds: [UInt64]) -> String {
        var out = "communication mix (jobs of 2+ nodes: 5-40 MB/s per VM to their fellows; 100 MB/s in a domain, 25 MB/s across)\n"
        out += "seed  policy                  saved vs static1  saved vs static2  migrations  GB across domains  GB between hosts\n"
        var all: [Row] = []
        for seed in seeds {
            for r in rows(seed: seed) {
                all.append(r)
                out += String(format: "%-5llu %@ %15.1f %% %15.1f %% %11d %18.1f %17.1f\n", r.seed, r.policy.padding(toLength: 23, withPad: " ", startingAt: 0),
                              r.savedS1 * 100, r.savedS2 * 100, r.migrations, r.interDomainGB, r.interHostGB)
            }
        }
        out += "means over \(seeds.count) seeds\n"
        for name in Array(Set(all.map(\.policy))).sorted() {
            let rs = all.filter { $0.policy == name }
            let n = Double(rs.count)
            out += String(format: "      %@ %15.1f %% %15.1f %% %11.1f %18.1f %17.1f\n", name.padding(toLength: 23, withPad: " ", startingAt: 0),
                          rs.map(\.savedS1).reduce(0, +) / n * 100, rs.map(\.savedS2).reduce(0, +) / n * 100,
                          Double(rs.map(\.migrations).reduce(0, +)) / n, rs.map(\.interDomainGB).reduce(0, +) / n, rs.map(\.interHostGB).reduce(0, +) / n)
        }
        return out
    }
}

import ArgumentParser
import Foundation
import PolicyCore

extension Bench {
    /// The placement decision on a large infrastructure: a VIOLIN of `--vms` VMs placed among
    /// `--hosts` hosts in 10 domains that already run `--existing` VMs (their memory and NIC
    /// ports taken), pack and spread, each timed over `--rounds` decisions.
    struct PlacementBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "placement",
            abstract: "Time of one placement decision on a large inventory (pure, no services).")
        @Option(help: "Hosts.") var hosts = 1000
        @Option(help: "VMs already running on them.") var existing = 20_000
        @Option(help: "VMs in the VIOLIN placed.") var vms = 8
        @Option(help: "Decisions timed, per placement kind.") var rounds = 50

        func run() throws {
            guard (1...100_000).contains(hosts), (0...1_000_000).contains(existing), (1...1000).contains(vms), (1...10_000).contains(rounds) else {
                throw fail("--hosts 1-100000, --existing 0-1000000, --vms 1-1000, --rounds 1-10000", code: Exit.usage)
            }
            var r = SeededRandom(seed: 7)
            let perHost = existing / hosts
            let inventory = (0..<hosts).map { i -> Placement.Host in
                var h = Placement.Host(id: "h\(i)", domain: "d\(i % 10)", freeMB: 2048 + Int(r.next() % 30_000), images: ["tiny", "big"])
                h.usedPorts = Set((0..<perHost).map { 20_000 + $0 })
                h.draining = r.next() % 100 == 0
                return h
            }
            let used = Set((1...UInt32(existing / 8 + 1)).map { $0 })
            for kind in ViolinSpec.Spreading.allCases {
                var spec = ViolinSpec(name: "bench", homeDomain: "d3", head: "w-1", vms: (1...vms).map {
                    ViolinSpec.VM(name: "w-\($0)", memoryMB: 512, vcpus: 1, image: "tiny") })
                spec.placement = kind
                spec.antiAffinity = vms >= 2 ? [["w-1", "w-2"]] : []
                var times: [Double] = []
                for _ in 0..<rounds {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    guard case .success = Placement.place(spec, hosts: inventory, usedVNIs: used) else { throw fail("the bench's VIOLIN did not fit", code: 1) }
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
                times.sort()
                print(String(format: "placement_ms %@ hosts=%d existing=%d vms=%d: median %.2f p99 %.2f max %.2f (n=%d)",
                             kind.rawValue, hosts, existing, vms, times[times.count / 2], times[min(times.count - 1, times.count * 99 / 100)],
                             times.last!, times.count))
            }
        }
    }
}

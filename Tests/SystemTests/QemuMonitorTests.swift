import Foundation
import Testing
import VIOLINProtocol

/// violin-monitor on a real libvirt daemon with a real QEMU guest (TCG): a CPU-burning guest
/// shows high CPU in the samples, and a balloon change is seen through libvirt.
@Suite(.serialized) struct QemuMonitorTests {
    @Test(.timeLimit(.minutes(5))) func burningGuestAndBalloon() throws {
        // With the cgroup v1 cpu controller, so a CPU weight has somewhere to take effect.
        let host = try QemuHost("qemu", cgroups: true)
        defer { host.stop() }
        try host.boot("burner")
        let (scratch, lab, uri) = (host.scratch, host.lab, host.uri)
        let (watch, monitor) = try host.monitored(watching: "monitor.", interval: "0.5")

        // The guest burns its vCPU: the samples say so.
        let hot = watch.waitForLine(timeout: 60) { line in
            guard let v = try? JSONText.parse(Array(line.utf8)), case .array(let vms)? = v["body"]?["vms"] else { return false }
            return vms.contains { $0["name"] == "burner" && ($0["cpu_percent"]?.numberValue ?? 0) > 80 }
        }
        #expect(hot != nil, "no sample with the guest above 80 % CPU; monitor: \(monitor.stderrText)")

        // Balloon it from 128 to 96 MiB: libvirt reports the guest at the new size.
        let r = try run("violin", ["call", scratch.ipc("monitor"), "set_balloon", #"{"vm":"burner","memory_mb":96}"#])
        #expect(r.status == 0 && r.out.contains(#""target_mb" : 96"#), "\(r.out) \(r.err)")
        let shrunk = watch.waitForLine(timeout: 30) { line in
            guard let v = try? JSONText.parse(Array(line.utf8)), case .array(let vms)? = v["body"]?["vms"] else { return false }
            return vms.contains { $0["name"] == "burner" && $0["memory_mb"]?.intValue == 96 }
        }
        #expect(shrunk != nil, "the balloon did not reach 96 MiB")
        let dominfo = try sh("virsh -c '\(uri)' dominfo burner")
        #expect(dominfo.out.contains("98304 KiB"), "\(dominfo.out)")
        // CPU weight: libvirt sets the guest's cgroup cpu.shares, which the kernel reads back —
        // in the daemon's own partition of the hierarchy.
        let partition = try String(contentsOfFile: lab + "/cgroup", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(partition.hasPrefix("/sys/fs/cgroup/cpu/violin-lab/"), "\(partition)")
        let group = try sh("ls -d \(partition)/machine/qemu-*-burner.libvirt-qemu")
        let groupDir = group.out.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(group.status == 0 && !groupDir.isEmpty && !groupDir.contains("\n"), "the guest's cpu cgroup: \(group.out) \(group.err)")
        for weight in [512, 2048] {
            let w = try run("violin", ["call", scratch.ipc("monitor"), "set_cpu_weight", #"{"vm":"burner","weight":\#(weight)}"#])
            #expect(w.status == 0 && w.out.contains(#""weight" : \#(weight)"#), "\(w.out) \(w.err)")
            let shares = try String(contentsOfFile: groupDir + "/cpu.shares", encoding: .utf8)
            #expect(Int(shares.trimmingCharacters(in: .whitespacesAndNewlines)) == weight, "cpu.shares \(shares) after weight \(weight)")
        }
        let unknown = try run("violin", ["call", scratch.ipc("monitor"), "set_balloon", #"{"vm":"nobody","memory_mb":64}"#])
        #expect(unknown.status == 1 && unknown.err.contains("not_found"))

        // The guest goes: the monitor says so on the bus.
        #expect(try sh("virsh -c '\(uri)' destroy burner").status == 0)
        let gone = watch.waitForLine(timeout: 30) { line in
            guard let v = try? JSONText.parse(Array(line.utf8)) else { return false }
            return v["topic"] == "monitor.vm_disappeared" && v["body"]?["vm"] == "burner"
        }
        #expect(gone != nil, "no monitor.vm_disappeared for the destroyed guest")
        host.stop()
        #expect(!FileManager.default.fileExists(atPath: partition), "the daemon's cpu partition is left")
    }

    /// Two burning guests on one host CPU: the CPU lever's weight — 2048 against the default
    /// 1024, the `set_cpu_weight` the policy sends through the host's monitor — gives the
    /// weighted guest the larger share as the monitor measures it; then the other way round.
    /// Prints the shares (their ratio is a benchmark figure: the fair scheduler's 2:1 is 2.0).
    /// Each guest wants its whole vCPU: its demand (use plus the run-queue wait of its vCPU
    /// thread) says so, where its use is its share.
    @Test(.timeLimit(.minutes(5))) func aWeightGivesTheLargerShareOfOneCPU() throws {
        let host = try QemuHost("share", cgroups: true)
        defer { host.stop() }
        let guests = ["hot1", "hot2"]
        for g in guests { try host.boot(g, "--cpus 0") }
        let scratch = host.scratch
        let (watch, monitor) = try host.monitored(watching: "monitor.sampled")

        /// The guests' mean CPU over `count` samples, after `skip` more (the weights take hold).
        var demands: [String: Double] = [:]
        func shares(_ weights: [String: Int], skip: Int = 2, count: Int = 8) throws -> [String: Double] {
            for (vm, w) in weights.sorted(by: { $0.key < $1.key }) {
                let r = try run("violin", ["call", scratch.ipc("monitor"), "set_cpu_weight", #"{"vm":"\#(vm)","weight":\#(w)}"#])
                try #require(r.status == 0, "\(r.out) \(r.err)")
            }
            let mark = watch.lines.count
            var index = 0, seen = 0
            var sums: [String: Double] = [:]
            let done = watch.waitForLine(timeout: 90) { line in
                index += 1
                guard index > mark, let v = try? JSONText.parse(Array(line.utf8)), case .array(let vms)? = v["body"]?["vms"] else { return false }
                let cpu = Dictionary(vms.compactMap { vm in vm["name"]?.stringValue.map { ($0, vm["cpu_percent"]?.numberValue ?? 0) } },
                                     uniquingKeysWith: { a, _ in a })
                let demand = Dictionary(vms.compactMap { vm in vm["name"]?.stringValue.map { ($0, vm["demand_percent"]?.numberValue ?? 0) } },
                                        uniquingKeysWith: { a, _ in a })
                guard guests.allSatisfy({ cpu[$0] != nil }) else { return false }
                seen += 1
                if seen > skip {
                    for g in guests {
                        sums[g, default: 0] += cpu[g]! / Double(count)
                        demands[g, default: 0] += (demand[g] ?? 0) / Double(2 * count)
                    }
                }
                return seen == skip + count
            }
            try #require(done != nil, "fewer than \(skip + count) samples; monitor: \(monitor.stderrText.suffix(400))")
            return sums
        }
        let first = try shares(["hot1": 2048, "hot2": 1024])
        let second = try shares(["hot1": 1024, "hot2": 2048])
        print(String(format: "cpu_share weight 2048:1024 on one CPU: %.1f %% : %.1f %% (ratio %.2f); swapped: %.1f %% : %.1f %% (ratio %.2f)",
                     first["hot1"]!, first["hot2"]!, first["hot1"]! / max(0.1, first["hot2"]!),
                     second["hot2"]!, second["hot1"]!, second["hot2"]! / max(0.1, second["hot1"]!)))
        #expect(first["hot1"]! > 1.3 * first["hot2"]!, "weight 2048 against 1024: \(first)")
        #expect(second["hot2"]! > 1.3 * second["hot1"]!, "swapped: \(second)")
        // Together they have the one CPU, no more.
        #expect(first.values.reduce(0, +) < 115 && second.values.reduce(0, +) < 115, "\(first) \(second)")
        // Yet each wants all of its vCPU.
        print(String(format: "cpu_demand on one CPU: hot1 %.1f %%, hot2 %.1f %%", demands["hot1"]!, demands["hot2"]!))
        #expect(guests.allSatisfy { demands[$0]! > 85 }, "demand of two guests sharing one CPU: \(demands)")
    }
}

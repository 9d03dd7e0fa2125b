import Foundation
import TestSupport
import Testing

/// The forwarding thread's scheduling on a busy host (`SchedulingGovernor`): real-time while
/// the host's cores are busy, within a budget; refused real-time reported. In the migration
/// suite, one at a time with its labs: these tests keep cores busy on purpose, and the demo's
/// TCG guests must not lose their CPU to them.
extension MigrationSystemTests {
    /// Two hosts, one switch each with one port, a VM behind each (10.84.0.1 on host 1, .2 on 2).
    /// The receiving switch starts in CPU cgroup `cgroup` (cgroup v1 `tasks` file's directory) if given.
    func twoSwitches(_ lab: Lab, cgroup: String? = nil, queues: Int = 1) throws -> (sender: Spawned, receiver: Spawned, control: String) {
        let control = lab.scratch.ipc("sched2")
        var switches: [Spawned] = []
        for h in 1...2 {
            try lab.addHost(h)
            let args = ["--vni", "84", "--tunnel", "\(lab.hostIP(h)):4789", "--peer", "\(lab.hostIP(3 - h)):4789",
                        "--tap", "\(lab.prefix)s\(h)", "--bus", "none", "--listen", h == 2 ? control : lab.scratch.ipc("sched1"),
                        "--queues", "\(queues)"]
            if h == 2, let cgroup {
                // Into the group before it runs (a real-time thread could not be moved in later),
                // from outside the namespace (`ip netns exec` mounts a /sys without the cgroups).
                // Killed at the lab's teardown by its scratch path, as a mesh's switches are.
                let command = "echo $$ > \(cgroup)/tasks && exec /usr/sbin/ip netns exec \(lab.host(h)) '\(binDir)/violin-switch' " + args.joined(separator: " ")
                switches.append(try Spawned("/bin/sh", ["-c", command]))
            } else {
                switches.append(try lab.spawn(in: lab.host(h), "violin-switch", args))
            }
        }
        for h in 1...2 {
            try lab.waitForDevice("\(lab.prefix)s\(h)", in: lab.host(h))
            try lab.makeVM("\(lab.prefix)-s\(h)", device: "\(lab.prefix)s\(h)", from: lab.host(h), mac: "02:84:00:00:00:0\(h)", ipv4: "10.84.0.\(h)/24")
        }
        let reach = try sh("ip netns exec \(lab.prefix)-s1 ping -c 3 -i 0.2 -W 2 10.84.0.2")
        try #require(reach.status == 0, "the VMs do not reach each other: \(reach.out)")
        return (switches[0], switches[1], control)
    }

    /// A process's CPU time (user and system, all threads), seconds.
    func cpuSeconds(_ pid: pid_t) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The share of a core `pid` used over `seconds` (measured from its own CPU time).
    func share(_ pid: pid_t, over seconds: Double) -> Double {
        let c0 = cpuSeconds(pid), t0 = Date()
        Thread.sleep(forTimeInterval: seconds)   // a measuring interval, not a synchronisation
        return (cpuSeconds(pid) - c0) / Date().timeIntervalSince(t0)
    }

    /// A UDP flood of small packets into a VM whose switch shares its core with a CPU-bound
    /// process: the switch goes real-time (the core is busy, its wake-ups wait), goes over its
    /// budget and backs off, so the flood takes at most half a core from the process beside it —
    /// with one forwarding thread, and with two, which share the switch's budget.
    @Test(.timeLimit(.minutes(3)), arguments: [1, 2]) func aFloodCannotStarveTheHost(queues: Int) throws {
        let lab = try Lab("flood\(queues)", subnet: queues == 1 ? "172.31.84" : "172.31.72")
        defer { lab.teardown() }
        let (sender, receiver, control) = try twoSwitches(lab, queues: queues)
        // Core 1: the receiving switch and the hog; core 0: the sending VM and its switch.
        try lab.must("taskset -a -p -c 1 \(receiver.pid) >/dev/null && taskset -a -p -c 0 \(sender.pid) >/dev/null")
        let hog = try Spawned("/usr/bin/taskset", ["-c", "1", "/bin/sh", "-c", "while :; do :; done"])
        defer { hog.destroy() }
        let alone = share(hog.pid, over: 2)
        let server = try lab.spawn(in: "\(lab.prefix)-s2", "/usr/bin/taskset", ["-c", "0", "/usr/bin/iperf3", "-s", "-1", "--forceflush", "-B", "10.84.0.2"])
        try #require(server.waitForLine(timeout: 20) { $0.contains("Server listening") } != nil, "iperf3 server: \(server.stderrText)")
        let flood = try lab.spawn(in: "\(lab.prefix)-s1", "/usr/bin/taskset", ["-c", "0", "/usr/bin/iperf3", "-c", "10.84.0.2", "-u", "-b", "0", "-l", "64", "-t", "8"])
        defer { flood.destroy() }
        // The flood is on once the receiving switch has taken 10,000 frames from its peer.
        var seen = ""
        #expect(eventually(deadline: 10) {
            do { let s = try switchStats(control); seen = "\(s["frames"] ?? .null)"; return (s["frames"]?["from_peers"]?.intValue ?? 0) > 10_000 } catch { seen = "\(error)"; return false }
        }, "no flood arrived: \(seen) \(flood.lines.suffix(5)) \(flood.stderrText)")
        let receiverBefore = cpuSeconds(receiver.pid), t0 = Date()
        let beside = share(hog.pid, over: 4)
        let switchShare = (cpuSeconds(receiver.pid) - receiverBefore) / Date().timeIntervalSince(t0)
        let sched = try switchStats(control)["scheduling"]
        print("flood: the hog had \(alone) of a core alone, \(beside) beside the flooded switch (which took \(switchShare)); \(String(describing: sched))")
        #expect(alone - beside <= 0.5, "the flood took \(alone - beside) of a core from the hog (\(alone) -> \(beside))")
        // The real-time path was taken, and left over budget.
        #expect((sched?["realtime_entries"]?.intValue ?? 0) >= 1 && (sched?["over_budget"]?.intValue ?? 0) >= 1, "\(String(describing: sched))")
        #expect(sched?["refused"] == nil, "\(String(describing: sched))")
    }

    /// In a CPU cgroup without a real-time budget (real-time group scheduling on), the kernel
    /// refuses real-time: the switch says so in its stats, goes on forwarding in the fair class.
    @Test(.timeLimit(.minutes(3)),
          .enabled(if: FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cpu.rt_runtime_us"),
                   "needs real-time group scheduling (cgroup v1 cpu.rt_runtime_us)"))
    func aRefusedRealtimeIsReported() throws {
        let group = "/sys/fs/cgroup/cpu/violin-test-\(UUID().uuidString.prefix(8).lowercased())"
        let lab = try Lab("rtref", subnet: "172.31.85")
        var hogs: [Spawned] = []
        defer {
            for h in hogs { h.destroy() }
            lab.teardown()
            // Empty once the killed switch is gone.
            _ = eventually(deadline: 10) { (try? sh("rmdir \(group)"))?.status == 0 }
        }
        try lab.must("mkdir \(group) && echo 0 > \(group)/cpu.rt_runtime_us")
        let (_, _, control) = try twoSwitches(lab, cgroup: group)
        // Every core busy, and pings through the switch: it wants real-time, and is refused.
        for _ in 0..<ProcessInfo.processInfo.activeProcessorCount {
            hogs.append(try Spawned("/bin/sh", ["-c", "while :; do :; done"]))
        }
        let pings = try lab.spawn(in: "\(lab.prefix)-s1", "/usr/bin/ping", ["-i", "0.01", "-W", "1", "10.84.0.2"])
        defer { pings.destroy() }
        #expect(eventually(deadline: 30) { (try? switchStats(control))?["scheduling"]?["refused"] != nil },
                "no refusal reported: \(String(describing: try? switchStats(control)["scheduling"]))")
        let sched = try switchStats(control)["scheduling"]
        #expect(sched?["mode"] == "fair" && sched?["realtime_entries"] == 0, "\(String(describing: sched))")
        #expect(sched?["refused"]?.stringValue?.contains("not permitted") == true, "\(String(describing: sched))")
        for h in hogs { h.destroy() }
        hogs = []
        let reach = try sh("ip netns exec \(lab.prefix)-s1 ping -c 3 -i 0.2 -W 2 10.84.0.2")
        #expect(reach.status == 0, "it still forwards: \(reach.out)")
    }
}

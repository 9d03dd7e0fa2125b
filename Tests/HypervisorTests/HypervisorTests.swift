import Testing
import Foundation
@testable import Hypervisor

func dom(_ name: String, cpu: UInt64, vcpus: Int = 2, running: Bool = true) -> DomainStats {
    DomainStats(name: name, uuid: "uuid-\(name)", running: running, vcpus: vcpus, cpuTimeNs: cpu, memoryKiB: 1024, maxMemoryKiB: 2048)
}

@Suite struct SamplerTests {
    @Test func cpuFromDeltasOverVCPUs() {
        var s = Sampler()
        let first = s.sample([dom("a", cpu: 0), dom("b", cpu: 5_000_000_000)], atNs: 1_000_000_000)
        #expect(first.appeared == ["a", "b"] && first.samples.allSatisfy { $0.cpuPercent == nil })
        // One second later: a used 1 s of CPU on 2 vCPUs (50 %), b used 2 s (100 %).
        let second = s.sample([dom("a", cpu: 1_000_000_000), dom("b", cpu: 7_000_000_000)], atNs: 2_000_000_000)
        #expect(second.samples.map(\.cpuPercent) == [50, 100])
        #expect(second.appeared.isEmpty && second.disappeared.isEmpty)
        // b stops, c appears.
        let third = s.sample([dom("a", cpu: 1_000_000_000), dom("b", cpu: 7_000_000_000, running: false), dom("c", cpu: 0)],
                             atNs: 3_000_000_000)
        #expect(third.samples.first { $0.name == "a" }?.cpuPercent == 0)
        #expect(third.appeared == ["c"] && third.disappeared == ["b"])
    }
}

@Suite struct SamplerFiguresTests {
    /// Swap and fault rates from the guest's cumulative counters; network rates from the
    /// port's byte counters, none when a counter went back (a new port after a migration).
    @Test func ratesFromCountersOverTheInterval() {
        var s = Sampler()
        var d = dom("a", cpu: 0)
        d.guest = GuestMemoryStats(unusedKiB: 1024, availableKiB: 4096, swapInKiB: 100, swapOutKiB: 0, majorFaults: 10)
        let net = NetCounters(txBytes: 1_000_000, rxBytes: 0, txPackets: 100, rxPackets: 0)
        let first = s.sample([d], atNs: 1_000_000_000, net: ["a": net])
        #expect(first.samples[0].guest?.swapInKiBPerS == nil && first.samples[0].net?.txMbitS == nil)
        d.guest = GuestMemoryStats(unusedKiB: 512, availableKiB: 2048, swapInKiB: 300, swapOutKiB: 0, majorFaults: 110)
        let second = s.sample([d], atNs: 3_000_000_000, net: ["a": NetCounters(txBytes: 6_000_000, rxBytes: 250_000, txPackets: 200, rxPackets: 10)])
        let g = second.samples[0].guest
        #expect(g?.swapInKiBPerS == 100 && g?.majorFaultsPerS == 50 && g?.unusedKiB == 512, "\(String(describing: g))")
        // 5 MB in 2 s is 20 Mbit/s; 250 kB in 2 s is 1 Mbit/s.
        #expect(second.samples[0].net?.txMbitS == 20 && second.samples[0].net?.rxMbitS == 1)
        let third = s.sample([d], atNs: 4_000_000_000, net: ["a": NetCounters(txBytes: 10, rxBytes: 10, txPackets: 1, rxPackets: 1)])
        #expect(third.samples[0].net?.txMbitS == nil && third.samples[0].net?.counters.txBytes == 10)
        #expect(s.sample([d], atNs: 5_000_000_000).samples[0].net == nil, "a port not read: no network figures")
    }
}

@Suite struct LibvirtTestDriverTests {
    @Test func readsAndSetsThroughLibvirt() throws {
        let hv = try LibvirtHypervisor(uri: "test:///default")
        let host = try hv.host()
        #expect(host.cpus > 0 && host.memoryKiB > 0)
        let domains = try hv.domains()
        let test = try #require(domains.first { $0.name == "test" })
        #expect(test.running && test.vcpus >= 1 && test.maxMemoryKiB >= test.memoryKiB)
        let target = test.maxMemoryKiB / 2
        #expect(try hv.setMemory("test", kib: target) == target)
        #expect(try hv.domains().first { $0.name == "test" }?.memoryKiB == target)
        // The reply is the weight libvirt reports after the set, not the one asked for: the
        // test driver accepts the call but keeps its fixed weight of 50. (That a weight takes
        // effect is shown on QEMU, in QemuMonitorTests, through the guest's cgroup.)
        #expect(try hv.setCPUWeight("test", 300) == 50)
        #expect(throws: HypervisorError.self) { try hv.setMemory("nope", kib: 1) }
        #expect { _ = try hv.setMemory("test", kib: test.maxMemoryKiB * 4) } throws: { ($0 as? HypervisorError)?.kind == .invalid }
        #expect { _ = try hv.cpuWeight("nope") } throws: { ($0 as? HypervisorError)?.kind == .notFound }
        #expect { _ = try hv.setCPUWeight("nope", 10) } throws: { ($0 as? HypervisorError)?.kind == .notFound }
    }
}

@Suite struct DemandTests {
    /// Demand is what the vCPUs ran plus what they waited for a CPU: a VM that got 60 % of its
    /// vCPU and waited 40 % wanted all of it.
    @Test func demandIsUsePlusRunQueueWait() {
        var s = Sampler()
        var a = dom("a", cpu: 0, vcpus: 1), b = dom("b", cpu: 0, vcpus: 1)
        a.vcpuWaitNs = 5_000_000_000
        _ = s.sample([a, b], atNs: 1_000_000_000)
        a = dom("a", cpu: 600_000_000, vcpus: 1); a.vcpuWaitNs = 5_400_000_000
        b = dom("b", cpu: 300_000_000, vcpus: 1)
        let r = s.sample([a, b], atNs: 2_000_000_000)
        let sa = r.samples[0], sb = r.samples[1]
        #expect(sa.cpuPercent == 60 && sa.demandPercent == 100, "\(sa)")
        #expect(sb.cpuPercent == 30 && sb.demandPercent == nil, "no wait known: no demand")
        // A wait that went back (a new process after a migration) is no reading.
        a = dom("a", cpu: 900_000_000, vcpus: 1); a.vcpuWaitNs = 100
        #expect(s.sample([a], atNs: 3_000_000_000).samples[0].demandPercent == nil)
    }

    /// Where the vCPU threads' own run time is known, demand counts it, not the process's CPU
    /// time: a VM whose QEMU I/O thread is busy while its vCPUs idle does not demand a core.
    @Test func demandCountsTheVCPUThreadsOwnRunTime() {
        var s = Sampler()
        var a = dom("a", cpu: 0, vcpus: 1)
        a.vcpuWaitNs = 0; a.vcpuRunNs = 0
        _ = s.sample([a], atNs: 1_000_000_000)
        a = dom("a", cpu: 900_000_000, vcpus: 1); a.vcpuWaitNs = 100_000_000; a.vcpuRunNs = 200_000_000
        let r = s.sample([a], atNs: 2_000_000_000).samples[0]
        #expect(r.cpuPercent == 90 && r.demandPercent.map { abs($0 - 30) < 1e-9 } == true, "\(r)")
    }

    /// The reader finds a VM's QEMU by its `-uuid` and sums its vCPU threads' run-queue delay,
    /// other threads left out; a VM without a process has no reading.
    @Test func readsVCPUThreadsOfTheRightProcess() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vcpuwait-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        func put(_ path: String, _ text: String) throws {
            let p = root + "/" + path
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: p, atomically: false, encoding: .utf8)
        }
        let uuid = "6f1c1b2e-0000-4000-8000-000000000001"
        try put("4242/cmdline", "/usr/bin/qemu-system-x86_64\0-name\0guest=a1\0-uuid\0\(uuid)\0-smp\02\0")
        try put("4242/task/4242/comm", "qemu-system-x86\n"); try put("4242/task/4242/schedstat", "9 1000000 3\n")
        try put("4242/task/4250/comm", "CPU 0/TCG\n"); try put("4242/task/4250/schedstat", "500 2000 7\n")
        try put("4242/task/4251/comm", "CPU 1/TCG\n"); try put("4242/task/4251/schedstat", "500 3000 7\n")
        try put("77/cmdline", "bash\0-c\0echo -uuid\0")
        let reader = VCPUWaitReader(proc: root)
        #expect(reader.waits(uuids: [uuid, "other"]) == [uuid: 5000])
        #expect(reader.times(uuids: [uuid]) == [uuid: .init(runNs: 1000, waitNs: 5000)], "the vCPU threads' run times, the main thread's left out")
        try put("4242/task/4251/schedstat", "900 8000 9\n")
        #expect(reader.waits(uuids: [uuid]) == [uuid: 10_000])
        // The process went and another took its pid: no reading until the VM's QEMU is found.
        try put("4242/cmdline", "sleep\0100\0")
        #expect(reader.waits(uuids: [uuid]).isEmpty)
        #expect(VCPUWaitReader.isVCPUThread(comm: "CPU 3/KVM") && VCPUWaitReader.isVCPUThread(comm: "ALL CPUs/TCG"))
        #expect(!VCPUWaitReader.isVCPUThread(comm: "CPU-hog") && VCPUWaitReader.runDelayNs(schedstat: "1 2") == nil)
    }
}

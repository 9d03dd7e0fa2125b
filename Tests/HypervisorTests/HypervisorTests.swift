import Testing
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

import ExecutorCore
import Foundation
import Testing
@testable import ExecutorService

@Suite struct VMSpecTests {
    static func spec() -> VMSpec {
        var s = VMSpec(name: "a1", vni: 101, mac: "52:54:00:0a:00:01", kernel: "/k/vmlinuz", nicPort: 20000)
        s.initrd = "/k/initrd.gz"
        s.cmdline = "console=ttyS0 violin.ip=10.0.0.1/24"
        s.console = "/tmp/a1.log"
        return s
    }

    @Test func validSpecAndItsDomain() throws {
        let s = Self.spec()
        try s.validate()
        let xml = s.domainXML
        #expect(xml.contains("<domain type='qemu'>"), "TCG, never kvm")
        // The balloon reports the guest's memory from the definition on (nothing sets it at run time).
        #expect(xml.contains("<memballoon model='virtio'><stats period='2'/></memballoon>"))
        #expect(xml.contains("<interface type='udp'>"))
        #expect(xml.contains("<source address='127.0.0.1' port='20000'><local address='127.0.0.1' port='20001'/>"))
        #expect(xml.contains("<mac address='52:54:00:0a:00:01'/>"))
        #expect(xml.contains("<memory unit='MiB'>128</memory>"))
        #expect(xml.contains("append='on'"), "a migrated guest's console appends to the same file")
        #expect(xml.contains("<serial type='pty'>") && xml.contains("<console type='pty'>"), "libvirt's console stream reaches it")
        #expect(!xml.contains("type='network'"), "no uplink unless asked")
        #expect(s.portName == "vm-a1")
        // A guest that reboots (its own reboot, or a kernel panic with panic=N) boots again in
        // its domain; one that powers off is gone.
        #expect(xml.contains("<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"))
    }

    /// The head node's uplink: a second NIC, after the VIOLIN's, on the host's NAT network.
    @Test func anUplinkIsASecondNICOnTheNamedNetwork() throws {
        var s = Self.spec()
        s.uplinkNetwork = "violin-nat"
        try s.validate()
        let xml = s.domainXML
        let violin = try #require(xml.range(of: "<interface type='udp'>")), uplink = try #require(xml.range(of: "<interface type='network'><source network='violin-nat'/>"))
        #expect(violin.lowerBound < uplink.lowerBound, "the VIOLIN's NIC stays the first (eth0)")
        s.uplinkNetwork = "nat' evil='1"
        #expect(throws: VMSpec.Invalid.self) { try s.validate() }
    }

    @Test(arguments: [
        ("name", "a b"), ("name", ""), ("name", String(repeating: "x", count: 49)), ("mac", "01:00:5e:00:00:01"),
        ("mac", "52:54:00:0a:00"), ("mac", "zz:54:00:0a:00:01"), ("kernel", "vmlinuz"), ("initrd", "rel/initrd"),
        ("nic_port", "80"), ("nic_port", "65535"), ("memory_mb", "8"), ("vcpus", "0"), ("vni", "0"), ("vni", "16777216"),
    ])
    func invalidSpecsAreRefusedWithTheirKey(field: String, value: String) {
        var s = Self.spec()
        switch field {
        case "name": s.name = value
        case "mac": s.mac = value
        case "kernel": s.kernel = value
        case "initrd": s.initrd = value
        case "nic_port": s.nicPort = Int(value)!
        case "memory_mb": s.memoryMB = Int(value)!
        case "vcpus": s.vcpus = Int(value)!
        default: s.vni = UInt32(value)!
        }
        #expect(throws: VMSpec.Invalid.self) { try s.validate() }
        do { try s.validate() } catch { #expect(error.description.contains(field), "\(error) names \(field)") }
    }

    @Test func markupInPathsIsEscaped() {
        var s = Self.spec()
        s.cmdline = "a<b & 'c'"
        #expect(s.domainXML.contains("<cmdline>a&lt;b &amp; &apos;c&apos;</cmdline>"))
    }

    @Test func factsTravelInTheDomainXML() throws {
        let s = Self.spec()
        let f = try #require(VMFacts(domainXML: s.domainXML))
        #expect(f.vni == 101 && f.mac == "52:54:00:0a:00:01" && f.nicPort == 20000 && f.memoryMB == 128)
        // libvirt writes the element back its own way: double quotes, attributes reordered.
        let rewritten = """
            <domain type="qemu" id="3"><name>a1</name><metadata>
                <violin:vm xmlns:violin="https://violin.invalid/vm/1" nic_port="20000" memory_mb="128" mac="52:54:00:0a:00:01" vni="101"/>
              </metadata></domain>
            """
        #expect(VMFacts(domainXML: rewritten) == f)
        #expect(VMFacts(domainXML: "<domain><name>other</name></domain>") == nil)
        #expect(VMFacts(domainXML: "<violin:vm vni='x' mac='m' nic_port='1'/>") == nil)
        #expect(f.portBody(vm: "a1") == ["name": "vm-a1", "kind": "udp", "local": "127.0.0.1:20000",
                                         "remote": "127.0.0.1:20001", "mac": "52:54:00:0a:00:01"])
    }
}

@Suite struct TapNICSpecTests {
    /// A TAP NIC: libvirt opens the device the switch made (managed='no') and leaves it be; the
    /// choice travels in the metadata, so a migration's destination prepares the same kind of
    /// port; no nic_port is needed, but the device name must fit a network device's.
    @Test func aTapNICIsTheSwitchsDeviceAndTravels() throws {
        var s = VMSpecTests.spec()
        s.nic = .tap
        s.nicPort = 0
        try s.validate()
        let xml = s.domainXML
        #expect(xml.contains("<interface type='ethernet'>") && xml.contains("<target dev='vm-a1' managed='no'/>"), "\(xml)")
        #expect(!xml.contains("<interface type='udp'>"))
        let f = try #require(VMFacts(domainXML: xml))
        #expect(f.nic == .tap && f.portBody(vm: "a1") == ["name": "vm-a1", "kind": "vm_tap", "mac": "52:54:00:0a:00:01"])
        let port = ExecutorServer.switchPort(f, vm: "a1")
        #expect(port.kind == .vmTap(mtu: nil) && port.name == "vm-a1")
        // A UDP VM's metadata has no nic attribute: VMs made before TAP NICs read as UDP.
        #expect(VMFacts(domainXML: VMSpecTests.spec().domainXML)?.nic == .udp)
        s.name = "thirteen-char"
        #expect(throws: VMSpec.Invalid.self) { try s.validate() }
    }
}

@Suite struct RecoveryTests {
    static let places: [Presence] = [.running, .paused, .absent, .unknown]

    /// Every combination: after the actions, the VM runs in exactly one place, and the outcome
    /// says which (or the job waits, or the VM is reported lost when it is nowhere).
    @Test func everyCombinationEndsWithOneRunningCopy() {
        var checked = 0
        defer { #expect(checked == 9, "the 3 x 3 known combinations were all judged, not \(checked)") }
        for src in Self.places {
            for dst in Self.places {
                let r = Recovery.decide(source: src, destination: dst, migrationActive: false)
                if src == .running && dst == .unknown {
                    // Before post-copy a running source was never replaced: kept, whatever the destination.
                    #expect(r.outcome == .rolledBack && !r.destroySource && !r.resumeDestination, "\(r.why)")
                    continue
                }
                if src == .unknown || dst == .unknown { #expect(r.outcome == .wait, "\(src)/\(dst): \(r.why)"); continue }
                var s = src, d = dst
                if r.destroySource { s = .absent }
                if r.destroyDestination { d = .absent }
                if r.resumeSource, s != .absent { s = .running }
                if r.resumeDestination, d != .absent { d = .running }
                checked += 1
                switch r.outcome {
                case .completed:
                    #expect(s == .absent && d == .running, "\(src)/\(dst): \(r.why)")
                case .rolledBack:
                    #expect(s == .running && d == .absent, "\(src)/\(dst): \(r.why)")
                case .lost:
                    #expect(src == .absent && dst == .absent)
                case .wait:
                    Issue.record("\(src)/\(dst) waits without cause")
                }
            }
        }
    }

    @Test func aMigrationLibvirtStillRunsIsWaitedFor() {
        #expect(Recovery.decide(source: .running, destination: .paused, migrationActive: true).outcome == .wait)
    }

    /// A recovered job ends as a migration of the same outcome would have: the network cut
    /// over and migration_completed published (the policy's inventory follows that event), the
    /// source volume of a copy_storage migration deleted; a rolled-back one's destination port gone.
    @Test func recoveryDoesWhatTheMigrationWouldHaveDone() {
        let completed = Recovery.decide(source: .paused, destination: .running, migrationActive: false)
        #expect(completed.effects(copyStorage: false) == [.cutOver, .journal, .publishCompleted])
        #expect(completed.effects(copyStorage: true) == [.cutOver, .deleteSourceDisk, .journal, .publishCompleted])
        let back = Recovery.decide(source: .running, destination: .paused, migrationActive: false)
        #expect(back.effects(copyStorage: true) == [.removeDestinationPort, .journal, .publishFailed])
        let lost = Recovery.decide(source: .absent, destination: .absent, migrationActive: false)
        #expect(lost.effects(copyStorage: true) == [.journal, .publishFailed])
        #expect(Recovery.decide(source: .paused, destination: .unknown, migrationActive: false).effects(copyStorage: true).isEmpty)
    }

    @Test func theTable() {
        let r = Recovery.decide(source: .paused, destination: .running, migrationActive: false)
        #expect(r.outcome == .completed && r.destroySource && !r.destroyDestination && !r.resumeSource)
        #expect(Recovery.decide(source: .running, destination: .paused, migrationActive: false).destroyDestination)
        #expect(Recovery.decide(source: .paused, destination: .absent, migrationActive: false).resumeSource)
    }
}

@Suite struct JournalTests {
    @Test func jobsSurviveAReopenAndUnfinishedOnesAreFound() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let j = try Journal(path: path)
            var a = Journal.Job(id: "job-a", vm: "a1", fromHost: "h1", toHost: "h2", toExecutor: "tcp://h2:7704")
            a.state = .migrating
            a.destinationURI = "qemu+tcp://h2/system"
            try j.save(a)
            var b = Journal.Job(id: "job-b", vm: "b1", fromHost: "h1", toHost: "h3", toExecutor: "tcp://h3:7704")
            try j.save(b)
            b.state = .completed
            b.elapsedMs = 812
            b.downtimeMs = 35
            try j.save(b)
        }
        let j = try Journal(path: path)
        #expect(try j.unfinished().map(\.id) == ["job-a"])
        let b = try #require(try j.job("job-b"))
        #expect(b.state == .completed && b.elapsedMs == 812 && b.downtimeMs == 35 && b.blackoutMs == nil)
        #expect(!b.createdAt.isEmpty && b.updatedAt >= b.createdAt)
        #expect(try j.recent(limit: 1).map(\.id) == ["job-b"])
        #expect(try j.job("job-x") == nil)
    }
}

/// After a crash the mesh restores the ports of VMs that are gone: those, and only those, are stale.
@Suite struct StalePortTests {
    @Test func onlyPortsOfVMsThatAreNotHereAreStale() {
        let ports: [(vni: UInt32, name: String)] = [(1, "vm-a1"), (1, "vm-a2"), (2, "vm-b1"), (1, "probe0"), (2, "vm-b2")]
        let stale = StalePorts.find(ports: ports, present: ["a1"], busy: ["b2"])
        #expect(stale.map(\.name) == ["vm-a2", "vm-b1"], "a running VM's, a migrating VM's and a port not of a VM stay")
        // Only what two looks found.
        let later = StalePorts.find(ports: [(1, "vm-a2"), (2, "vm-b3")], present: [], busy: [])
        #expect(StalePorts.confirmed(stale, later).map(\.name) == ["vm-a2"])
    }
}

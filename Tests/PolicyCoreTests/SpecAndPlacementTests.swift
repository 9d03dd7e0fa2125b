import Foundation
import PolicyCore
import SpecFile
import Testing

/// The VIOLIN spec file: the documented example reads as documented; every kind of mistake is
/// refused naming its key and line.
@Suite struct SpecFileTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("compose/violin-spec.yaml").path

    @Test func theExampleReadsAsDocumented() throws {
        let spec = try SpecFile.parse(try String(contentsOfFile: Self.example, encoding: .utf8))
        #expect(spec.name == "lab" && spec.homeDomain == "d1" && spec.head == "head" && spec.placement == .pack)
        #expect(spec.vms.map(\.name) == ["head", "db", "w-1", "w-2", "w-3", "w-4"])
        #expect(spec.vms.map(\.memoryMB) == [128, 256, 96, 96, 96, 96])
        #expect(spec.vms.allSatisfy { $0.image == "tiny" && $0.vcpus == 1 })
        #expect(spec.vms[1].ip == "10.0.0.2" && spec.antiAffinity == [["head", "db"]])
    }

    /// `nic: tap` reads as a TAP NIC for every VM; without it, UDP; it cannot change in place.
    @Test func aSpecChoosesItsVMsNIC() throws {
        let tap = try SpecFile.parse("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\nnic: tap\n")
        let udp = try SpecFile.parse("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\n")
        #expect(tap.nic == .tap && udp.nic == .udp)
        guard case .failure(let e) = ViolinSpec.change(from: udp, to: tap) else { Issue.record("a NIC changed in place"); return }
        #expect(e.key == "nic")
    }


    @Test(arguments: [
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\ncolour: blue\n", "colour", 5),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\nrestart: sometimes\n", "restart", 5),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\nuplink: wifi\n", "uplink", 5),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\nnic: vhost\n", "nic", 5),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: thirteen-char}]\nnic: tap\n", "nic", 5),
        ("name: a\nhome_domain: d1\nimage: t\nvms:\n  - name: x\n    memory_mb: 9\n", "vms[0].memory_mb", 6),
        ("name: a\nhome_domain: d1\nimage: t\nvms:\n  - name: x\n    memory: 64\n", "vms[0].memory", 6),
        ("home_domain: d1\nimage: t\nvms: [{name: x}]\n", "name", 1),
        ("name: A_B\nhome_domain: d1\nimage: t\nvms: [{name: x}]\n", "name", 1),
        ("name: a\nhome_domain: d1\nimage: t\nvms:\n  - name: x\n  - name: x\n", "vms[1].name", 6),
        ("name: a\nhome_domain: d1\nimage: t\nhead: y\nvms: [{name: x}]\n", "head", 4),
        ("name: a\nhome_domain: d1\nvms:\n  - name: x\n", "vms[0].image", 4),
        ("name: a\nhome_domain: d1\nimage: t\nvms:\n  - name: x\n    host: h1\n    domain: d2\n", "vms[0].domain", 7),
        ("name: a\nhome_domain: d1\nimage: t\nvms:\n  - name: x\n    ip: 10.0.0.300\n", "vms[0].ip", 6),
        ("name: a\nhome_domain: d1\nimage: t\nworkers: {count: 0}\n", "workers.count", 4),
        ("name: a\nhome_domain: d1\nimage: t\nworkers: {name: w}\n", "workers.count", 4),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\nplacement: scatter\n", "placement", 5),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}, {name: y}]\nanti_affinity:\n  - [x, z]\n", "anti_affinity[0]", 6),
        ("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}]\nanti_affinity:\n  - [x]\n", "anti_affinity[0]", 6),
        ("name: a\nhome_domain: d1\nimage: t\n", "vms", 1),
        ("name: a\nhome_domain: d1\nimage: t\nvms: {name: x}\n", "vms", 4),
        ("name: a\nname: b\nhome_domain: d1\nimage: t\nvms: [{name: x}]\n", "name", 2),
        ("- just\n- a list\n", "(document)", 1),
        ("name: [unclosed\n", "(document)", 2),
    ])
    func mistakesAreRefusedByKeyAndLine(_ c: (String, String, Int)) {
        do {
            let spec = try SpecFile.parse(c.0)
            Issue.record("accepted: \(spec)")
        } catch {
            #expect(error.key == c.1 && error.line == c.2, "\(c.0.debugDescription): \(error)")
        }
    }
}

/// Placement as a pure function: properties over random inventories and specs, then the rules
/// one by one.
@Suite struct PlacementTests {
    func randomCase(_ seed: UInt64) -> (ViolinSpec, [Placement.Host], Set<UInt32>) {
        var r = SeededRandom(seed: seed)
        let hosts = (0..<(2 + r.next(8))).map { i in
            var h = Placement.Host(id: "h\(i)", domain: "d\(r.next(3) + 1)", freeMB: 256 + 128 * r.next(24),
                                   images: r.next(4) == 0 ? ["other"] : ["tiny", "big"])
            h.draining = r.next(10) == 0
            // A VM's NIC takes two ports (nic_port and nic_port + 1), wherever it starts.
            h.usedPorts = Set((0..<r.next(4)).map { _ in 20_000 + r.next(8) })
            return h
        }
        let vms = (0..<(1 + r.next(10))).map { i in
            var vm = ViolinSpec.VM(name: "vm\(i)", memoryMB: 64 * (1 + r.next(8)), vcpus: 1, image: r.next(5) == 0 ? "big" : "tiny")
            if r.next(6) == 0 { vm.domain = "d\(r.next(3) + 1)" }
            if r.next(8) == 0 { vm.host = "h\(r.next(hosts.count))" }
            if vm.host != nil { vm.domain = nil }
            return vm
        }
        var spec = ViolinSpec(name: "v", homeDomain: "d\(r.next(3) + 1)", head: vms[r.next(vms.count)].name, vms: vms)
        spec.placement = r.next(2) == 0 ? .pack : .spread
        if vms.count >= 3, r.next(2) == 0 { spec.antiAffinity = [[vms[0].name, vms[1].name, vms[2].name]] }
        return (spec, hosts, Set((1...UInt32(1 + r.next(5))).filter { _ in r.next(2) == 0 }))
    }

    @Test func propertiesHoldOverRandomInventories() {
        var placedCount = 0, refusedCount = 0
        for seed in UInt64(1)...600 {
            let (spec, hosts, used) = randomCase(seed)
            // Ports bound on hosts that do not answer now (VMs there, old copies of remade ones).
            let held: Set<Int> = seed % 3 == 0 ? [20_000 + Int(seed % 9)] : []
            let result = Placement.place(spec, hosts: hosts, usedVNIs: used, heldPorts: held)
            #expect(result == Placement.place(spec, hosts: hosts, usedVNIs: used, heldPorts: held), "seed \(seed): the same input, another plan")
            guard case .success(let plan) = result else {
                if case .failure(let refusal) = result { #expect(!refusal.reason.isEmpty) }
                refusedCount += 1
                continue
            }
            placedCount += 1
            let byID = Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, $0) })
            #expect(!used.contains(plan.vni), "seed \(seed): VNI \(plan.vni) is taken")
            #expect(Set(plan.vms.map(\.mac)).count == plan.vms.count, "seed \(seed): a MAC given twice")
            #expect(plan.vms.map(\.vm.name) == spec.vms.map(\.name))
            var memory: [String: Int] = [:], ports: Set<Int> = []
            let usedAnywhere = Set(hosts.flatMap(\.usedPorts)).union(held)
            for p in plan.vms {
                let h = byID[p.host]!
                memory[p.host, default: 0] += p.vm.memoryMB + Placement.defaultOverheadMB
                // Its two ports are nobody else's on any host (it keeps them when it migrates): not a
                // VM's before, not another of this plan's.
                let pairs = usedAnywhere.union(ports)
                #expect(!pairs.contains { abs($0 - p.nicPort) <= 1 }, "seed \(seed): port \(p.nicPort) overlaps \(pairs.sorted())")
                ports.insert(p.nicPort)
                #expect(!h.draining && (h.images?.contains(p.vm.image) ?? true), "seed \(seed): \(p.vm.name) on \(p.host)")
                if p.vm.name == spec.head { #expect(p.domain == spec.homeDomain, "seed \(seed): the head left home") }
                if let pin = p.vm.host { #expect(p.host == pin) }
                if let pin = p.vm.domain { #expect(p.domain == pin) }
            }
            for (h, m) in memory { #expect(m <= byID[h]!.freeMB, "seed \(seed): \(h) over its free memory") }
            for g in spec.antiAffinity {
                let on = plan.vms.filter { g.contains($0.vm.name) }.map(\.host)
                #expect(Set(on).count == on.count, "seed \(seed): anti-affinity broken")
            }
        }
        #expect(placedCount > 100 && refusedCount > 20, "placed \(placedCount), refused \(refusedCount): the cases must exercise both")
    }

    func hosts(_ spec: [(String, String, Int)]) -> [Placement.Host] {
        spec.map { Placement.Host(id: $0.0, domain: $0.1, freeMB: $0.2) }
    }

    @Test func packFillsTheFewestHostsAndSpreadSpreads() throws {
        var spec = ViolinSpec(name: "v", homeDomain: "d1", head: "a", vms: ["a", "b", "c", "d"].map {
            ViolinSpec.VM(name: $0, memoryMB: 128, vcpus: 1, image: "tiny") })
        let inventory = hosts([("h1", "d1", 4096), ("h2", "d1", 4096), ("h3", "d2", 8192)])
        let packed = try Placement.place(spec, hosts: inventory, usedVNIs: [1, 2]).get()
        #expect(Set(packed.vms.map(\.host)) == ["h1"] && packed.vni == 3)
        #expect(packed.vms.map(\.mac) == ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:00:00:04"])
        #expect(packed.vms.map(\.nicPort) == [20_000, 20_002, 20_004, 20_006])
        #expect(packed.vms[1].reason.contains("already there"))
        spec.placement = .spread
        let spread = try Placement.place(spec, hosts: inventory, usedVNIs: []).get()
        #expect(spread.vms.map(\.host).sorted() == ["h1", "h1", "h2", "h2"], "spread stays home, evenly")
    }

    /// `traffic` groups: VMs that talk share a host where they fit — even under `spread` —
    /// else a domain; the reason names who they talk with; a group that is also kept apart is
    /// refused when the spec is read.
    @Test func vmsThatTalkArePlacedTogether() throws {
        var spec = ViolinSpec(name: "v", homeDomain: "d1", head: "a", vms: ["a", "b", "c", "d"].map {
            ViolinSpec.VM(name: $0, memoryMB: 128, vcpus: 1, image: "tiny") })
        spec.placement = .spread
        spec.traffic = [["b", "d"]]
        let inventory = hosts([("h1", "d1", 4096), ("h2", "d1", 4096), ("h3", "d2", 8192)])
        let plan = try Placement.place(spec, hosts: inventory, usedVNIs: []).get()
        let at = Dictionary(uniqueKeysWithValues: plan.vms.map { ($0.vm.name, $0.host) })
        #expect(at["b"] == at["d"], "\(at)")
        #expect(plan.vms.first { $0.vm.name == "d" }?.reason.contains("talks with b") == true)
        // No room for the mate on its host: the same domain, not the other.
        // (b is pinned to h3 in d2, which has room for b alone; pack alone would put d at home, on h1.)
        let tight = hosts([("h1", "d1", 4096), ("h3", "d2", 250), ("h4", "d2", 4096)])
        var packed = spec
        packed.placement = .pack
        packed.vms = [ViolinSpec.VM(name: "a", memoryMB: 128, vcpus: 1, image: "tiny", host: "h1"),
                      ViolinSpec.VM(name: "b", memoryMB: 128, vcpus: 1, image: "tiny", host: "h3"),
                      ViolinSpec.VM(name: "d", memoryMB: 128, vcpus: 1, image: "tiny")]
        let near = try Placement.place(packed, hosts: tight, usedVNIs: []).get()
        #expect(near.vms.first { $0.vm.name == "d" }?.host == "h4", "\(near.vms.map { ($0.vm.name, $0.host) })")
        packed.traffic = []
        #expect(try Placement.place(packed, hosts: tight, usedVNIs: []).get().vms.first { $0.vm.name == "d" }?.host == "h1")
        #expect(throws: SpecError.self) {
            try SpecFile.parse("name: a\nhome_domain: d1\nimage: t\nvms: [{name: x}, {name: y}]\ntraffic: [[x, y]]\nanti_affinity: [[x, y]]\n")
        }
    }

    /// `violin apply`: only VMs added or removed; every other change is refused, naming it.
    @Test func aRunningVIOLINChangesOnlyByItsVMs() throws {
        let old = ViolinSpec(name: "v", homeDomain: "d1", head: "a", vms: ["a", "b", "c"].map {
            ViolinSpec.VM(name: $0, memoryMB: 128, vcpus: 1, image: "tiny", ip: $0 == "a" ? "10.0.0.1" : nil) })
        var grown = old
        grown.vms.removeAll { $0.name == "b" }
        grown.vms.append(ViolinSpec.VM(name: "d", memoryMB: 256, vcpus: 2, image: "tiny"))
        let change = try ViolinSpec.change(from: old, to: grown).get()
        #expect(change.added.map(\.name) == ["d"] && change.removed == ["b"])
        let none = try ViolinSpec.change(from: old, to: old).get()
        #expect(none.added.isEmpty && none.removed.isEmpty)
        let edits: [(String, (inout ViolinSpec) -> Void)] = [
            ("home_domain", { $0.homeDomain = "d2" }), ("head", { $0.head = "c" }), ("placement", { $0.placement = .spread }),
            ("anti_affinity", { $0.antiAffinity = [["a", "c"]] }), ("a.memory_mb", { $0.vms[0].memoryMB = 256 }),
            ("c.vcpus", { $0.vms[2].vcpus = 2 }), ("a.image", { $0.vms[0].image = "big" }), ("a.ip", { $0.vms[0].ip = "10.0.0.9" }),
            ("b.host", { $0.vms[1].host = "h2" }), ("c.domain", { $0.vms[2].domain = "d2" }),
        ]
        for (key, edit) in edits {
            var changed = old
            edit(&changed)
            guard case .failure(let e) = ViolinSpec.change(from: old, to: changed) else { Issue.record("\(key) changed in place"); continue }
            #expect(e.key == key && e.reason.contains("cannot change in place"), "\(key): \(e)")
        }
    }

    /// VMs added to a running VIOLIN: placed around its VMs, in its VNI, with MACs and ports
    /// none of them has, anti-affinity counted against the VMs already there.
    @Test func addedVMsArePlacedAroundTheRunningOnes() throws {
        var spec = ViolinSpec(name: "v", homeDomain: "d1", head: "a", vms: ["a", "b"].map {
            ViolinSpec.VM(name: $0, memoryMB: 128, vcpus: 1, image: "tiny") })
        var inventory = hosts([("h1", "d1", 4096), ("h2", "d1", 4096)])
        let first = try Placement.place(spec, hosts: inventory, usedVNIs: [1]).get()
        #expect(Set(first.vms.map(\.host)) == ["h1"])
        inventory[0].usedPorts = Set(first.vms.map(\.nicPort))
        // b is removed, c and d are added; d may not share a host with a.
        spec.vms = [spec.vms[0], ViolinSpec.VM(name: "c", memoryMB: 128, vcpus: 1, image: "tiny"),
                    ViolinSpec.VM(name: "d", memoryMB: 128, vcpus: 1, image: "tiny")]
        spec.antiAffinity = [["a", "d"]]
        let existing = Placement.Existing(vni: first.vni, vms: ["a": .init(host: "h1", mac: first.vms[0].mac), "b": .init(host: "h1", mac: first.vms[1].mac)])
        let more = try Placement.place(spec, hosts: inventory, usedVNIs: [], existing: existing).get()
        #expect(more.vni == first.vni && more.vms.map(\.vm.name) == ["c", "d"], "\(more)")
        #expect(more.vms.first { $0.vm.name == "c" }?.host == "h1", "pack: beside the running ones")
        #expect(more.vms.first { $0.vm.name == "d" }?.host == "h2", "anti-affinity with a, which runs on h1")
        let macs = first.vms.map(\.mac) + more.vms.map(\.mac)
        #expect(Set(macs).count == macs.count, "a MAC given twice: \(macs)")
        let ports = first.vms.map(\.nicPort) + more.vms.map(\.nicPort)
        #expect(Set(ports.flatMap { [$0, $0 + 1] }).count == ports.count * 2, "a NIC port given twice: \(ports)")
    }

    @Test func refusalsSayWhyInNumbers() {
        let spec = ViolinSpec(name: "v", homeDomain: "d1", head: "a", vms: [ViolinSpec.VM(name: "a", memoryMB: 512, vcpus: 1, image: "tiny")])
        let result = Placement.place(spec, hosts: hosts([("h1", "d1", 300), ("h2", "d1", 256), ("h3", "d2", 9000)]), usedVNIs: [])
        guard case .failure(let r) = result else { Issue.record("placed the head outside home: \(result)"); return }
        #expect(r.reason == "needs 576 MiB in d1 (512 + 64 overhead); the most free is 300 MiB on h1", "\(r)")
        var pinned = spec
        pinned.vms[0].image = "big"
        var withImages = hosts([("h1", "d1", 4096)])
        withImages[0].images = ["tiny"]
        guard case .failure(let r2) = Placement.place(pinned, hosts: withImages, usedVNIs: []) else { Issue.record("no image, placed"); return }
        #expect(r2.reason.contains("image big"), "\(r2)")
    }

    @Test func antiAffinityAndDrainingAreRespected() throws {
        var spec = ViolinSpec(name: "v", homeDomain: "d1", head: "a", vms: ["a", "b"].map {
            ViolinSpec.VM(name: $0, memoryMB: 128, vcpus: 1, image: "tiny") })
        spec.antiAffinity = [["a", "b"]]
        var inventory = hosts([("h1", "d1", 4096), ("h2", "d1", 4096), ("h3", "d1", 4096)])
        inventory[1].draining = true
        let plan = try Placement.place(spec, hosts: inventory, usedVNIs: []).get()
        #expect(Set(plan.vms.map(\.host)) == ["h1", "h3"])
        inventory[2].draining = true
        guard case .failure(let r) = Placement.place(spec, hosts: inventory, usedVNIs: []) else { Issue.record("two on one host"); return }
        #expect(r.reason.contains("anti-affinity"), "\(r)")
    }
}

/// The inventory against the hosts' answers.
@Suite struct ReconcileTests {
    @Test func driftIsFoundAndLeftAloneWhereItShould() {
        let placement = ["a1": "h1", "a2": "h1", "a3": "h2", "a4": "h2", "a5": "h3"]
        let drift = Reconcile.drift(placement: placement, reports: [
            "h1": ["a1"],                     // a2 gone from h1 ...
            "h2": ["a2", "a3", "a5", "x9"],   // ... runs on h2: moved; x9 no VIOLIN owns; a4 nowhere
            "h3": ["a3", "a5"],               // a3 and a5 on two hosts: migrations under way, left alone
        ])
        #expect(drift == [.moved(vm: "a2", from: "h1", to: "h2"), .missing(vm: "a4", host: "h2"), .stray(vm: "x9", host: "h2")])
        // A host that does not answer may hold a4: not reported missing; the rest still found.
        let someSilent: [String: Set<String>?] = ["h1": ["a1"], "h2": ["a2", "a3", "a5"], "h3": nil]
        let partial = Reconcile.drift(placement: placement, reports: someSilent)
        #expect(partial == [.moved(vm: "a2", from: "h1", to: "h2"), .moved(vm: "a5", from: "h3", to: "h2")])
        #expect(Reconcile.drift(placement: placement, reports: ["h1": ["a1", "a2"], "h2": ["a3", "a4"], "h3": ["a5"]]).isEmpty)
    }

    /// A VM its host answers without and no answering host runs: where that host's journal says
    /// it went, if that host does not answer (silent, or lost and no longer asked).
    @Test func aVMFollowsItsHostsJournalToASilentHost() {
        let placement = ["a1": "h1", "a2": "h1", "a3": "h2", "a4": "h2"]
        let reports: [String: Set<String>?] = ["h1": [], "h2": ["a3", "a2"], "h3": nil]
        // a1 and a4 are unaccounted (a2 runs on h2: an ordinary move; a3 where it should be).
        let unaccounted = Reconcile.unaccounted(placement: placement, reports: reports)
        #expect(unaccounted == ["a1": "h1", "a4": "h2"])
        // h1 migrated a1 to h3 (silent) and to h4 (lost: no longer asked); h2 sent a4 to h1, which answers without it.
        #expect(Reconcile.departed(unaccounted, reports: reports, destinations: ["h1": ["a1": "h3"], "h2": ["a4": "h1"]])
                == [.departed(vm: "a1", from: "h1", to: "h3")])
        #expect(Reconcile.departed(unaccounted, reports: reports, destinations: ["h1": ["a1": "h4"]]) == [.departed(vm: "a1", from: "h1", to: "h4")])
        #expect(Reconcile.departed(unaccounted, reports: reports, destinations: [:]).isEmpty, "no journal, no guess")
        #expect(Reconcile.Drift.departed(vm: "a1", from: "h1", to: "h3").kind == "moved")
    }

    /// Missing counts only when two looks in a row found it so (wherever the inventory put it).
    @Test func missingMeansInTwoLooksInARow() {
        let now: [Reconcile.Drift] = [.missing(vm: "a1", host: "h1"), .missing(vm: "a2", host: "h2"), .moved(vm: "a3", from: "h1", to: "h2")]
        let before: Set<Reconcile.Drift> = [.missing(vm: "a2", host: "h1"), .missing(vm: "a4", host: "h1"), .moved(vm: "a1", from: "h1", to: "h2")]
        #expect(Reconcile.missingTwice(now, before) == ["a2"])
        #expect(Reconcile.missingTwice(now, []).isEmpty)
    }
}

import Foundation
import Testing
import VIOLINProtocol

/// violin-monitor on a real libvirt daemon with a real QEMU guest (TCG): a CPU-burning guest
/// shows high CPU in the samples, and a balloon change is seen through libvirt.
@Suite(.serialized) struct QemuMonitorTests {
    static let script = packageRoot + "/compose/lab-libvirt.sh"
    static let cache = "/var/cache/violin-test-guest"

    @Test(.timeLimit(.minutes(5))) func burningGuestAndBalloon() throws {
        let scratch = try Scratch("qemu")
        let lab = scratch.file("lab")
        defer {
            _ = try? sh("bash \(Self.script) stop \(lab)", timeout: 60)
            scratch.cleanup()
        }
        let built = try sh("bash \(Self.script) guest \(Self.cache)", timeout: 300)
        try #require(built.status == 0, "guest: \(built.err)")
        // With the cgroup v1 cpu controller, so a CPU weight has somewhere to take effect.
        let daemon = try sh("mkdir -p \(lab) && VIOLIN_LAB_CGROUPS=cpu bash \(Self.script) daemon \(lab)", timeout: 120)
        let log = (try? String(contentsOfFile: lab + "/libvirtd.out", encoding: .utf8)) ?? "(no log)"
        try #require(daemon.status == 0, "libvirtd: \(daemon.err) \(log.suffix(600))")
        let booted = try sh("bash \(Self.script) boot \(lab) \(Self.cache) burner", timeout: 60)
        try #require(booted.status == 0, "boot: \(booted.err)")
        let uri = "qemu+unix:///system?socket=\(lab)/sock/libvirt-sock"

        let bus = try Spawned("violin-bus", ["--listen", scratch.ipc("bus"), "--publishers", scratch.ipc("pub"),
                                             "--subscribers", scratch.ipc("sub")])
        defer { bus.destroy() }
        let watch = try Spawned("violin", ["watch", "--bus", scratch.ipc("sub"), "monitor.", "--timeout", "120"])
        defer { watch.destroy() }
        let monitor = try Spawned("violin-monitor", ["--listen", scratch.ipc("monitor"), "--bus", scratch.ipc("pub"),
                                                     "--libvirt-uri", uri, "--sample-interval", "0.5"])
        defer { monitor.destroy() }

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
        // CPU weight: libvirt sets the guest's cgroup cpu.shares, which the kernel reads back.
        let group = try sh("ls -d /sys/fs/cgroup/cpu/machine/qemu-*-burner.libvirt-qemu")
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
    }
}

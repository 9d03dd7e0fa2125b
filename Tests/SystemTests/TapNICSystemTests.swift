import Foundation
import TestSupport
import Testing
import VIOLINProtocol

extension MigrationSystemTests {
    /// A VM whose NIC is a TAP device (libvirt `type='ethernet'`) instead of QEMU's UDP socket:
    /// the switch makes the device (`vm_tap`), QEMU opens it; the destination's switch makes it
    /// again before a live migration, so the guest finds it there; pings and a TCP stream go on
    /// across the move, and the devices go with their ports. Beside it, in the same VIOLIN, a VM
    /// with a UDP NIC: both kinds talk.
    @Test(.timeLimit(.minutes(8))) func aTapNICMigratesWithItsConnections() throws {
        let lab = try LocalLab("tapnic")
        defer { lab.teardown() }
        let run = lab.run
        let tag = try lab.lab("ns \(run) h1").out.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "-h1", with: "")
        func call(_ host: Int, _ type: String, _ body: String) throws -> (status: Int32, out: String, err: String) {
            try lab.violin("call tcp://10.77.0.\(host):7704 \(type) '\(body)' --timeout 120 \(lab.keys("h\(host)"))", timeout: 130)
        }
        func mesh(_ host: Int, _ type: String, _ body: String) throws -> JSONValue {
            let r = try lab.violin("call tcp://10.77.0.\(host):7701 \(type) '\(body)' --timeout 30 \(lab.keys("h\(host)"))", timeout: 40)
            try #require(r.status == 0, "\(type) at h\(host)'s mesh: \(r.err)")
            return try Self.json(r.out)
        }
        func must(_ command: String) throws {
            let r = try sh(command)
            try #require(r.status == 0, "\(command): \(r.err)")
        }
        func virsh(_ host: Int, _ args: String) throws -> String {
            try sh("virsh -c 'qemu+unix:///system?socket=\(run)/h\(host)/libvirt/sock/libvirt-sock' \(args)").out
        }
        /// The kind of TAP device `name` is in host `h`'s namespace (nil: none there).
        func tapOn(_ host: Int, _ name: String) throws -> String? {
            let r = try sh("ip netns exec \(tag)-h\(host) cat /sys/class/net/\(name)/tun_flags")
            return r.status == 0 ? r.out.trimmingCharacters(in: .whitespacesAndNewlines) : nil
        }
        let vni = 83
        let boot = "\"kernel\":\"\(Self.cache)/vmlinuz\",\"initrd\":\"\(Self.cache)/initrd.gz\""
        let made = try call(1, "create_vm", #"{"name":"t1","vni":\#(vni),"mac":"52:54:00:83:00:01",\#(boot),"nic":"tap","cmdline":"console=ttyS0 quiet violin.ip=10.83.0.1/24"}"#)
        try #require(made.status == 0, "create_vm t1 (TAP NIC): \(made.err)")
        #expect(try Self.json(made.out)["port"]?["kind"] == "vm_tap", "\(made.out)")
        // Joined through h1's mesh, with its key (as the policy sends it).
        let h1Key = try #require(try String(contentsOfFile: "\(run)/keys/h1.pub", encoding: .utf8).split(separator: "\n")
            .first { $0.hasPrefix("public-key = ") }.map { String($0.dropFirst("public-key = ".count)) })
        let seed = #""seed":"tcp://10.77.0.1:7701","seed_key":"\#(h1Key)""#
        let udp = try call(2, "create_vm", #"{"name":"u1","vni":\#(vni),"mac":"52:54:00:83:00:02",\#(boot),"nic_port":21300,\#(seed),"cmdline":"console=ttyS0 quiet violin.ip=10.83.0.2/24"}"#)
        try #require(udp.status == 0, "create_vm u1 (UDP NIC): \(udp.err)")
        // Bad requests: a UDP NIC without its port; a TAP NIC whose device name would be too long.
        let noPort = try call(1, "create_vm", #"{"name":"t2","vni":\#(vni),"mac":"52:54:00:83:00:03",\#(boot)}"#)
        #expect(noPort.status == 1 && noPort.err.contains("nic_port is required"), "\(noPort.err)")
        let long = try call(1, "create_vm", #"{"name":"thirteen-char","vni":\#(vni),"mac":"52:54:00:83:00:04",\#(boot),"nic":"tap"}"#)
        #expect(long.status == 1 && long.err.contains("at most 12 characters"), "\(long.err)")

        // The domain's NIC is the TAP, the switch made it and holds no queue of it (QEMU does).
        let xml = try virsh(1, "dumpxml t1")
        #expect(xml.contains("<interface type='ethernet'>") && xml.contains("<target dev='vm-t1' managed='no'/>"), "\(xml)")
        #expect(try tapOn(1, "vm-t1") != nil, "no TAP vm-t1 on h1")

        // A probe namespace on h3, on a TAP port of the VIOLIN (the operator's window into it).
        let probeNS = "\(tag)-p83", probeDev = "\(tag.suffix(6))p83"
        try must("ip netns add \(probeNS) && ip -n \(probeNS) link set lo up")
        defer { _ = try? sh("ip netns pids \(probeNS) | xargs -r kill -9; ip netns del \(probeNS)") }
        _ = try mesh(3, "add_port", #"{"vni":\#(vni),"name":"\#(probeDev)",\#(seed)}"#)
        try must("ip -n \(tag)-h3 link set \(probeDev) netns \(probeNS) && ip -n \(probeNS) addr add 10.83.0.100/24 dev \(probeDev) && ip -n \(probeNS) link set \(probeDev) up")
        for ip in ["10.83.0.1", "10.83.0.2"] {
            #expect(eventually(deadline: 120) { (try? sh("ip netns exec \(probeNS) ping -c 1 -W 1 \(ip)").status) == 0 }, "\(ip) does not answer")
        }
        // Who talks to whom reaches the bus: h1's mesh reports its switch's pair counters.
        let traffic = try Spawned("/usr/sbin/ip", ["netns", "exec", lab.controlNamespace, "\(binDir)/violin", "watch", "--bus", "tcp://10.77.0.100:7711",
                                                    "mesh.traffic", "--timeout", "200"] + lab.keyArgs("ctl"))
        defer { traffic.destroy() }
        // The two kinds of NIC talk, guest to guest.
        let g2g = try sh("ip netns exec \(probeNS) python3 \(packageRoot)/compose/probe.py sh 10.83.0.1 'ping -c 3 -W 2 10.83.0.2' --timeout 30", timeout: 40)
        #expect(g2g.out.contains("3 packets received"), "t1 (TAP) to u1 (UDP): \(g2g.out) \(g2g.err)")

        let reported = traffic.waitForLine(timeout: 40) { line in
            guard let v = try? Self.json(line), v["topic"] == "mesh.traffic", v["body"]?["vni"]?.intValue == vni else { return false }
            return v["body"]?["pairs"]?.items.contains { $0["src"] == "52:54:00:83:00:01" && ($0["bytes"]?.intValue ?? 0) > 0 } == true
        }
        #expect(reported != nil, "no mesh.traffic with t1's frames: \(traffic.stderrText.suffix(300))")
        // A 10 ms ping and a TCP stream to t1 while it moves to h2.
        let pings = try Spawned("/usr/sbin/ip", ["netns", "exec", probeNS, "ping", "-q", "-i", "0.01", "-w", "25", "10.83.0.1"])
        defer { pings.destroy() }
        let stream = try Spawned("/usr/sbin/ip", ["netns", "exec", probeNS, "python3", "\(packageRoot)/compose/probe.py", "stream", "10.83.0.1", "--seconds", "25"])
        defer { stream.destroy() }
        let moved = try call(1, "migrate", #"{"vm":"t1","to":"h2"}"#)
        try #require(moved.status == 0, "migrate t1: \(moved.err)")
        let job = try #require(try Self.json(moved.out)["job"]?.stringValue)
        var final: JSONValue = .null
        let ended = eventually(deadline: 150) {
            guard let j = try? Self.json(try call(1, "job", #"{"job":"\#(job)"}"#).out) else { return false }
            final = j
            return ["completed", "failed", "cancelled", "rolled_back"].contains(j["state"]?.stringValue ?? "")
        }
        try #require(ended && final["state"] == "completed", "the migration: \(final)")
        let summary = try #require(pings.waitForLine(timeout: 60) { $0.contains("packets transmitted") }, "ping ended without its summary")
        let tcpLine = try #require(stream.waitForLine(timeout: 60) { $0.hasPrefix("{") }, "the stream ended without its report: \(stream.stderrText)")
        // "N packets transmitted, M received, ..."
        let words = summary.split(separator: " ").map(String.init)
        func before(_ word: String) -> Int { words.firstIndex { $0.hasPrefix(word) }.flatMap { $0 > 0 ? Int(words[$0 - 1]) : nil } ?? 0 }
        let sent = before("packets"), received = before("received")
        let tcp = try Self.json(tcpLine)
        let blackout = final["blackout_ms"]?.numberValue
        print("TAP NIC migration: elapsed \(final["elapsed_ms"]?.intValue ?? -1) ms, downtime \(final["downtime_ms"]?.intValue ?? -1) ms, "
              + "blackout \(blackout.map { String(Int($0)) } ?? "-") ms, \(sent - received) of \(sent) pings lost, TCP survived \(tcp["survived"] == true)")
        // Pings go on after the move (most of them answered), and the stream survives it.
        #expect(sent > 1000 && received > sent * 8 / 10, "\(summary)")
        #expect(tcp["survived"] == true && tcp["corrupt"] == 0, "\(tcp)")
        #expect(blackout != nil, "the switches saw no frame of t1 on both sides: \(final)")

        // The guest found its TAP on h2; h1's went with its port.
        #expect(try virsh(2, "list --name").split(separator: "\n").contains("t1"))
        let ports = try mesh(2, "ports", "{}")
        let t1Port = ports["violins"]?.items.first { $0["vni"]?.intValue == vni }
        #expect(t1Port?["ports"]?.items.contains("vm-t1") == true, "\(ports)")
        #expect(try tapOn(2, "vm-t1") != nil, "no TAP vm-t1 on h2")
        #expect(eventually(deadline: 20) { (try? tapOn(1, "vm-t1")) == nil }, "the TAP vm-t1 is left on h1")

        // Destroyed: its device goes too.
        #expect(try call(2, "destroy_vm", #"{"name":"t1"}"#).status == 0)
        #expect(eventually(deadline: 20) { (try? tapOn(2, "vm-t1")) == nil }, "the TAP vm-t1 is left on h2 after the VM was destroyed")
    }
}

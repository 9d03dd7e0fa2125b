import Foundation
import TestSupport
import Testing

/// Runs `/bin/sh -c command` to completion within `timeout` seconds.
@discardableResult
func sh(_ command: String, timeout: Double = 30) throws -> (status: Int32, out: String, err: String) {
    try run("/bin/sh", ["-c", command], timeout: timeout)
}

struct LabError: Error, CustomStringConvertible {
    let description: String
}

/// Test hosts as network namespaces on one underlay bridge, each name prefixed so two runs
/// cannot collide. Everything it made is removed by `teardown()`: processes by PID first,
/// then the namespaces (which takes their veths and TAPs with them).
final class Lab {
    let prefix: String
    let scratch: Scratch
    let subnet: String        // underlay /24, e.g. "172.31.77"
    private(set) var namespaces: [String] = []
    private(set) var processes: [Spawned] = []

    init(_ name: String, subnet: String = "172.31.77") throws {
        prefix = "v" + String(UUID().uuidString.lowercased().prefix(5))
        scratch = try Scratch(name)
        self.subnet = subnet
        try addNamespace(underlay)
        try must("ip -n \(underlay) link add br0 type bridge && ip -n \(underlay) link set br0 up")
    }

    var underlay: String { "\(prefix)-u" }
    func host(_ i: Int) -> String { "\(prefix)-h\(i)" }
    func hostIP(_ i: Int) -> String { "\(subnet).\(i)" }

    @discardableResult
    func must(_ command: String, timeout: Double = 30) throws -> String {
        let r = try sh(command, timeout: timeout)
        guard r.status == 0 else { throw LabError(description: "`\(command)` failed (\(r.status)): \(r.err)") }
        return r.out
    }

    func addNamespace(_ name: String) throws {
        try must("ip netns add \(name) && ip -n \(name) link set lo up")
        namespaces.append(name)
    }

    /// A host namespace with `hostIP(i)` on a veth to the underlay bridge.
    func addHost(_ i: Int) throws {
        let ns = host(i)
        try addNamespace(ns)
        let outside = "\(prefix)h\(i)"
        try must("""
            ip link add \(outside) netns \(underlay) type veth peer name u0 netns \(ns) && \
            ip -n \(underlay) link set \(outside) master br0 up && \
            ip -n \(ns) addr add \(hostIP(i))/24 dev u0 && ip -n \(ns) link set u0 up
            """)
    }

    /// Starts `executable` inside namespace `ns`; it is killed at teardown.
    @discardableResult
    func spawn(in ns: String, _ executable: String, _ arguments: [String]) throws -> Spawned {
        let path = executable.hasPrefix("/") ? executable : "\(binDir)/\(executable)"
        let p = try Spawned("/usr/sbin/ip", ["netns", "exec", ns, path] + arguments)
        processes.append(p)
        return p
    }

    /// Waits until `device` exists in namespace `ns`.
    func waitForDevice(_ device: String, in ns: String, timeout: Double = 10) throws {
        let ok = try eventually(deadline: timeout) { try sh("ip -n \(ns) link show \(device)").status == 0 }
        if !ok { throw LabError(description: "\(device) did not appear in \(ns)") }
    }

    /// Moves `device` from `from` into a new "VM" namespace `vm` and gives it an address.
    func makeVM(_ vm: String, device: String, from: String, mac: String, ipv4: String, ipv6: String? = nil, mtu: Int = 1450) throws {
        try addNamespace(vm)
        try must("ip -n \(from) link set \(device) netns \(vm)")
        try must("ip -n \(vm) link set \(device) name eth0 && ip -n \(vm) link set eth0 address \(mac) mtu \(mtu) && ip -n \(vm) addr add \(ipv4) dev eth0 && ip -n \(vm) link set eth0 up")
        if let ipv6 { try must("ip -n \(vm) addr add \(ipv6) dev eth0 nodad") }
    }

    func teardown() {
        for p in processes { p.destroy() }
        // Processes started by our processes (switches under a mesh) carry the scratch path.
        _ = try? sh("pkill -9 -f \(scratch.path)")
        for ns in namespaces.reversed() { _ = try? sh("ip netns del \(ns)") }
        scratch.cleanup()
    }
}

/// The local launcher (compose/lab.sh) as the tests use it: a control node and three libvirt
/// hosts as namespaces, up in the constructor, down (processes, guests, namespaces, files) in
/// `teardown()`.
final class LocalLab {
    static let guestCache = "/var/cache/violin-test-guest"
    let scratch: Scratch
    let run: String
    let command = "VIOLIN_BIN='\(binDir)' bash '\(packageRoot)/compose/lab.sh'"
    private(set) var controlNamespace = ""

    /// Keyed, as the lab is by default: every node gets a CURVE key with its role and serves
    /// over CURVE; `keys: false` runs it open (`lab.sh up --open`).
    init(_ name: String, keys: Bool = true, observe: Bool = false) throws {
        scratch = try Scratch(name)
        run = scratch.file("lab")
        do {
            let built = try sh("bash '\(packageRoot)/compose/lab-libvirt.sh' guest \(Self.guestCache)", timeout: 300)
            guard built.status == 0 else { throw LabError(description: "guest: \(built.err)") }
            let up = try sh("\(observe ? "VIOLIN_LAB_OBSERVE=1 " : "")\(command) up \(run)\(keys ? "" : " --open")", timeout: 240)
            guard up.status == 0 else {
                throw LabError(description: "lab: \(up.err) logs: \((try? sh("tail -n 5 \(run)/*/*.log").out) ?? "")")
            }
            controlNamespace = try lab("ns \(run) ctl").out.trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            teardown()
            throw error
        }
    }

    /// The operator's CURVE options for `node`'s services (the lab's admin key and the node's).
    func keys(_ node: String) -> String { keyArgs(node).joined(separator: " ") }
    func keyArgs(_ node: String) -> [String] { ["--curve-key", "\(run)/keys/admin.key", "--server-key", "\(run)/keys/\(node).pub"] }

    /// `lab.sh ARGS`.
    func lab(_ args: String, timeout: Double = 30) throws -> (status: Int32, out: String, err: String) {
        try sh("\(command) \(args)", timeout: timeout)
    }

    /// `violin ARGS` on the control node.
    func violin(_ args: String, timeout: Double = 30) throws -> (status: Int32, out: String, err: String) {
        try sh("ip netns exec \(controlNamespace) '\(binDir)/violin' \(args)", timeout: timeout)
    }

    /// The operator's CURVE options for a node's services ("" without keys).
    func curve(_ node: String) throws -> String {
        try lab("curve \(run) \(node)").out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func teardown() {
        _ = try? sh("\(command) down \(run)", timeout: 120)
        scratch.cleanup()
    }
}

/// A user at `violin console VM` on the lab's control node: what they type reaches the console
/// through a FIFO (held open, so the console sees no end of input until `detach`), what it
/// prints is read line by line.
final class ConsoleUser {
    let process: Spawned
    private let fifo: String
    private var input: Int32

    init(_ lab: LocalLab, vm: String, curve: String) throws {
        fifo = lab.scratch.file("console-\(vm)-\(UUID().uuidString.prefix(6)).in")
        guard mkfifo(fifo, 0o600) == 0 else { throw LabError(description: "mkfifo \(fifo): errno \(errno)") }
        input = open(fifo, O_RDWR | O_CLOEXEC)
        process = try Spawned("/bin/sh", ["-c", "exec ip netns exec \(lab.controlNamespace) '\(binDir)/violin' console \(vm) --control 10.77.0.100 \(curve) < '\(fifo)'"])
    }

    /// Types `line` (again every few seconds: a guest still booting has no shell on its console
    /// yet) until a line of output contains `text`.
    func type(_ line: String, until text: String, timeout: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let bytes = Array((line + "\n").utf8)
            guard write(input, bytes, bytes.count) == bytes.count else { return false }
            if process.waitForLine(timeout: min(5, max(0.1, deadline.timeIntervalSinceNow)), { $0.contains(text) }) != nil { return true }
        }
        return false
    }

    /// Ends the input: the console detaches; its exit status.
    func detach() -> Int32? {
        if input >= 0 { close(input); input = -1 }
        return process.waitExit(timeout: 30)
    }

    func end() {
        process.destroy()
        if input >= 0 { close(input); input = -1 }
        unlink(fifo)
    }
}

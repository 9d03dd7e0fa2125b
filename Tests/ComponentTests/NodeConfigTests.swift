import Foundation
import ServiceKit
import Testing
import ZeroMQ

/// Node configuration files: what they accept, what they refuse (naming key and line), and the
/// services they start.
@Suite struct NodeConfigTests {
    func parse(_ text: String, checkFiles: Bool = false) throws(ConfigError) -> NodeConfig {
        try NodeConfig.parse(text: text, path: "node.yaml", checkFiles: checkFiles, hostname: "box")
    }

    @Test func aHostAndItsServices() throws {
        let c = try parse("role: host\ndomain: d1\naddress: 10.0.0.11\ncontrol_address: 10.0.0.1\ninsecure: true\n")
        #expect(c.node == "box" && c.role == .host && c.domain == "d1")
        #expect(c.services.map(\.name) == ["mesh", "monitor", "executor"])
        let executor = c.services[2].arguments
        #expect(executor.contains("qemu+tcp://10.0.0.11/system"), "the default migration URI is the node's address")
        #expect(executor.contains("tcp://10.0.0.1:7710"), "host services publish to the control node's bus")
        #expect(c.policyEndpoint == "tcp://10.0.0.1:7703")
    }

    /// An IPv6 host: its endpoints, tunnels and migration URI carry the address in brackets.
    @Test func anIPv6HostAndItsServices() throws {
        let c = try parse("role: host\ndomain: d1\naddress: 2001:db8::11\ncontrol_address: 2001:db8::1\ninsecure: true\n")
        let mesh = c.services[0].arguments, executor = c.services[2].arguments
        #expect(mesh.contains("tcp://[2001:db8::11]:7701") && mesh.contains("2001:db8::11"), "\(mesh)")
        #expect(executor.contains("qemu+tcp://[2001:db8::11]/system") && executor.contains("tcp://[2001:db8::1]:7710"), "\(executor)")
        #expect(c.policyEndpoint == "tcp://[2001:db8::1]:7703")
        #expect(throws: ConfigError.self) { try parse("role: host\ndomain: d1\naddress: 2001:db8::zz\ncontrol_address: 2001:db8::1\ninsecure: true\n") }
        #expect(throws: ConfigError.self) { try parse("role: host\ndomain: d1\naddress: 2001:db8::1:4789:1:2:3:4:5\ncontrol_address: 2001:db8::1\ninsecure: true\n") }
    }

    /// The policy's settings in a control node's file reach the policy's command line.
    @Test func aControlNodePassesThePolicySettingsOn() throws {
        let c = try parse("role: control\naddress: 10.0.0.1\ninsecure: true\nlevers: true\nlever_settle: 20\nlink_mbit_s: 40\nhost_lost_after: 45\nhigh_demand_percent: 50\n")
        let policy = try #require(c.services.first { $0.name == "policy" }).arguments
        for (flag, value) in [("--levers", "true"), ("--lever-settle", "20"), ("--link-mbit-s", "40"), ("--host-lost-after", "45"), ("--high-demand-percent", "50")] {
            let i = policy.firstIndex(of: flag)
            #expect(i.map { policy[$0 + 1] } == value, "\(flag) in \(policy)")
        }
        #expect(throws: ConfigError.self) { try parse("role: control\naddress: 10.0.0.1\ninsecure: true\nlevers: yes\n") }
        #expect(throws: ConfigError.self) { try parse("role: control\naddress: 10.0.0.1\ninsecure: true\nhigh_demand_percent: 0\n") }
    }

    @Test func bothRolesOnOneMachine() throws {
        let c = try parse("role: both\nnode: solo\ndomain: d1\naddress: 10.0.0.5\ninsecure: true\n")
        #expect(c.services.map(\.name) == ["bus", "policy", "mesh", "monitor", "executor"])
        #expect(c.controlAddress == "10.0.0.5")
    }

    @Test(arguments: [
        ("role: host\naddress: 10.0.0.2\ncontrol_address: 10.0.0.1\n", "domain", 0),      // missing: no line
        ("role: host\ndomain: d1\naddress: 10.0.0.2\n", "control_address", 0),
        ("role: control\naddress: 10.0.0.300\n", "address", 2),
        ("role: control\naddress: 10.0.0.3\ncolour: blue\n", "colour", 3),
        ("role: leader\naddress: 10.0.0.3\n", "role", 1),
        ("address: 10.0.0.3\n", "role", 0),
        ("role: host\ndomain: d1\naddress: 10.0.0.2\ncontrol_address: 10.0.0.1\nsample_interval: -1\n", "sample_interval", 5),
        // Secure by default: reachable without a key only when the file says so.
        ("role: host\ndomain: d1\naddress: 10.0.0.2\ncontrol_address: 10.0.0.1\n", "key", 0),
        ("role: control\naddress: 10.0.0.3\ninsecure: yes\n", "insecure", 3),
    ])
    func refusedNamingKeyAndLine(text: String, key: String, line: Int) {
        do {
            _ = try parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.key == key, "\(error)")
            if line > 0 { #expect(error.source == .file(path: "node.yaml", line: line), "\(error)") }
        }
    }

    /// A node others can reach runs keyed, or open only when its file says `insecure: true`;
    /// on loopback it needs neither.
    @Test func anOpenNodeIsOnlyEverMeant() throws {
        #expect(throws: ConfigError.self) { try parse("role: control\naddress: 10.0.0.3\n") }
        do { _ = try parse("role: control\naddress: 10.0.0.3\n") } catch {
            #expect(error.key == "key" && error.reason.contains("insecure: true"), "\(error)")
        }
        #expect(try parse("role: control\naddress: 10.0.0.3\ninsecure: true\n").insecure)
        #expect(try !parse("role: control\naddress: 127.0.0.2\n").insecure, "loopback needs no key")
    }

    @Test func keyFilesAreReadAndRequiredTogether() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-node-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = "role: host\ndomain: d1\naddress: 10.0.0.2\ncontrol_address: 10.0.0.1\n"
        do {
            _ = try parse(host + "key: \(dir)/missing.key\n", checkFiles: true)
            Issue.record("a missing key file was accepted")
        } catch { #expect(error.key == "key" && error.source == .file(path: "node.yaml", line: 5)) }
        try KeyFiles.write(try CurveKeyPair.generate(), base: dir + "/h1", role: .host("h1"))
        do {
            _ = try parse(host + "key: \(dir)/h1.key\n", checkFiles: true)
            Issue.record("a host key without the control node's public key was accepted")
        } catch { #expect(error.key == "control_public_key") }
        try KeyFiles.write(try CurveKeyPair.generate(), base: dir + "/control", role: .control)
        // Without allowed_keys, a host keeps its key table from the control node's accepted keys.
        let managed = try parse(host + "key: \(dir)/h1.key\ncontrol_public_key: \(dir)/control.pub\ndata_dir: /var/lib/v\n", checkFiles: true)
        #expect(managed.managedKeyTable == "/var/lib/v/keys.table")
        #expect(managed.services.allSatisfy { $0.arguments.contains("/var/lib/v/keys.table") })
        let c = try parse(host + "key: \(dir)/h1.key\ncontrol_public_key: \(dir)/control.pub\nallowed_keys: \(dir)\n", checkFiles: true)
        #expect(c.managedKeyTable == nil)
        #expect(c.services.allSatisfy { $0.arguments.contains("--curve-allowed") })
        #expect(c.services.allSatisfy { $0.arguments.contains("--bus-public-key") })
        // Unchecked, the same file passes (files written for another machine).
        #expect((try? parse(host + "key: /nowhere/h1.key\n", checkFiles: false)) != nil)
    }
}

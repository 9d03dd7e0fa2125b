import Foundation
import ZeroMQ
import Testing
@testable import ServiceKit

@Suite struct ConfigTests {
    let description = ServiceDescription(name: "mesh", defaultListen: "tcp://127.0.0.1:7701")

    @Test func commandLineOverEnvironmentOverFileOverDefault() throws {
        let r = try ConfigResolver.resolve(
            keys: description.keys,
            commandLine: ["listen": "tcp://127.0.0.1:9001"],
            environment: ["VIOLIN_LISTEN": "tcp://127.0.0.1:9002", "VIOLIN_HEARTBEAT_INTERVAL": "2"],
            file: ["listen": ("tcp://127.0.0.1:9003", 1), "heartbeat_interval": ("3", 2), "log_level": ("debug", 3)],
            filePath: "mesh.yaml")
        #expect(r["listen"] == "tcp://127.0.0.1:9001")
        #expect(r["heartbeat_interval"] == "2")
        #expect(r["log_level"] == "debug")
        #expect(r["max_message_bytes"] == "1048576")
        #expect(r.sources["heartbeat_interval"] == .environment(variable: "VIOLIN_HEARTBEAT_INTERVAL"))
        #expect(r.sources["log_level"] == .file(path: "mesh.yaml", line: 3))
    }

    @Test(arguments: [
        ("heartbeat_interval", "soon"), ("heartbeat_interval", "-1"), ("max_message_bytes", "0"),
        ("log_level", "loud"), ("listen", "http://x"), ("bus", "127.0.0.1:7710"),
    ])
    func invalidValuesNameTheKey(key: String, value: String) {
        do {
            _ = try ConfigResolver.resolve(keys: description.keys, commandLine: [key: value], environment: [:], file: [:])
            Issue.record("accepted \(key)=\(value)")
        } catch {
            #expect(error.key == key)
            #expect(error.description.contains(key) && error.description.contains(value))
        }
    }

    @Test func environmentErrorsNameTheVariable() {
        do {
            _ = try ConfigResolver.resolve(keys: description.keys, commandLine: [:],
                                           environment: ["VIOLIN_MAX_MESSAGE_BYTES": "lots"], file: [:])
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("VIOLIN_MAX_MESSAGE_BYTES"))
        }
    }

    @Test func fileKeysAreReadWithTheirLines() throws {
        let text = "# mesh node\nlisten: tcp://127.0.0.1:9100\n\nheartbeat_interval: 0.5\nlisten_more: [a, b]\n"
        let file = try ConfigResolver.parseFile(text: text, path: "n.yaml")
        #expect(file["listen"]?.value == "tcp://127.0.0.1:9100" && file["listen"]?.line == 2)
        #expect(file["heartbeat_interval"]?.line == 4)
        #expect(file["listen_more"]?.value == "a,b")
        do {
            _ = try ConfigResolver.resolve(keys: description.keys, commandLine: [:], environment: [:], file: file,
                                           filePath: "n.yaml")
            Issue.record("unknown key accepted")
        } catch {
            #expect(error.key == "listen_more")
            #expect(error.description.contains("n.yaml line 5"))
        }
    }

    @Test func brokenFilesAreRefused() {
        #expect(throws: ConfigError.self) { try ConfigResolver.parseFile(text: "listen: [unclosed", path: "x") }
        #expect(throws: ConfigError.self) { try ConfigResolver.parseFile(text: "- a\n- b\n", path: "x") }
        #expect(throws: ConfigError.self) { try ConfigResolver.parseFile(text: "listen:\n  nested: 1\n", path: "x") }
    }

    @Test func curveKeyNeedsAllowedKeys() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-cfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try KeyFiles.write(try CurveKeyPair.generate(), base: dir + "/server", role: .control)
        do {
            _ = try ServiceSettings.load(description, commandLine: ["curve_key": dir + "/server.key"], configPath: nil,
                                         environment: [:])
            Issue.record("accepted")
        } catch {
            #expect(error.key == "curve_allowed")
        }
        let s = try ServiceSettings.load(description, commandLine: ["curve_key": dir + "/server.key", "curve_allowed": dir],
                                         configPath: nil, environment: [:])
        #expect(s.server != nil && s.keys?.all.count == 1)
        do {
            _ = try ServiceSettings.load(description, commandLine: ["curve_key": dir + "/server.pub", "curve_allowed": dir],
                                         configPath: nil, environment: [:])
            Issue.record("a public-key file accepted as a key pair")
        } catch {
            #expect(error.key == "curve_key")
        }
    }
}

@Suite struct ServiceKeysTests {
    let d = ServiceDescription(name: "mesh", defaultListen: "tcp://127.0.0.1:7701", extraKeys: [
        ConfigKey("run_dir", default: "", help: "x"), ConfigKey("member_timeout", default: "3", help: "y"),
    ])

    @Test func ownKeysFromTheCommandLine() throws {
        let v = try d.parseServiceKeys(["--run-dir", "/tmp/x", "--member-timeout=5"]).get()
        #expect(v == ["run_dir": "/tmp/x", "member_timeout": "5"])
        #expect(try d.parseServiceKeys([]).get().isEmpty)
    }

    @Test func unknownFlagsAndMissingValuesAreNamed() {
        guard case .failure(let e) = d.parseServiceKeys(["--run-dirr", "x"]) else { Issue.record("accepted"); return }
        #expect(e.description.contains("--run-dirr") && e.description.contains("--run-dir"))
        guard case .failure(let m) = d.parseServiceKeys(["--member-timeout"]) else { Issue.record("accepted"); return }
        #expect(m.description.contains("needs a value"))
    }
}

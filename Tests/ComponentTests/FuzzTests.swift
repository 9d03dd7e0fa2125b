import ExecutorService
import Foundation
import Hypervisor
import Logging
import MeshService
import MonitorService
import PolicyCore
import PolicyService
import ServiceKit
import Testing
import VIOLINProtocol
import ZeroMQ

/// Structure-aware fuzzing over real ZeroMQ: well-framed requests of every type a service
/// knows, their bodies made hostile (wrong types, huge, negative and fractional numbers, long
/// strings, path and URI tricks, deep nesting, missing and unknown fields), now and then a
/// broken frame or header. Every message gets an answer, no service dies, and each still
/// answers `ping` afterwards. Each service serves over CURVE with a key table, and the fuzz runs
/// once per role's key (operator, control, host:self, host:other), so the messages reach both
/// the handlers and the authorization checks. `VIOLIN_FUZZ_MESSAGES` sets the count per service
/// and role (default 500; 10,000 for a long run).
@Suite(.serialized) struct FuzzTests {
    static let perService = Int(ProcessInfo.processInfo.environment["VIOLIN_FUZZ_MESSAGES"] ?? "") ?? 500

    static let hostile: [JSONValue] = [
        .number(1e300), .number(-1), .number(9e15), .number(4_294_967_296), .number(0.5), .number(-9e18), .number(0),
        .string(String(repeating: "A", count: 100_000)), .string("../../../../etc/passwd"), .string("/etc/shadow"),
        .string("qemu+ext:///system?command=/bin/sh"), .string("ipc:///nonexistent/x.sock"), .string("\u{0}"), .string(""),
        .string("52:54:00:00:00:01"), .string("ff:ff:ff:ff:ff:ff"), .string("10.0.0.1:99999"), .string("x'<y>&\"z"),
        .string("💥"), .bool(true), .null, .object([:]), .array([]), .array(Array(repeating: .number(1), count: 5000)),
        deep(200),
    ]

    static func deep(_ n: Int) -> JSONValue { n == 0 ? .number(1) : .array([deep(n - 1)]) }

    /// One hostile message for `types` (a seeded generator: the same seed, the same messages).
    static func message(_ r: inout SeededRandom, _ types: [any RequestBody.Type], _ factory: inout MessageFactory) -> [Frame] {
        let type = types[r.next(types.count)]
        var body = type.exampleJSON.objectValue ?? [:]
        let names = type.fields.map(\.name) + ["extra", "\u{0}", String(repeating: "k", count: 300)]
        for _ in 0...r.next(3) {
            let name = names[r.next(names.count)]
            if r.next(5) == 0 { body[name] = nil } else { body[name] = hostile[r.next(hostile.count)] }
        }
        var m = factory.request(type.msgType, body: .object(body))
        switch r.next(40) {
        case 0: return [Array("VIOLIN/1".utf8), Array("{not json".utf8), m.body.bytes]
        case 1: return [Array("VIOLIN/9".utf8), m.header.json.bytes, m.body.bytes]
        case 2: return [Array("VIOLIN/1".utf8), m.header.json.bytes]
        case 3: m.header.msgType = "frob_request"
        case 4: return [Array("VIOLIN/1".utf8), m.header.json.bytes, hostile[r.next(hostile.count)].bytes]
        default: break
        }
        return Codec.encode(m)
    }

    /// Sends `perService` messages to `endpoint`, each answered within `timeoutMs`; then a ping.
    /// The server's key and one key per role, in the table every fuzzed service serves.
    static let serverKey = try! CurveKeyPair.generate()
    static let roleKeys: [(String, CurveKeyPair, Role)] = [
        ("operator", try! CurveKeyPair.generate(), .operator), ("control", try! CurveKeyPair.generate(), .control),
        ("host:self", try! CurveKeyPair.generate(), .host("h1")), ("host:other", try! CurveKeyPair.generate(), .host("h9")),
    ]
    static var table: KeyTable { KeyTable(entries: roleKeys.map { .init(key: $0.1.publicKey, roles: [$0.2]) }, ownKey: serverKey.publicKey) }

    /// A runtime for `handler` on host h1, over CURVE with the roles' table.
    func runtime(_ name: String, _ handler: RequestHandler) throws -> ServiceRuntime {
        try makeRuntime(name, instance: "\(name)@h1", server: ServerSecurity(keyPair: Self.serverKey), keys: Self.table, handler: handler)
    }

    /// The fuzz once per role's key.
    func fuzzEveryRole(_ endpoint: String, _ types: [any RequestBody.Type], seed: UInt64) throws {
        for (i, (name, pair, _)) in Self.roleKeys.enumerated() {
            try fuzz(endpoint, types, seed: seed &* 31 &+ UInt64(i), role: name,
                     security: ClientSecurity(keyPair: pair, serverPublicKey: Self.serverKey.publicKey))
        }
    }

    func fuzz(_ endpoint: String, _ types: [any RequestBody.Type], seed: UInt64, role: String = "plain", security: ClientSecurity? = nil,
              timeoutMs: Int = 10_000) throws {
        try withContext { ctx in
            var r = SeededRandom(seed: seed)
            var factory = MessageFactory(sender: "fuzz")
            var unanswered = 0, errors: [String: Int] = [:], slowest: [String: Int64] = [:]
            let client = try RequestClient(context: ctx, endpoint: endpoint, security: security, timeoutMs: timeoutMs, retries: 0)
            defer { client.close() }
            for _ in 0..<Self.perService {
                let frames = Self.message(&r, types, &factory)
                let type = frames.count == 3 ? (Header(json: (try? JSONText.parse(frames[1])) ?? .null)?.msgType ?? "?") : "?"
                let t0 = monotonicMillis()
                defer { slowest[type] = max(slowest[type] ?? 0, monotonicMillis() - t0) }
                guard let reply = try? client.request(frames) else { unanswered += 1; continue }
                let code = (try? Codec.decode(reply))?.body["code"]?.stringValue ?? "ok"
                errors[code, default: 0] += 1
            }
            #expect(unanswered == 0, "\(unanswered) of \(Self.perService) messages got no answer (\(endpoint))")
            #expect(errors["internal_error"] == nil, "internal errors: \(errors)")
            let pinger = ServiceClient(context: ctx, endpoint: endpoint, security: security, timeoutMs: 5000)
            defer { pinger.close() }
            #expect((try? pinger.call(AdminAPI.Ping())) != nil, "the service does not answer ping after the fuzz")
            let slow = slowest.sorted { $0.value > $1.value }.prefix(3).map { "\($0.key) \($0.value) ms" }
            print("fuzz \(types.first.map { String(describing: $0) } ?? "?")... as \(role): \(Self.perService) messages, replies by code \(errors.sorted { $0.key < $1.key }); slowest \(slow)")
        }
    }

    var quiet: Logger { var l = Logger(label: "fuzz"); l.logLevel = .critical; return l }

    func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-fuzz-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func thePolicyAnswersEveryHostileMessage() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = PolicyServer.Options(database: dir + "/p.sqlite")
        o.interval = 3600; o.reconcileInterval = 0; o.executorTimeoutMs = 100; o.workTimeoutMs = 200
        let policy = try PolicyServer(options: o, logger: quiet)
        let runtime = try self.runtime("policy", policy)
        defer { runtime.stop() }
        _ = policy
        try fuzzEveryRole(runtime.endpoints[0], PolicyAPI.requests + AdminAPI.requests, seed: 1)
    }

    @Test func theExecutorAnswersEveryHostileMessage() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let world = InMemoryHypervisor.World()
        world.addHost("mem://h1")
        let mesh = try makeRuntime("mesh", handler: FakeMesh())
        defer { mesh.stop() }
        var o = ExecutorServer.Options(hostID: "h1", libvirtURI: "mem://h1", migrationURI: "mem://h1", mesh: mesh.endpoints[0], database: dir + "/e.sqlite")
        o.connect = InMemoryHypervisor.connector(world)
        o.imageDir = dir
        o.callTimeoutMs = 100
        let executor = try ExecutorServer(options: o, logger: quiet)
        let runtime = try self.runtime("executor", executor)
        defer { runtime.stop(); executor.stop() }
        try fuzzEveryRole(runtime.endpoints[0], ExecutorAPI.requests + AdminAPI.requests, seed: 2)
    }

    @Test func theMonitorAnswersEveryHostileMessage() throws {
        let world = InMemoryHypervisor.World()
        world.addHost("mem://h1")
        let monitor = try MonitorServer(interval: 3600, logger: quiet, connect: { try InMemoryHypervisor(world: world, uri: "mem://h1") })
        let runtime = try self.runtime("monitor", monitor)
        defer { runtime.stop(); monitor.stop() }
        try fuzzEveryRole(runtime.endpoints[0], MonitorAPI.requests + AdminAPI.requests, seed: 3)
    }

    @Test func theMeshAnswersEveryHostileMessage() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mesh = try MeshServer(options: .init(me: "tcp://127.0.0.1:1", hostAddress: "127.0.0.1", switchBinary: "/bin/false",
                                                 runDirectory: dir + "/run"), logger: quiet)
        let runtime = try self.runtime("mesh", mesh)
        defer { runtime.stop(); mesh.stop() }
        try fuzzEveryRole(runtime.endpoints[0], MeshAPI.requests + AdminAPI.requests, seed: 4)
    }
}

extension RequestBody {
    static var exampleJSON: JSONValue { example.json }
}

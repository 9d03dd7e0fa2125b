import Foundation
import Logging
import Testing
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// PROTOCOL.md §7.1's table, read from the page: (service, request) -> who may send it.
struct DocumentedGrants {
    static let roles = ["operator", "control", "domain-admin", "host:self", "host:other"]
    var rows: [String: [String: [String: Bool]]] = [:]   // service -> request -> role column -> allowed

    init() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Shared/VIOLINProtocol/PROTOCOL.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let section = text.components(separatedBy: "### 7.1 Roles and authorization")[1].components(separatedBy: "## 8.")[0]
        for line in section.split(separator: "\n") where line.hasPrefix("| ") && line.contains("_request`") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 7 else { continue }
            let type = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            var cols: [String: Bool] = [:]
            for (i, role) in Self.roles.enumerated() { cols[role] = cells[2 + i] == "✓" }
            rows[cells[0], default: [:]][type] = cols
        }
    }

    func allowed(_ service: String, _ type: String, _ role: String) -> Bool? {
        (rows["admin"]?[type] ?? rows[service]?[type])?[role]
    }
}

/// Answers every request it is handed with `ok`: what reaches it got past the runtime's checks.
final class AnswerAll: RequestHandler {
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { ["status": "ok"] }
    var state: JSONValue { [:] }
}

@Suite struct AuthorizationTableTests {
    /// The Swift table and PROTOCOL.md's say the same, and every request of every service is in both.
    @Test func theTableIsThePageAndCoversEveryRequest() throws {
        let doc = try DocumentedGrants()
        let catalogue: [String: [String]] = [
            "admin": Catalogue.adminRequests, "executor": Catalogue.executorRequests, "mesh": Catalogue.meshRequests,
            "monitor": Catalogue.monitorRequests, "policy": Catalogue.policyRequests,
        ]
        for (service, types) in catalogue {
            #expect(Set(types) == Set(Authorization.requests[service]?.keys.map { $0 } ?? []), "the table of \(service) lists its requests")
            #expect(Set(types) == Set(doc.rows[service]?.keys.map { $0 } ?? []), "PROTOCOL.md §7.1 lists \(service)'s requests")
            for type in types {
                let grants = try #require(Authorization.requests[service]?[type])
                let anyone = grants.contains(.anyone)
                let expected: [String: Bool] = [
                    "operator": anyone || grants.contains(.operator), "control": anyone || grants.contains(.control),
                    "domain-admin": anyone || grants.contains(.domainAdmin),
                    "host:self": anyone || grants.contains(.hostSelf) || grants.contains(.anyHost),
                    "host:other": anyone || grants.contains(.anyHost),
                ]
                #expect(doc.rows[service]?[type] == expected, "\(service) \(type): PROTOCOL.md says \(doc.rows[service]?[type] ?? [:])")
            }
        }
    }

    @Test func rolesReadAndPrint() {
        for text in ["operator", "control", "domain-admin:d1", "host:h-1.a"] { #expect(Role(text)?.description == text) }
        for bad in ["", "root", "host:", "host:a b", "domain-admin:../x", "host:" + String(repeating: "a", count: 65)] {
            #expect(Role(bad) == nil, "\(bad)")
        }
    }

    /// A host's migration URI: TLS, TCP or SSH to its executor's address, no query (libvirt's
    /// `?command=`, `?socket=`, `?keyfile=` name local programs and files), each refusal saying why.
    @Test func migrationURIsAreCheckedAgainstTheExecutorsAddress() {
        let ok = ["qemu+tls://10.0.0.9/system", "qemu+tcp://10.0.0.9:16509/system", "qemu+ssh://root@10.0.0.9/system"]
        for uri in ok { #expect(Destinations.check(executor: "tcp://10.0.0.9:7704", mesh: "tcp://10.0.0.9:7701", migrationURI: uri) == nil, "\(uri)") }
        let bad: [(String, String)] = [
            ("qemu+ext:///system?command=/bin/sh", "qemu+tls"), ("qemu+unix:///system", "qemu+tls"), ("qemu:///system", "qemu+tls"),
            ("qemu+tcp://10.0.0.9/system?socket=/tmp/x", "query"), ("qemu+ssh://10.0.0.9/system?keyfile=/root/k", "query"),
            ("qemu+tcp://10.6.6.6/system", "not the host's address"), ("qemu+tls://10.0.0.9/session", "/system"),
            ("qemu+tcp://10.0.0.9:99999/system", "port"), ("qemu+ssh://a;b@10.0.0.9/system", "user"),
        ]
        for (uri, why) in bad {
            let reason = Destinations.checkMigrationURI(uri, address: "10.0.0.9")
            #expect(reason?.contains(why) == true, "\(uri): \(reason ?? "accepted")")
        }
        #expect(Destinations.check(executor: "tcp://10.0.0.9:7704", mesh: "tcp://10.6.6.6:7701", migrationURI: ok[0])?.contains("mesh") == true)
        #expect(Destinations.check(executor: "ipc:///x", mesh: "tcp://10.0.0.9:7701", migrationURI: ok[0]) != nil)
    }

    @Test func eventsOnlyAsTheSendersOwnHost() {
        let h1 = Caller(key: "k", roles: [.host("h1")])
        #expect(Authorization.allowsEvent(h1, topic: "executor.migration_completed", sender: "executor@h1"))
        #expect(!Authorization.allowsEvent(h1, topic: "executor.migration_completed", sender: "executor@h2"))
        #expect(!Authorization.allowsEvent(h1, topic: "executor.migration_completed", sender: "monitor@h1"))
        #expect(!Authorization.allowsEvent(h1, topic: "policy.decision", sender: "policy@h1"))
        #expect(!Authorization.allowsEvent(Caller(key: "k", roles: [.operator]), topic: "monitor.sampled", sender: "monitor@h1"))
        #expect(Authorization.allowsEvent(Caller(key: "k", roles: [.control]), topic: "policy.decision", sender: "policy@ctl"))
        #expect(!Authorization.allowsEvent(Caller(key: "k", roles: [.control]), topic: "nobody.thing", sender: "nobody@ctl"))
    }
}

/// The matrix over real ZeroMQ with CURVE: every request type of every service, sent with each
/// role's key, gets what PROTOCOL.md §7.1 says (a reply, or `forbidden`); an unknown key and a
/// client without CURVE get nothing at all; a key removed from the table file is refused at
/// its next message.
@Suite(.serialized) struct AuthorizationMatrixTests {
    struct Keys {
        let server: CurveKeyPair
        let byRole: [String: CurveKeyPair]
        let stranger: CurveKeyPair
        init() throws {
            server = try CurveKeyPair.generate()
            var m: [String: CurveKeyPair] = [:]
            for r in DocumentedGrants.roles { m[r] = try CurveKeyPair.generate() }
            byRole = m
            stranger = try CurveKeyPair.generate()
        }
        var table: [KeyTable.Entry] {
            let roles: [String: Role] = ["operator": .operator, "control": .control, "domain-admin": .domainAdmin("d1"),
                                         "host:self": .host("hself"), "host:other": .host("hother")]
            return byRole.map { KeyTable.Entry(key: $0.value.publicKey, roles: [roles[$0.key]!]) }
        }
    }

    /// The runtime holds its handler weakly: the suite keeps it.
    let handler = AnswerAll()

    func runtime(_ service: String, _ keys: Keys, table: KeyTable) throws -> ServiceRuntime {
        let settings = ServiceSettings(service: service, instance: "\(service)@hself", listen: ["tcp://127.0.0.1:*"], bus: nil,
                                       server: ServerSecurity(keyPair: keys.server), keys: table)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let r = try ServiceRuntime(settings: settings, logger: logger, handler: handler)
        try r.start()
        return r
    }

    @Test(arguments: ["executor", "mesh", "monitor", "policy"])
    func everyRequestTimesEveryRole(service: String) throws {
        let doc = try DocumentedGrants()
        let keys = try Keys()
        let rt = try runtime(service, keys, table: KeyTable(entries: keys.table))
        defer { rt.stop() }
        let types = Catalogue.adminRequests + (doc.rows[service]?.keys.sorted() ?? [])
        #expect(types.count > 5)
        try withContext { ctx in
            var refused = 0
            for role in DocumentedGrants.roles {
                let client = ServiceClient(context: ctx, endpoint: rt.endpoints[0],
                                           security: ClientSecurity(keyPair: keys.byRole[role]!, serverPublicKey: keys.server.publicKey),
                                           timeoutMs: 3000)
                defer { client.close() }
                for type in types {
                    let allowed = try #require(doc.allowed(service, type, role))
                    do {
                        let reply = try client.call(type, retries: 0)
                        #expect(allowed, "\(role) sent \(service) \(type): answered, but the table forbids it")
                        #expect(reply["status"] == "ok" || type == "metrics_request" || type == "status_request")
                    } catch ServiceClient.Failure.error(let e) {
                        #expect(!allowed && e.code == .forbidden, "\(role) sent \(service) \(type): \(e)")
                        refused += 1
                    } catch {
                        Issue.record("\(role) \(service) \(type): \(error)")
                    }
                }
            }
            #expect(refused > 0)
            // Unknown key and no key: no handshake, so not one of these requests is answered.
            for security in [ClientSecurity(keyPair: keys.stranger, serverPublicKey: keys.server.publicKey), nil] {
                let dealer = try ZMQSocket(ctx, .dealer)
                defer { dealer.close() }
                try dealer.setLinger(ms: 0)
                if let security { try dealer.makeCurveClient(security) }
                try dealer.connect(rt.endpoints[0])
                var factory = MessageFactory(sender: "attacker")
                for type in types { _ = try dealer.send([[]] + Codec.encode(factory.request(type, body: [:])), dontWait: true) }
                #expect(try dealer.receive(timeoutMs: 600) == nil, "a client with \(security == nil ? "no key" : "an unknown key") was answered")
            }
            let metrics = try ServiceClient(context: ctx, endpoint: rt.endpoints[0],
                                            security: ClientSecurity(keyPair: keys.byRole["operator"]!, serverPublicKey: keys.server.publicKey))
                .call(AdminAPI.Metrics())
            #expect(metrics.counters["auth_refused"] == refused)
        }
    }

    @Test func aKeyRemovedFromTheFileIsRefusedAtItsNextMessage() throws {
        let keys = try Keys()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-keys-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/keys"
        try KeyTable.save(keys.table, to: path)
        let rt = try runtime("executor", keys, table: try KeyTable(path: path, ownKey: keys.server.publicKey))
        defer { rt.stop() }
        try withContext { ctx in
            let control = ServiceClient(context: ctx, endpoint: rt.endpoints[0],
                                        security: ClientSecurity(keyPair: keys.byRole["control"]!, serverPublicKey: keys.server.publicKey),
                                        timeoutMs: 2000)
            defer { control.close() }
            #expect(try control.call("migrate_request", retries: 0)["status"] == "ok")
            // Revoked on disk: the same connection's next message is refused.
            try KeyTable.save(keys.table.filter { $0.key != keys.byRole["control"]!.publicKey }, to: path)
            do {
                _ = try control.call("migrate_request", retries: 0)
                Issue.record("a revoked key was served")
            } catch ServiceClient.Failure.error(let e) {
                #expect(e.code == .forbidden && e.message.contains("not accepted"), "\(e)")
            } catch { Issue.record("\(error)") }
            // Another key is still served.
            let op = ServiceClient(context: ctx, endpoint: rt.endpoints[0],
                                   security: ClientSecurity(keyPair: keys.byRole["operator"]!, serverPublicKey: keys.server.publicKey))
            defer { op.close() }
            #expect(try op.call("ping_request")["status"] == "ok")
        }
    }

    @Test func aKeyTableNeedsARoleForEveryKey() throws {
        let k = try CurveKeyPair.generate().publicKey
        #expect(throws: (any Error).self) { try KeyTable.parse("\(k)\n", path: "t") }
        #expect(throws: (any Error).self) { try KeyTable.parse("\(k) root\n", path: "t") }
        #expect(throws: (any Error).self) { try KeyTable.parse("public-key = \(k)\n", path: "t") }
        #expect(try KeyTable.parse("# c\n\(k) host:h1,control\n", path: "t")[k] == [.host("h1"), .control])
        #expect(try KeyTable.parse("public-key = \(k)\nrole = operator\n", path: "t")[k] == [.operator])
    }
}

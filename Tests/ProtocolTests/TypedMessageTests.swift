import Foundation
import Testing
@testable import VIOLINProtocol

/// Every service's requests and events, by the PROTOCOL.md section that documents them.
let typedRequests: [(section: String, types: [any RequestBody.Type])] = [
    ("5.", AdminAPI.requests), ("8.1", SwitchAPI.requests), ("8.2", MeshAPI.requests), ("8.3", MonitorAPI.requests),
    ("8.4", PolicyAPI.requests), ("8.5", ExecutorAPI.requests),
]
let typedEvents: [(section: String, types: [any EventBody.Type])] = [
    ("8.1", SwitchAPI.events), ("8.2", MeshAPI.events), ("8.3", MonitorAPI.events), ("8.4", PolicyAPI.events),
    ("8.5", ExecutorAPI.events + ExecutorAPI.streams),
]

/// What each way of getting a field wrong looks like: missing, of another type, out of range.
func wrongValues(_ kind: FieldSpec.Kind) -> [(what: String, value: JSONValue)] {
    var out: [(String, JSONValue)] = []
    switch kind {
    case .text: out = [("a number", 5), ("empty", ""), ("a list", ["x"])]
    case .string: out = [("a number", 5), ("a list", ["x"])]
    case .label: out = [("a fraction", 1.5), ("a list", ["x"]), ("true", true)]
    case .choice(let options): out = [("a number", 1), ("another word", .string(options.joined() + "-not"))]
    case .integer(let r): out = [("text", "5"), ("a fraction", .number(Double(r.lowerBound) + 0.5)),
                                 ("too small", .number(Double(r.lowerBound) - 1)), ("too large", .number(Double(r.upperBound) + 1))]
    case .number(let r):
        out = [("text", "5")]
        // A range as wide as the doubles has no number outside it.
        if r.lowerBound - 1 < r.lowerBound { out.append(("too small", .number(r.lowerBound - 1))) }
        if r.upperBound + 1 > r.upperBound { out.append(("too large", .number(r.upperBound + 1))) }
    case .flag: out = [("text", "yes"), ("a number", 1)]
    case .vni: out = [("text", "9"), ("zero", 0), ("too large", 16_777_216), ("negative", -1), ("huge", 1e300)]
    case .mac: out = [("a number", 2), ("multicast", "01:00:5e:00:00:01"), ("broadcast", "ff:ff:ff:ff:ff:ff"),
                      ("zero", "00:00:00:00:00:00"), ("short", "02:00:00:00:01")]
    case .address(let any): out = [("a number", 4789), ("not an address", "host.example:1"), ("octet too large", "10.0.0.256:4789"),
                                    ("port too large", "10.0.0.1:65536")] + (any ? [] : [("port zero", "10.0.0.1:0")])
    case .list(let k): out = [("text", "x")] + wrongValues(k).prefix(1).map { ("an element \($0.what)", .array([$0.value])) }
    case .endpoint: out = [("a number", 7701), ("no scheme", "10.0.0.1:7701"), ("another scheme", "http://x")]
    case .curveKey: out = [("a number", 5), ("short", "abc"), ("a character outside Z85", .string(String(repeating: "~", count: 40)))]
    case .object: out = [("text", "x"), ("a list", [])]
    }
    return out
}

/// A value every field of this kind accepts.
func validValue(_ kind: FieldSpec.Kind) -> JSONValue {
    switch kind {
    case .text, .string, .label: "x"
    case .choice(let options): .string(options[0])
    case .integer(let r): .number(Double(r.lowerBound))
    case .number(let r): .number(r.lowerBound)
    case .flag: true
    case .vni: 9
    case .mac: "02:00:00:00:00:01"
    case .address: "10.0.0.1:4789"
    case .list(let k): [validValue(k)]
    case .endpoint: "tcp://10.0.0.1:7701"
    case .curveKey: ""
    case .object: [:]
    }
}

func withField(_ body: JSONValue, _ name: String, _ value: JSONValue?) -> JSONValue {
    var o = body.objectValue ?? [:]
    o[name] = value
    return .object(o)
}

@Suite struct TypedMessageTests {
    func replyRefusals<R: RequestBody>(_ type: R.Type) -> (tried: Int, wrong: [String]) {
        let valid = JSONValue.object(Dictionary(uniqueKeysWithValues: R.Reply.fields.map { ($0.name, validValue($0.kind)) }))
        var tried = 0, wrong: [String] = []
        for field in R.Reply.fields {
            var cases = wrongValues(field.kind).map { ("\($0.what)", Optional($0.value)) }
            if field.required { cases.append(("missing", nil)) }
            for (what, value) in cases {
                tried += 1
                do {
                    _ = try R.Reply.decode(withField(valid, field.name, value))
                    wrong.append("\(R.msgType) reply: \(field.name) \(what) accepted")
                } catch {
                    if !(error.code == .invalidBody && error.message.hasPrefix(field.name + " ")) {
                        wrong.append("\(R.msgType) reply: \(field.name) \(what): \(error)")
                    }
                }
            }
        }
        return (tried, wrong)
    }

    /// Every reply type, like every request: each field made wrong in every way its kind
    /// allows, or left out when required, is refused by the reader, naming the field.
    @Test func everyReplyFieldIsCheckedByName() {
        var tried = 0
        for (_, types) in typedRequests {
            for type in types {
                let r = replyRefusals(type)
                tried += r.tried
                for w in r.wrong { Issue.record(Comment(rawValue: w)) }
            }
        }
        #expect(tried > 200, "only \(tried) reply refusals tried")
    }

    /// Replies the services build read back as what they were, nulls and flattened counters
    /// included, through the same path a client takes (`status` added, then decoded).
    @Test func repliesSurviveTheWire() throws {
        let counters = SwitchAPI.PortCounters(rx: 7, tx: 3, firstRxMs: nil, lastRxMs: 1_700_000_000_123)
        let removed = MeshAPI.RemovePortReply(vni: 9, port: SwitchAPI.RemovePortReply(removed: "vm-a1", last: counters))
        let body = Replies.ok(removed)
        #expect(body["status"] == "ok" && body["vni"] == 9 && body["removed"] == "vm-a1" && body["rx"] == 7)
        #expect(body["first_rx_ms"] == .null, "an unknown first frame is written as null, as the document says")
        #expect(try MeshAPI.RemovePort.Reply.decode(body) == removed)
        let noCounters = SwitchAPI.RemovePortReply(removed: "vm-a1", last: nil)
        #expect(Replies.ok(noCounters)["rx"] == nil)
        #expect(try SwitchAPI.RemovePort.Reply.decode(Replies.ok(noCounters)).last == nil)

        let stats = MeshAPI.PortStatsReply(vni: 9, name: "vm-a1", counters: counters)
        #expect(try MeshAPI.PortStats.Reply.decode(Replies.ok(stats)) == stats)

        let job = ExecutorAPI.JobReport(job: "job-1", vm: "a1", from: "h1", to: "h2", state: "migrating", error: "", elapsedMs: 12,
                                        downtimeMs: nil, blackoutMs: nil, processedBytes: 1 << 40, remainingBytes: 0, rateBps: nil,
                                        decisionID: "7", createdAt: "2026-12-06T00:00:00Z", updatedAt: "2026-12-06T00:00:01Z")
        let jobBody = Replies.ok(job)
        #expect(jobBody["downtime_ms"] == .null && jobBody["processed_bytes"] == .number(Double(1 << 40)))
        #expect(try ExecutorAPI.Job.Reply.decode(jobBody) == job)
        var badState = jobBody.objectValue!
        badState["state"] = "teleported"
        #expect(throws: ProtocolError.self) { try ExecutorAPI.Job.Reply.decode(.object(badState)) }

        // A field the type reads but the list does not cover still fails cleanly, as invalid_body.
        var info = Replies.ok(ExecutorAPI.HostInfoReply(host: "h2", migrationURI: "qemu+tcp://10.0.0.2/system", mesh: "tcp://10.0.0.2:7701",
                                                        freeMemoryMB: 900, migrationsRunning: 0)).objectValue!
        #expect(try ExecutorAPI.HostInfo.Reply.decode(.object(info)).freeMemoryMB == 900)
        info["free_memory_mb"] = -1
        #expect(throws: ProtocolError.self) { try ExecutorAPI.HostInfo.Reply.decode(.object(info)) }
    }

    func roundTrip<R: RequestBody>(_ type: R.Type) throws -> Bool {
        try R.decode(R.example.json) == R.example
    }

    /// Every request type: its example survives encoding and decoding; each field, made wrong
    /// in every way its kind allows, gets `invalid_body` naming that field; a required one
    /// left out too. Generated from the types, not listed by hand.
    @Test func everyFieldIsRefusedByName() throws {
        var refusals = 0
        for (_, types) in typedRequests {
            for type in types {
                #expect(try roundTrip(type), "\(type.msgType): the example does not survive a round trip")
                let valid = type.example.json
                for field in type.fields {
                    var cases = wrongValues(field.kind).map { ("\($0.what)", Optional($0.value)) }
                    if field.required { cases.append(("missing", nil)) }
                    for (what, value) in cases {
                        do {
                            _ = try type.decode(withField(valid, field.name, value))
                            Issue.record("\(type.msgType): \(field.name) \(what) (\(value.map { JSONText.string($0) } ?? "absent")) accepted")
                        } catch {
                            #expect(error.code == .invalidBody && error.message.hasPrefix(field.name + " "),
                                    "\(type.msgType): \(field.name) \(what): \(error)")
                        }
                        refusals += 1
                    }
                }
                for body: JSONValue in [[], "x", 3, .null] {
                    #expect(throws: ProtocolError.self) { _ = try type.decode(body) }
                }
            }
        }
        #expect(refusals > 60, "only \(refusals) refusals tried")
    }

    @Test func catalogueComesFromTheTypes() {
        #expect(Catalogue.switchRequests == SwitchAPI.requests.map { $0.msgType })
        #expect(Set(Catalogue.switchRequests).count == Catalogue.switchRequests.count, "a type listed twice")
    }

    /// PROTOCOL.md's tables and the types, both ways: the document's rows for a typed section
    /// name exactly the types, a request's body column names exactly its fields (and the
    /// words of its choices), its reply column every reply field; an event's row its fields.
    @Test func theDocumentsTablesMatchTheTypes() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Shared/VIOLINProtocol/PROTOCOL.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        for (section, types) in typedRequests {
            let rows = tableRows(text, section: section)
            let requestRows = rows.filter { $0.first?.contains("_request`") == true }
            var documented: [String: (body: Set<String>, reply: Set<String>)] = [:]
            for row in requestRows where row.count >= 3 {
                for name in backticked(row[0]) where name.hasSuffix("_request") {
                    documented[name] = (topLevel(row[1]), backticked(row[row.count - 1]))
                }
            }
            #expect(Set(documented.keys) == Set(types.map { $0.msgType }), "§\(section): document \(documented.keys.sorted()) vs types")
            for type in types {
                guard let d = documented[type.msgType] else { continue }
                let choices = Set(type.fields.flatMap { f -> [String] in if case .choice(let o) = f.kind { o } else { [] } })
                let named = d.body.subtracting(choices).subtracting(["{}"]).filter { !$0.hasSuffix("_request") }
                #expect(named == Set(type.fields.map(\.name)),
                        "§\(section) \(type.msgType): document \(d.body.sorted()), type \(type.fields.map(\.name))")
                #expect(Set(type.replyFields).isSubset(of: d.reply),
                        "§\(section) \(type.msgType): reply fields \(type.replyFields) not all in \(d.reply.sorted())")
            }
        }
        // Each section says which of its requests are idempotent: exactly those whose type says so.
        for (section, types) in typedRequests {
            let lines = sectionLines(text, section: section)
            guard let start = lines.firstIndex(where: { $0.hasPrefix("Idempotent") }) else {
                Issue.record("§\(section) does not say which requests are idempotent"); continue
            }
            let paragraph = lines[start...].prefix { !$0.isEmpty }.joined(separator: " ")
            let documented = backticked(paragraph)
            #expect(documented == Set(types.filter { $0.idempotent }.map { $0.msgType }), "§\(section): idempotent per the document \(documented.sorted())")
            // And which are long (§4): exactly those whose type says so; a section with none says nothing.
            let long = Set(types.filter { $0.lane == .long }.map { $0.msgType })
            let longLine = lines.firstIndex(where: { $0.hasPrefix("Long (") })
            let documentedLong = longLine.map { backticked(lines[$0...].prefix { !$0.isEmpty }.joined(separator: " ")) } ?? []
            #expect(documentedLong == long, "§\(section): long per the document \(documentedLong.sorted()), per the types \(long.sorted())")
        }
        for (section, types) in typedEvents {
            let rows = tableRows(text, section: section).filter { $0.count == 2 && $0[0].contains(".") }
            var documented: [String: Set<String>] = [:]
            for row in rows { if let topic = backticked(row[0]).first { documented[topic] = topLevel(row[1]) } }
            #expect(Set(documented.keys) == Set(types.map { $0.topic }), "§\(section) events")
            for type in types {
                #expect(documented[type.topic] == Set(type.fields.map(\.name)), "\(type.topic): \(documented[type.topic] ?? [])")
            }
        }
    }

    /// The lines of section `section` ("8.1": from its heading to the next heading).
    func sectionLines(_ text: String, section: String) -> [String] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("#") && $0.contains(" \(section) ") }) else { return [] }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("#") } ?? lines.count
        return Array(lines[start..<end])
    }

    /// The cells of the table rows of section `section`.
    func tableRows(_ text: String, section: String) -> [[String]] {
        sectionLines(text, section: section).filter { $0.hasPrefix("| ") && !$0.hasPrefix("|---") }.map { line in
            line.split(separator: "|", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    /// The field names a cell gives at its top level: what is in parentheses describes a field,
    /// and after "list of" come the fields of its elements.
    func topLevel(_ cell: String) -> Set<String> {
        var text = "", depth = 0
        for c in cell {
            if c == "(" { depth += 1 } else if c == ")" { depth = max(0, depth - 1) } else if depth == 0 { text.append(c) }
        }
        if let r = text.range(of: "list of") { text = String(text[..<r.lowerBound]) }
        return backticked(text)
    }

    func backticked(_ cell: String) -> Set<String> {
        Set(cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) })
    }
}

@Suite struct DemandReadingTests {
    /// The policy smooths demand where a sample has it (a starved VM's use understates its
    /// need), use where it has none; a figure out of range is no figure.
    @Test func demandWinsOverUseWhereKnown() {
        let body: JSONValue = ["host": ["cpus": 2], "vms": [
            ["name": "starved", "cpu_percent": 60, "demand_percent": 100],
            ["name": "plain", "cpu_percent": 40, "demand_percent": .null],
            ["name": "odd", "cpu_percent": 30, "demand_percent": -5],
            ["name": "broken", "cpu_percent": "lots"],
        ]]
        let r = MonitorAPI.Sampled.cpuReadings(body)
        #expect(r.map(\.vm) == ["starved", "plain", "odd"])
        #expect(r.map(\.cpuPercent) == [100, 40, 30])
        let s = MonitorAPI.VMSample(name: "a", uuid: "u", cpuPercent: 61.04, demandPercent: 99.96, vcpus: 1, memoryMB: 64, maxMemoryMB: 64)
        #expect(s.json["demand_percent"] == 100 && s.json["cpu_percent"] == 61)
    }
}

/// `mesh.traffic` as the policy reads it off the bus.
@Suite struct TrafficEventTests {
    func body(pairs: Int) -> JSONValue {
        ["vni": 7, "other": ["frames": 0, "bytes": 0],
         "pairs": .array((0..<pairs).map { i in
             ["src": .string(String(format: "02:00:00:00:%02x:01", i)), "dst": "02:00:00:00:00:02", "frames": 1, "bytes": .number(Double(100 + i))] })]
    }

    /// Up to 64 pairs are read, each checked; an event with more is refused whole, not cut.
    @Test func anEventOfMoreThan64PairsIsRefused() {
        #expect(MeshAPI.Traffic.read(body(pairs: 64))?.pairs.count == 64)
        #expect(MeshAPI.Traffic.read(body(pairs: 65)) == nil)
        var bad = body(pairs: 2)
        if case .object(var o) = bad, case .array(var ps) = o["pairs"]! {
            ps[0] = ["src": "not-a-mac", "dst": "02:00:00:00:00:02", "frames": 1, "bytes": 1]
            o["pairs"] = .array(ps)
            bad = .object(o)
        }
        #expect(MeshAPI.Traffic.read(bad)?.pairs.count == 1, "the pair that is none is left out")
    }
}

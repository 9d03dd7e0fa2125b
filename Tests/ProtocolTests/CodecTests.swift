import Foundation
import Testing
@testable import VIOLINProtocol

/// The golden file of a message type: its header and body as they travel.
struct Golden {
    let header: JSONValue
    let body: JSONValue
    let topic: String?

    static func load(_ msgType: String) throws -> Golden {
        let url = try #require(Bundle.module.url(forResource: msgType, withExtension: "json", subdirectory: "Golden"),
                               "no golden file for \(msgType)")
        let value = try JSONText.parse(Array(try Data(contentsOf: url)))
        return Golden(header: try #require(value["header"]), body: try #require(value["body"]),
                      topic: value["topic"]?.stringValue)
    }

    var frames: [[UInt8]] {
        var f = [Array("VIOLIN/1".utf8), try! JSONText.encode(header), try! JSONText.encode(body)]
        if let topic { f.insert(Array(topic.utf8), at: 0) }
        return f
    }
}

/// The shared catalogue has golden files; service-specific types are tested with their service.
let goldenTypes = (Catalogue.adminRequests + Catalogue.adminRequests.map { $0.replacingOccurrences(of: "_request", with: "_reply") }
    + ["error_reply"] + Catalogue.serviceEvents.map { "mesh.\($0)" })

let fixedHeader = { (type: String, parent: String, seq: UInt64) in
    Header(msgId: parent.isEmpty ? "11111111-2222-3333-4444-555555555555" : "66666666-7777-8888-9999-000000000000",
           msgType: type, sender: type.hasSuffix("_request") ? "violin-cli" : "mesh@host1",
           session: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", parentId: parent, seq: seq, time: "2026-11-24T12:00:00.000Z")
}

/// Every catalogue type built from the Swift types, with the fixed header of its golden file.
func built(_ type: String) -> Message {
    let parent = "11111111-2222-3333-4444-555555555555"
    let endpoints = ["listen": "tcp://127.0.0.1:7701", "bus": "tcp://127.0.0.1:7710"]
    switch type {
    case "ping_request", "status_request", "metrics_request":
        return Message(header: fixedHeader(type, "", 1), body: [:])
    case "ping_reply":
        return Message(header: fixedHeader(type, parent, 1), body: JSONText.value(of: PingReply(
            service: "mesh", instance: "mesh@host1", time: "2026-11-24T12:00:00.001Z")))
    case "status_reply":
        return Message(header: fixedHeader(type, parent, 1), body: JSONText.value(of: StatusReply(
            service: "mesh", instance: "mesh@host1", version: "0.1.0", pid: 4242, uptimeS: 12.5,
            startedAt: "2026-11-24T11:59:47Z", endpoints: endpoints)))
    case "metrics_reply":
        return Message(header: fixedHeader(type, parent, 1), body: JSONText.value(of: MetricsReply(
            service: "mesh", counters: ["requests_total": 3, "replies_ok": 2, "replies_error": 1], gauges: ["uptime_s": 12.5])))
    case "error_reply":
        return Message(header: fixedHeader(type, parent, 1),
                       body: Replies.error(.unknownMessageType, "mesh does not know 'frob_request'"))
    case "mesh.started":
        return Message(topic: type, header: fixedHeader(type, "", 1), body: JSONText.value(of: ServiceStarted(
            service: "mesh", instance: "mesh@host1", version: "0.1.0", pid: 4242, endpoints: endpoints)))
    case "mesh.heartbeat":
        return Message(topic: type, header: fixedHeader(type, "", 2), body: JSONText.value(of: Heartbeat(
            service: "mesh", instance: "mesh@host1", uptimeS: 5, requestsHandled: 7)))
    case "mesh.stopping":
        return Message(topic: type, header: fixedHeader(type, "", 3), body: JSONText.value(of: ServiceStopping(
            service: "mesh", instance: "mesh@host1", reason: "signal")))
    default:
        Issue.record("no builder for \(type)")
        return Message(header: fixedHeader(type, "", 0), body: [:])
    }
}

func decodeAny(_ frames: [[UInt8]]) throws -> Message {
    frames.count == 4 ? try Codec.decodeEvent(frames) : try Codec.decode(frames)
}

@Suite struct CodecTests {
    @Test(arguments: goldenTypes)
    func encodesLikeTheGoldenFile(type: String) throws {
        let golden = try Golden.load(type)
        let frames = Codec.encode(built(type))
        let offset = golden.topic == nil ? 0 : 1
        #expect(frames.count == 3 + offset)
        #expect(String(decoding: frames[offset], as: UTF8.self) == "VIOLIN/1")
        #expect(try JSONText.parse(frames[offset + 1]) == golden.header)
        #expect(try JSONText.parse(frames[offset + 2]) == golden.body)
        if let topic = golden.topic { #expect(frames[0] == Array(topic.utf8)) }
    }

    @Test(arguments: goldenTypes)
    func roundTripsEveryType(type: String) throws {
        let message = built(type)
        #expect(try decodeAny(Codec.encode(message)) == message)
        // And the golden frames decode into the same message.
        #expect(try decodeAny(try Golden.load(type).frames) == message)
    }

    @Test func typedViewsReadTheGoldenBodies() throws {
        let status = try JSONText.view(StatusReply.self, of: try Golden.load("status_reply").body)
        #expect(status.pid == 4242 && status.uptimeS == 12.5 && status.endpoints["listen"] == "tcp://127.0.0.1:7701")
        let hb = try JSONText.view(Heartbeat.self, of: try Golden.load("mesh.heartbeat").body)
        #expect(hb.requestsHandled == 7)
        let metrics = try JSONText.view(MetricsReply.self, of: try Golden.load("metrics_reply").body)
        #expect(metrics.counters["replies_error"] == 1)
    }

    @Test func protocolDocumentNamesEveryCatalogueType() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Shared/VIOLINProtocol/PROTOCOL.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        for type in Catalogue.allTypes {
            #expect(text.contains("`\(type)`"), "PROTOCOL.md does not document \(type)")
        }
        for code in ErrorCode.allCases {
            #expect(text.contains("`\(code.rawValue)`"), "PROTOCOL.md does not document error code \(code.rawValue)")
        }
        // And the other way: every request, reply and event the document names is a type of
        // the catalogue (a `service.event` name with a service the catalogue knows).
        let catalogue = Set(Catalogue.allTypes)
        // The processes of README's table, not the catalogue's own idea of them.
        let services: Set<String> = ["bus", "switch", "mesh", "monitor", "policy", "executor"]
        var named: Set<String> = []
        for piece in text.split(separator: "`").enumerated() where piece.offset % 2 == 1 {
            let word = String(piece.element)
            guard word.allSatisfy({ $0.isLowercase || $0 == "_" || $0 == "." }) else { continue }
            let parts = word.split(separator: ".", omittingEmptySubsequences: false)
            let isMessage = (parts.count == 1 && (word.hasSuffix("_request") || word.hasSuffix("_reply")) && word.first != "_")
                || (parts.count == 2 && services.contains(String(parts[0])) && !parts[1].isEmpty)
            if isMessage { named.insert(word) }
        }
        #expect(named.count >= catalogue.count / 2, "the scan found too few names to judge: \(named.count)")
        func known(_ word: String) -> Bool {
            catalogue.contains(word) || word.split(separator: ".").last.map { catalogue.contains("<service>.\($0)") } == true
        }
        for word in named.sorted() where !known(word) {
            Issue.record("PROTOCOL.md names \(word), which is no type of the catalogue")
        }
    }
}

@Suite struct TolerantReaderTests {
    func frames(header: String, body: String = "{}", proto: String = "VIOLIN/1") -> [[UInt8]] {
        [Array(proto.utf8), Array(header.utf8), Array(body.utf8)]
    }

    @Test func unknownFieldsAreIgnored() throws {
        let m = try Codec.decode(frames(
            header: #"{"msg_id":"a","msg_type":"ping_request","version":"1.0","hmac":"x","extra":{"deep":[1,2]}}"#,
            body: #"{"future_field":true}"#))
        #expect(m.header.msgId == "a" && m.header.msgType == "ping_request")
        #expect(m.body["future_field"] == .bool(true))
        let reply = try JSONText.view(PingReply.self, of: [
            "status": "ok", "service": "mesh", "instance": "i", "time": "t", "load": 0.5, "tags": ["a"]])
        #expect(reply.service == "mesh")
    }

    @Test func onlyIdAndTypeAreRequired() throws {
        let m = try Codec.decode(frames(header: #"{"msg_id":"a","msg_type":"status_request"}"#))
        #expect(m.header.version == Wire.version && m.header.seq == 0 && m.header.parentId == "")
    }

    @Test func laterMinorVersionsAreRead() throws {
        let m = try Codec.decode(frames(header: #"{"msg_id":"a","msg_type":"ping_request","version":"1.8"}"#))
        #expect(m.header.version == "1.8")
    }

    @Test func unknownErrorCodesAreKept() {
        let r = Replies.result(of: ["status": "error", "code": "quota_exceeded", "message": "too many"])
        guard case .failure(let e) = r else { Issue.record("expected a failure"); return }
        #expect(e.code == .internalError && e.message == "quota_exceeded: too many")
        guard case .failure(let known) = Replies.result(of: Replies.error(.notFound, "no such VM")) else {
            Issue.record("an error reply read as a success"); return
        }
        #expect(known.code == .notFound && known.message == "no such VM")
    }

    @Test func messageKinds() {
        #expect(MessageKind(msgType: "ping_request") == .request(name: "ping"))
        #expect(MessageKind(msgType: "ping_reply") == .reply(name: "ping"))
        #expect(MessageKind(msgType: "mesh.member_joined") == .event(service: "mesh", event: "member_joined"))
        #expect(MessageKind(msgType: "frob") == .unknown)
        #expect(MessageKind(msgType: ".x") == .unknown)
    }

    /// Every way a message can be wrong, and the code it earns.
    static let bad: [(String, [[UInt8]], ErrorCode)] = [
        ("no frames", [], .malformedMessage),
        ("two frames", [Array("VIOLIN/1".utf8), Array("{}".utf8)], .malformedMessage),
        ("four frames", [[1], [2], [3], [4]], .malformedMessage),
        ("wrong protocol", [Array("HTTP/1.1".utf8), Array("{}".utf8), Array("{}".utf8)], .badProtocol),
        ("next major", [Array("VIOLIN/2".utf8), Array(#"{"msg_id":"a","msg_type":"ping_request"}"#.utf8), Array("{}".utf8)], .unsupportedVersion),
        ("header version 2", [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a","msg_type":"ping_request","version":"2.0"}"#.utf8), Array("{}".utf8)], .unsupportedVersion),
        ("header not JSON", [Array("VIOLIN/1".utf8), Array("{not json".utf8), Array("{}".utf8)], .invalidJSON),
        ("header not UTF-8", [Array("VIOLIN/1".utf8), [0xff, 0xfe, 0x00], Array("{}".utf8)], .invalidJSON),
        ("header an array", [Array("VIOLIN/1".utf8), Array("[1]".utf8), Array("{}".utf8)], .invalidHeader),
        ("header lacks type", [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a"}"#.utf8), Array("{}".utf8)], .invalidHeader),
        ("seq is text", [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a","msg_type":"x_request","seq":"one"}"#.utf8), Array("{}".utf8)], .invalidHeader),
        ("empty type", [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a","msg_type":""}"#.utf8), Array("{}".utf8)], .invalidHeader),
        ("body not JSON", [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a","msg_type":"ping_request"}"#.utf8), Array("nope".utf8)], .invalidJSON),
        ("body a string", [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a","msg_type":"ping_request"}"#.utf8), Array(#""hi""#.utf8)], .invalidBody),
    ]

    @Test(arguments: 0..<bad.count)
    func badMessagesEarnTheirCode(index: Int) {
        let (name, frames, code) = Self.bad[index]
        #expect(throws: ProtocolError.self, "\(name)") { try Codec.decode(frames) }
        do { _ = try Codec.decode(frames) } catch { #expect(error.code == code, "\(name): \(error)") }
    }

    @Test func oversizeIsRefusedBeforeParsing() {
        let big = [Array("VIOLIN/1".utf8), Array(#"{"msg_id":"a","msg_type":"ping_request"}"#.utf8),
                   Array(repeating: UInt8(ascii: " "), count: 2000)]
        do { _ = try Codec.decode(big, maxBytes: 1000); Issue.record("accepted") } catch {
            #expect(error.code == .messageTooLarge)
        }
    }

    @Test func errorRepliesKeepTheFailedMessagesId() throws {
        do {
            _ = try Codec.decode(frames(header: #"{"msg_id":"abc","msg_type":"ping_request"}"#, body: "[]"))
            Issue.record("accepted")
        } catch {
            var f = MessageFactory(sender: "t")
            let reply = f.errorReply(to: nil, error)
            #expect(reply.header.parentId == "abc" && reply.header.msgType == "error_reply")
        }
    }

    @Test func eventTopicMustMatchType() {
        var f = MessageFactory(sender: "t")
        var frames = Codec.encode(f.event("mesh.started", body: [:]))
        frames[0] = Array("mesh.stopped".utf8)
        do { _ = try Codec.decodeEvent(frames); Issue.record("accepted") } catch {
            #expect(error.code == .invalidHeader)
        }
    }

    @Test func eventSequenceCountsEventsOnly() {
        var f = MessageFactory(sender: "t")
        let a = f.event("mesh.heartbeat", body: [:])
        _ = f.request("ping")
        _ = f.reply(to: a.header, body: [:])
        let b = f.event("mesh.heartbeat", body: [:])
        #expect(a.header.seq == 1 && b.header.seq == 2)
    }
}

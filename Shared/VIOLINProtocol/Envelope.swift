import Foundation

/// The protocol as it appears on the wire. See PROTOCOL.md beside this file.
public enum Wire {
    /// First frame of every message: the protocol's name and major version.
    public static let protocolName = "VIOLIN"
    public static let majorVersion = 1
    public static let protocolFrame = "\(protocolName)/\(majorVersion)"
    /// The header's `version` field: major.minor of the message catalogue.
    public static let version = "1.9"
    /// Default largest message a service accepts (all frames together).
    public static let defaultMaxMessageBytes = 1 << 20
}

/// The header frame. Field names on the wire are snake_case.
public struct Header: Codable, Equatable, Sendable {
    public var msgId: String
    public var msgType: String
    public var version: String
    public var sender: String
    public var session: String
    public var parentId: String
    public var seq: UInt64
    public var time: String

    public init(msgId: String, msgType: String, version: String = Wire.version, sender: String,
                session: String, parentId: String = "", seq: UInt64 = 0, time: String) {
        self.msgId = msgId
        self.msgType = msgType
        self.version = version
        self.sender = sender
        self.session = session
        self.parentId = parentId
        self.seq = seq
        self.time = time
    }

    enum CodingKeys: String, CodingKey {
        case msgId = "msg_id", msgType = "msg_type", version, sender, session
        case parentId = "parent_id", seq, time
    }

    /// Tolerant reader: only msg_id and msg_type are required; anything unknown is ignored.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        msgId = try c.decode(String.self, forKey: .msgId)
        msgType = try c.decode(String.self, forKey: .msgType)
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? Wire.version
        sender = try c.decodeIfPresent(String.self, forKey: .sender) ?? ""
        session = try c.decodeIfPresent(String.self, forKey: .session) ?? ""
        parentId = try c.decodeIfPresent(String.self, forKey: .parentId) ?? ""
        seq = try c.decodeIfPresent(UInt64.self, forKey: .seq) ?? 0
        time = try c.decodeIfPresent(String.self, forKey: .time) ?? ""
    }
}

extension Header {
    /// Reads a header from its JSON object: msg_id and msg_type required, the rest defaulted,
    /// unknown fields ignored. Nil when a field has the wrong type.
    public init?(json v: JSONValue) {
        guard case .object(let o) = v, let id = o["msg_id"]?.stringValue, let type = o["msg_type"]?.stringValue
        else { return nil }
        func text(_ k: String, _ d: String) -> String?? {
            guard let f = o[k], f != .null else { return .some(d) }
            return f.stringValue.map { .some($0) } ?? .none
        }
        guard let version = text("version", Wire.version), let sender = text("sender", ""),
              let session = text("session", ""), let parent = text("parent_id", ""), let time = text("time", "")
        else { return nil }
        var seq: UInt64 = 0
        if let s = o["seq"], s != .null {
            guard let n = s.intValue, n >= 0 else { return nil }
            seq = UInt64(n)
        }
        self.init(msgId: id, msgType: type, version: version!, sender: sender!, session: session!,
                  parentId: parent!, seq: seq, time: time!)
    }

    public var json: JSONValue {
        .object(["msg_id": .string(msgId), "msg_type": .string(msgType), "version": .string(version),
                 "sender": .string(sender), "session": .string(session), "parent_id": .string(parentId),
                 "seq": .number(Double(seq)), "time": .string(time)])
    }
}

/// One message: header and body. Events also carry the topic they were published on.
public struct Message: Equatable, Sendable {
    public var topic: String?
    public var header: Header
    public var body: JSONValue

    public init(topic: String? = nil, header: Header, body: JSONValue) {
        self.topic = topic
        self.header = header
        self.body = body
    }

    public var kind: MessageKind { MessageKind(msgType: header.msgType) }
}

public enum MessageKind: Equatable, Sendable {
    case request(name: String)
    case reply(name: String)
    case event(service: String, event: String)
    case unknown

    public init(msgType: String) {
        if msgType.hasSuffix("_request") {
            self = .request(name: String(msgType.dropLast("_request".count)))
        } else if msgType.hasSuffix("_reply") {
            self = .reply(name: String(msgType.dropLast("_reply".count)))
        } else if let dot = msgType.firstIndex(of: "."), dot != msgType.startIndex,
                  msgType.index(after: dot) != msgType.endIndex {
            self = .event(service: String(msgType[..<dot]), event: String(msgType[msgType.index(after: dot)...]))
        } else {
            self = .unknown
        }
    }

    /// A request type as a person may type it: `ping` or `ping_request` both mean `ping_request`.
    public static func requestType(_ name: String) -> String {
        name.hasSuffix("_request") ? name : name + "_request"
    }
}

/// Stable error codes carried by `status: error` replies.
public enum ErrorCode: String, Codable, CaseIterable, Sendable {
    case badProtocol = "bad_protocol"
    case unsupportedVersion = "unsupported_version"
    case malformedMessage = "malformed_message"
    case invalidJSON = "invalid_json"
    case invalidHeader = "invalid_header"
    case messageTooLarge = "message_too_large"
    case unknownMessageType = "unknown_message_type"
    case invalidBody = "invalid_body"
    case notFound = "not_found"
    case conflict = "conflict"
    case unavailable = "unavailable"
    /// The caller's key may not send this request (PROTOCOL.md §7.1), or is not (or no longer) accepted.
    case forbidden = "forbidden"
    case internalError = "internal_error"
}

/// A protocol-level failure: what a reader could not accept, and why.
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// When the header could be read, the id of the message that failed (for parent_id).
    public var msgId: String

    public init(_ code: ErrorCode, _ message: String, msgId: String = "") {
        self.code = code
        self.message = message
        self.msgId = msgId
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

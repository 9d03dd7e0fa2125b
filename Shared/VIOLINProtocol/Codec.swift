import Foundation

/// Encodes and decodes messages to ZeroMQ frames. Pure: bytes in, values out.
///
/// Request or reply:  [protocol, header, body]
/// Event (PUB/SUB):   [topic, protocol, header, body]
public enum Codec {
    public typealias Frame = [UInt8]

    public static func encode(_ message: Message) -> [Frame] {
        var frames: [Frame] = [Array(Wire.protocolFrame.utf8), message.header.json.bytes, message.body.bytes]
        if let topic = message.topic { frames.insert(Array(topic.utf8), at: 0) }
        return frames
    }

    /// Decodes a request or reply (no topic frame).
    public static func decode(_ frames: [Frame], maxBytes: Int = Wire.defaultMaxMessageBytes) throws(ProtocolError) -> Message {
        try decodeFrames(frames, topic: nil, maxBytes: maxBytes)
    }

    /// Decodes an event: the first frame is the topic, which must equal the header's msg_type.
    public static func decodeEvent(_ frames: [Frame], maxBytes: Int = Wire.defaultMaxMessageBytes) throws(ProtocolError) -> Message {
        guard let first = frames.first else {
            throw ProtocolError(.malformedMessage, "an event has 4 frames: topic, protocol, header, body; got 0")
        }
        guard let topic = String(validating: first, as: UTF8.self) else {
            throw ProtocolError(.malformedMessage, "the topic frame is not UTF-8")
        }
        let message = try decodeFrames(Array(frames.dropFirst()), topic: topic, maxBytes: maxBytes)
        guard message.header.msgType == topic else {
            throw ProtocolError(.invalidHeader, "topic '\(topic)' differs from msg_type '\(message.header.msgType)'",
                                msgId: message.header.msgId)
        }
        return message
    }

    static func decodeFrames(_ frames: [Frame], topic: String?, maxBytes: Int) throws(ProtocolError) -> Message {
        let size = frames.reduce(0) { $0 + $1.count }
        if size > maxBytes {
            throw ProtocolError(.messageTooLarge, "message of \(size) bytes exceeds the limit of \(maxBytes) bytes")
        }
        guard frames.count == 3 else {
            throw ProtocolError(.malformedMessage,
                                "expected 3 frames (protocol, header, body), got \(frames.count)")
        }
        let proto = String(decoding: frames[0], as: UTF8.self)
        guard proto.hasPrefix(Wire.protocolName + "/") else {
            throw ProtocolError(.badProtocol, "first frame must be '\(Wire.protocolFrame)', got '\(proto.prefix(40))'")
        }
        guard proto == Wire.protocolFrame else {
            throw ProtocolError(.unsupportedVersion, "protocol '\(proto.prefix(40))' is not supported; this peer speaks '\(Wire.protocolFrame)'")
        }
        let headerValue: JSONValue
        do { headerValue = try JSONText.parse(frames[1]) } catch {
            throw ProtocolError(.invalidJSON, "header frame is not JSON")
        }
        guard case .object = headerValue else {
            throw ProtocolError(.invalidHeader, "header must be a JSON object")
        }
        guard let header = Header(json: headerValue) else {
            throw ProtocolError(.invalidHeader, "header lacks msg_id or msg_type, or a field has the wrong type",
                                msgId: headerValue["msg_id"]?.stringValue ?? "")
        }
        guard !header.msgType.isEmpty else {
            throw ProtocolError(.invalidHeader, "msg_type is empty", msgId: header.msgId)
        }
        let major = header.version.split(separator: ".").first.flatMap { Int($0) }
        guard major == Wire.majorVersion else {
            throw ProtocolError(.unsupportedVersion, "header version '\(header.version)' is not \(Wire.majorVersion).x",
                                msgId: header.msgId)
        }
        let body: JSONValue
        do { body = try JSONText.parse(frames[2]) } catch {
            throw ProtocolError(.invalidJSON, "body frame is not JSON", msgId: header.msgId)
        }
        guard case .object = body else {
            throw ProtocolError(.invalidBody, "body must be a JSON object", msgId: header.msgId)
        }
        return Message(topic: topic, header: header, body: body)
    }
}

/// Builds messages with fresh ids, times and per-sender sequence numbers.
/// Not thread-safe: one factory per sending thread.
public struct MessageFactory: Sendable {
    public let sender: String
    public let session: String
    private var nextSeq: UInt64 = 1
    private var nextEventSeq: UInt64 = 1

    public init(sender: String, session: String = UUID().uuidString.lowercased()) {
        self.sender = sender
        self.session = session
    }

    private static let timeStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// The current time, ISO 8601 in UTC with milliseconds.
    public static func now() -> String { Date().formatted(timeStyle) }

    private mutating func header(_ type: String, parent: String = "", event: Bool = false) -> Header {
        let seq: UInt64
        if event { seq = nextEventSeq; nextEventSeq += 1 } else { seq = nextSeq; nextSeq += 1 }
        return Header(msgId: UUID().uuidString.lowercased(), msgType: type, sender: sender, session: session,
                      parentId: parent, seq: seq, time: Self.now())
    }

    public mutating func request(_ name: String, body: JSONValue = [:]) -> Message {
        Message(header: header(name.hasSuffix("_request") ? name : name + "_request"), body: body)
    }

    /// The reply to `request`: msg_type `<name>_reply`, parent_id = the request's msg_id.
    public mutating func reply(to request: Header, body: JSONValue) -> Message {
        let name: String
        if case .request(let n) = MessageKind(msgType: request.msgType) { name = n + "_reply" } else { name = "error_reply" }
        return Message(header: header(name, parent: request.msgId), body: body)
    }

    /// An error reply for a request that could not be read, or was refused.
    public mutating func errorReply(to request: Header?, _ error: ProtocolError) -> Message {
        let body = Replies.error(error.code, error.message)
        if let request { return reply(to: request, body: body) }
        return Message(header: header("error_reply", parent: error.msgId), body: body)
    }

    /// A stream message (PROTOCOL.md §4.1): like a reply, three frames and `parent_id` set to the
    /// request that opened the stream, but sent unasked, any number of times.
    public mutating func streamMessage(_ type: String, parent: String, body: JSONValue) -> Message {
        Message(header: header(type, parent: parent), body: body)
    }

    /// An event on topic `<service>.<event>`; seq counts this publisher's events alone, 1, 2, 3...
    /// so a subscriber sees a gap when it missed some.
    public mutating func event(_ topic: String, body: JSONValue) -> Message {
        Message(topic: topic, header: header(topic, event: true), body: body)
    }
}

/// Reply bodies every service uses.
public enum Replies {
    public static func ok(_ fields: [String: JSONValue] = [:]) -> JSONValue {
        var f = fields
        f["status"] = "ok"
        return .object(f)
    }

    /// A typed reply's body with `status: ok`.
    public static func ok(_ reply: some ReplyBody) -> JSONValue { ok(reply.json.objectValue ?? [:]) }

    public static func error(_ code: ErrorCode, _ message: String) -> JSONValue {
        ["status": "error", "code": .string(code.rawValue), "message": .string(message)]
    }

    /// Reads a reply body: the fields when ok, the error otherwise.
    public static func result(of body: JSONValue) -> Result<JSONValue, ProtocolError> {
        switch body["status"]?.stringValue {
        case "ok": return .success(body)
        case "error":
            let raw = body["code"]?.stringValue ?? ""
            let message = body["message"]?.stringValue ?? "error"
            // A code this reader does not know is kept in the message rather than lost.
            if let code = ErrorCode(rawValue: raw) { return .failure(ProtocolError(code, message)) }
            return .failure(ProtocolError(.internalError, raw.isEmpty ? message : "\(raw): \(message)"))
        default:
            return .failure(ProtocolError(.invalidBody, "reply has no status ok|error"))
        }
    }
}

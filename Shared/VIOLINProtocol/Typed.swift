#if canImport(Glibc)
import Glibc
#endif

/// Typed messages: each request and event of the catalogue is a type that lists its fields
/// (name, kind, range, required), is decoded and validated once, against that list, and is
/// encoded by the only code that builds its body. PROTOCOL.md's tables and these lists are
/// held equal by a test; so is every field's refusal (`invalid_body` naming the field).

/// One field of a body, as PROTOCOL.md lists it.
public struct FieldSpec: Sendable, Equatable {
    public indirect enum Kind: Sendable, Equatable {
        /// A non-empty string.
        case text
        /// Any string, empty included (empty: not given).
        case string
        /// A string or a whole number, kept as text (ids that some senders send as numbers).
        case label
        /// One of these strings.
        case choice([String])
        case integer(ClosedRange<Int>)
        case number(ClosedRange<Double>)
        case flag
        /// A VIOLIN id, 1-16,777,215.
        case vni
        /// A unicast MAC address, "aa:bb:cc:dd:ee:ff".
        case mac
        /// An IPv4 address with an optional port, "a.b.c.d[:port]"; the port 1-65535, or 0
        /// (any) where `anyPort`.
        case address(anyPort: Bool)
        case list(Kind)
        /// A ZeroMQ endpoint, "tcp://..." or "ipc://...".
        case endpoint
        /// A CURVE public key: 40 Z85 characters ("" for none).
        case curveKey
        /// A JSON object (its own fields are described in the text).
        case object
    }

    public let name: String
    public let kind: Kind
    public let required: Bool

    public static func required(_ name: String, _ kind: Kind) -> FieldSpec { FieldSpec(name: name, kind: kind, required: true) }
    public static func optional(_ name: String, _ kind: Kind) -> FieldSpec { FieldSpec(name: name, kind: kind, required: false) }
}

extension FieldSpec.Kind {
    /// What a refusal says the field must be.
    public var expected: String {
        switch self {
        case .text: "a non-empty string"
        case .string: "a string"
        case .label: "a string or a whole number"
        case .choice(let options): "one of " + options.joined(separator: ", ")
        case .integer(let r): "an integer \(r.lowerBound)-\(r.upperBound)"
        case .number(let r): r == Self.anyNumberRange ? "a number" : "a number \(Self.plain(r.lowerBound))-\(Self.plain(r.upperBound))"
        case .flag: "true or false"
        case .vni: "a VNI, an integer 1-16777215"
        case .mac: "a unicast MAC address like 02:00:00:00:00:01"
        case .address(let any): "an IPv4 address with an optional port, e.g. 10.0.0.1:4789" + (any ? " (port 0: any)" : "")
        case .list(let k): "a list, each " + k.expected
        case .endpoint: "a ZeroMQ endpoint (tcp:// or ipc://)"
        case .curveKey: "a CURVE public key (40 Z85 characters)"
        case .object: "an object"
        }
    }

    private static func plain(_ x: Double) -> String { x == x.rounded() && abs(x) < 9.0e15 ? String(Int(x)) : String(x) }

    /// Whether `value` is a valid value of this kind.
    public func accepts(_ value: JSONValue) -> Bool {
        switch self {
        case .text: return !(value.stringValue ?? "").isEmpty
        case .string: return value.stringValue != nil
        case .label: return value.stringValue != nil || Self.integer(value) != nil
        case .choice(let options): return value.stringValue.map(options.contains) ?? false
        case .integer(let r): return Self.integer(value).map(r.contains) ?? false
        case .number(let r):
            guard case .number(let x) = value, x.isFinite else { return false }
            return r.contains(x)
        case .flag: return value.boolValue != nil
        case .vni: return Self.integer(value).map((1...0xFF_FFFF).contains) ?? false
        case .mac: return value.stringValue.flatMap(MACAddress.init).map(\.isUnicast) ?? false
        case .address(let any): return value.stringValue.map { UnderlayAddress.isValid($0, anyPort: any) } ?? false
        case .list(let k):
            guard case .array(let items) = value else { return false }
            return items.allSatisfy(k.accepts)
        case .endpoint:
            guard let e = value.stringValue else { return false }
            return (e.hasPrefix("tcp://") || e.hasPrefix("ipc://")) && e.count > 6
        case .curveKey:
            guard let k = value.stringValue else { return false }
            return k.isEmpty || (k.utf8.count == 40 && k.allSatisfy { Self.z85.contains($0) })
        case .object:
            if case .object = value { return true }
            return false
        }
    }

    /// A count or a byte figure: a whole number 0-2^53.
    public static let count: Self = .integer(0...(1 << 53))
    /// Any finite number.
    public static let anyNumber: Self = .number(anyNumberRange)
    static let anyNumberRange = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude

    static let z85 = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")

    /// A JSON number that is a whole number within Int's range (never converted with a trap).
    static func integer(_ value: JSONValue) -> Int? {
        guard case .number(let x) = value, x.isFinite, x == x.rounded(), abs(x) < 9.0e15 else { return nil }
        return Int(x)
    }
}

/// A body validated against its field list; its accessors read what validation vouched for.
public struct Body: Sendable {
    public let value: JSONValue

    /// Checks every listed field: present when required, of its kind and range when present.
    /// Fields not listed are ignored (a newer client may send more).
    public init(validating value: JSONValue, against fields: [FieldSpec]) throws(ProtocolError) {
        guard case .object(let o) = value else { throw ProtocolError(.invalidBody, "the body must be a JSON object") }
        for f in fields {
            guard let v = o[f.name], v != .null else {
                if f.required { throw ProtocolError(.invalidBody, "\(f.name) is required: \(f.kind.expected)") }
                continue
            }
            guard f.kind.accepts(v) else { throw ProtocolError(.invalidBody, "\(f.name) must be \(f.kind.expected)") }
        }
        self.value = value
    }

    public func has(_ name: String) -> Bool { value[name] != nil && value[name] != .null }
    public func text(_ name: String) -> String? { has(name) ? value[name]?.stringValue : nil }
    /// A `label` field as text.
    public func label(_ name: String) -> String? { text(name) ?? integer(name).map(String.init) }
    public func integer(_ name: String) -> Int? { value[name].flatMap(FieldSpec.Kind.integer) }
    public func number(_ name: String) -> Double? { has(name) ? value[name]?.numberValue : nil }
    public func flag(_ name: String) -> Bool? { has(name) ? value[name]?.boolValue : nil }
    public func vni(_ name: String = "vni") -> UInt32? { integer(name).map { UInt32($0) } }
    public func mac(_ name: String = "mac") -> MACAddress? { text(name).flatMap(MACAddress.init) }
    public func texts(_ name: String) -> [String]? {
        guard has(name), case .array(let items)? = value[name] else { return nil }
        return items.compactMap(\.stringValue)
    }
}

/// A request's body as a type.
public protocol RequestBody: Sendable, Equatable {
    /// The wire type, `<name>_request`.
    static var msgType: String { get }
    static var fields: [FieldSpec] { get }
    /// Its ok reply.
    associatedtype Reply: ReplyBody
    /// Whether sending it twice does no more than sending it once (such requests are retried).
    static var idempotent: Bool { get }
    /// Where the service runs it (`quick` unless the type says otherwise).
    static var lane: RequestLane { get }
    /// A valid instance (the tests build every refusal from it).
    static var example: Self { get }
    /// From a validated body; throws `invalid_body` only for rules across fields.
    init(_ body: Body) throws(ProtocolError)
    /// The body as it travels.
    var json: JSONValue { get }
}

extension RequestBody {
    public static func decode(_ value: JSONValue) throws(ProtocolError) -> Self {
        try Self(Body(validating: value, against: fields))
    }

    /// The top-level fields of its ok reply (besides `status`), as PROTOCOL.md lists them.
    public static var replyFields: [String] { Reply.fields.map(\.name) }

    public static var lane: RequestLane { .quick }
}

/// Where a service runs a request. `quick`: on its request thread, between other requests —
/// anything answered from memory or from a local call of a few milliseconds. `long`: on its
/// worker, one long request after another, so `ping`, `status` and every quick request are
/// answered meanwhile — anything that starts a process, calls another host or may wait
/// seconds. The client waits for a long request's reply as for any other (PROTOCOL.md §4).
public enum RequestLane: Sendable { case quick, long }

/// An ok reply's body as a type (`status` aside, which the runtime adds). Its field list is
/// checked before its Codable properties are read, so ranges and required fields hold for
/// every reply a client accepts; fields not listed are ignored (a newer service may send more).
public protocol ReplyBody: Codable, Sendable, Equatable {
    static var fields: [FieldSpec] { get }
}

extension ReplyBody {
    /// Validates an ok reply's body against the field list, then reads it.
    public static func decode(_ value: JSONValue) throws(ProtocolError) -> Self {
        _ = try Body(validating: value, against: fields)
        do { return try JSONText.view(Self.self, of: value) } catch {
            throw ProtocolError(.invalidBody, "the reply does not read as \(Self.self): \(error)")
        }
    }

    /// The body as it travels, without `status`.
    public var json: JSONValue { JSONText.value(of: self) }
}

/// The reply of a request that answers with nothing but `status`.
public struct EmptyReply: ReplyBody {
    public static let fields: [FieldSpec] = []
    public init() {}
}

/// A request with no fields.
public protocol EmptyRequest: RequestBody { init() }

extension EmptyRequest {
    public static var fields: [FieldSpec] { [] }
    public static var example: Self { Self() }
    public init(_ body: Body) { self.init() }
    public var json: JSONValue { [:] }
}

/// An event's body as a type.
public protocol EventBody: Sendable, Equatable {
    /// `<service>.<event>`.
    static var topic: String { get }
    static var fields: [FieldSpec] { get }
    var json: JSONValue { get }
}

extension EventBody {
    /// The event name without the service, as `publish` takes it.
    public static var event: String { String(topic.split(separator: ".", maxSplits: 1).last ?? "") }
}

/// A service's requests, one handler per type: the runtime's `handle` looks the type up here
/// and calls the handler with the decoded body; no service compares type strings.
public struct RequestTable {
    /// A handler gets the request's body and what the runtime knows of who sent it (nil when
    /// it knows nothing, as for in-process calls).
    public typealias Handler = (JSONValue, Any?) throws -> JSONValue
    private var handlers: [String: Handler] = [:]
    private var long: Set<String> = []
    public typealias Lane = RequestLane

    public init() {}

    /// `handle` throws `ProtocolError`s (anything else becomes `internal_error`).
    public mutating func on<R: RequestBody>(_ type: R.Type, _ handle: @escaping (R) throws -> R.Reply) {
        raw(type) { r in Replies.ok(try handle(r)) }
    }

    /// A handler that also needs to know who asked (a stream's owner): `Sender` is what the
    /// service's runtime passes as the request's sender (ServiceKit's `Route`).
    public mutating func on<R: RequestBody, Sender>(_ type: R.Type, from: Sender.Type, _ handle: @escaping (R, Sender) throws -> R.Reply) {
        add(type) { value, sender in
            guard let sender = sender as? Sender else {
                throw ProtocolError(.unavailable, "\(R.msgType) needs a client connection (a DEALER or REQ socket)")
            }
            return Replies.ok(try handle(try R.decode(value), sender))
        }
    }

    /// A handler given whatever the runtime passed as the request's sender (nil in-process).
    public mutating func on<R: RequestBody>(_ type: R.Type, withSender handle: @escaping (R, Any?) throws -> R.Reply) {
        add(type) { value, sender in Replies.ok(try handle(try R.decode(value), sender)) }
    }

    /// A handler that builds its reply body itself, `status` included (the hottest request,
    /// `ping`, skips the encoder); the reply type still says what it must hold.
    public mutating func raw<R: RequestBody>(_ type: R.Type, _ handle: @escaping (R) throws -> JSONValue) {
        add(type) { value, _ in try handle(try R.decode(value)) }
    }

    private mutating func add<R: RequestBody>(_ type: R.Type, _ handler: @escaping Handler) {
        precondition(handlers[R.msgType] == nil, "two handlers for \(R.msgType)")
        handlers[R.msgType] = handler
        if R.lane == .long { long.insert(R.msgType) }
    }

    /// The lane of a request type (unknown types are quick: they are refused at once).
    public func lane(of msgType: String) -> Lane { long.contains(msgType) ? .long : .quick }

    /// The reply body, or nil when the table has no handler for the message's type.
    public func handle(_ message: Message, from sender: Any? = nil) throws(ProtocolError) -> JSONValue? {
        guard let h = handlers[message.header.msgType] else { return nil }
        do { return try h(message.body, sender) } catch let e as ProtocolError { throw e } catch {
            throw ProtocolError(.internalError, "\(error)")
        }
    }

    /// A request made in-process (command-line configuration), through the same handler.
    public func call<R: RequestBody>(_ request: R) throws(ProtocolError) -> R.Reply {
        guard let h = handlers[R.msgType] else { throw ProtocolError(.unknownMessageType, "no handler for \(R.msgType)") }
        let body: JSONValue
        do { body = try h(request.json, nil) } catch let e as ProtocolError { throw e } catch {
            throw ProtocolError(.internalError, "\(error)")
        }
        return try R.Reply.decode(body)
    }

    /// The request types the table answers.
    public var msgTypes: Set<String> { Set(handlers.keys) }
}

// MARK: - Values the protocol checks once

/// A MAC address, parsed from "aa:bb:cc:dd:ee:ff".
public struct MACAddress: Sendable, Hashable, CustomStringConvertible {
    public let octets: [UInt8]

    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var o: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            o.append(b)
        }
        octets = o
    }

    /// Neither multicast (nor broadcast) nor all zeros.
    public var isUnicast: Bool { octets[0] & 1 == 0 && octets.contains { $0 != 0 } }

    public var description: String {
        octets.map { b in let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }
}

/// "host:port" text split: "10.0.0.1:4789", "[2001:db8::1]:4789", or either without its port
/// ("10.0.0.1", "[2001:db8::1]", or a bare "2001:db8::1"). Nil when brackets are unbalanced or
/// followed by anything but ":port". Neither part is checked here.
public enum HostPort {
    public static func split(_ text: String) -> (host: Substring, port: Substring?)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (host, nil) }
            guard rest.hasPrefix(":") else { return nil }
            return (host, rest.dropFirst())
        }
        let colons = text.filter { $0 == ":" }.count
        guard colons == 1, let colon = text.firstIndex(of: ":") else { return (Substring(text), nil) }
        return (text[..<colon], text[text.index(after: colon)...])
    }

    /// A port's text as a number: 1-5 digits, 1-65535 (0 too with `allowZero`).
    public static func port(_ text: Substring, allowZero: Bool) -> UInt16? {
        guard (1...5).contains(text.count), text.allSatisfy({ $0.isASCII && $0.isNumber }), let p = UInt16(text), p > 0 || allowZero else { return nil }
        return p
    }
}

/// An underlay address as fields carry it: IPv4 "a.b.c.d[:port]" or IPv6 "[addr][:port]".
public enum UnderlayAddress {
    public static func isValid(_ text: String, anyPort: Bool) -> Bool {
        guard let (host, port) = HostPort.split(text) else { return false }
        if let port, HostPort.port(port, allowZero: anyPort) == nil { return false }
        if text.hasPrefix("[") {
            var a6 = in6_addr()
            return host.count <= 45 && inet_pton(AF_INET6, String(host), &a6) == 1
        }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { (1...3).contains($0.count) && $0.allSatisfy(\.isNumber) && UInt8($0) != nil }
    }
}

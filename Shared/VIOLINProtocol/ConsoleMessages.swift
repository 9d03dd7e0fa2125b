import Foundation

/// The serial console of a VM, as a stream (PROTOCOL.md §4.1 and §8.5): a client opens it on
/// the VM's executor over a `DEALER` socket, sends input with requests and receives the output
/// as stream messages on the same connection until it closes the stream or the executor does.
extension ExecutorAPI {
    /// Stream messages: sent by the executor, unasked, to the client that opened the stream.
    public static let streams: [any EventBody.Type] = [ConsoleOutput.self, ConsoleClosed.self]

    /// Largest input or output chunk, bytes (before base64).
    public static let consoleChunkBytes = 4096

    public struct ConsoleOpen: RequestBody {
        public static let msgType = "console_open_request"
        public static let fields: [FieldSpec] = [.required("vm", .text)]
        public typealias Reply = ConsoleOpenReply
        public static let idempotent = false
        public static let example = ConsoleOpen(vm: "a1")
        public var vm: String
        public init(vm: String) { self.vm = vm }
        public init(_ b: Body) { vm = b.text("vm")! }
        public var json: JSONValue { ["vm": .string(vm)] }
    }

    public struct ConsoleOpenReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("stream", .text), .required("vm", .text), .required("host", .text),
                                                 .required("idle_timeout_s", .count)]
        public var stream: String, vm: String, host: String
        /// The executor closes a stream that has sent no request for this long.
        public var idleTimeoutS: Int
        public init(stream: String, vm: String, host: String, idleTimeoutS: Int) {
            self.stream = stream; self.vm = vm; self.host = host; self.idleTimeoutS = idleTimeoutS
        }
        enum CodingKeys: String, CodingKey { case stream, vm, host, idleTimeoutS = "idle_timeout_s" }
    }

    /// Bytes typed into the console (base64); empty data keeps an idle stream open.
    public struct ConsoleInput: RequestBody {
        public static let msgType = "console_input_request"
        public static let fields: [FieldSpec] = [.required("stream", .text), .required("data", .string)]
        public typealias Reply = ConsoleInputReply
        public static let idempotent = false
        public static let example = ConsoleInput(stream: "s-1", bytes: Array("uname -a\n".utf8))
        public var stream: String
        public var bytes: [UInt8]
        public init(stream: String, bytes: [UInt8]) { self.stream = stream; self.bytes = bytes }
        public init(_ b: Body) throws(ProtocolError) {
            stream = b.text("stream")!
            bytes = try Self.decodeData(b.text("data") ?? "")
        }
        public var json: JSONValue { ["stream": .string(stream), "data": .string(Data(bytes).base64EncodedString())] }

        /// Base64 of at most `consoleChunkBytes` bytes, or `invalid_body` naming `data`.
        static func decodeData(_ text: String) throws(ProtocolError) -> [UInt8] {
            guard text.utf8.count <= (consoleChunkBytes + 2) / 3 * 4 + 4, let d = Data(base64Encoded: text) else {
                throw ProtocolError(.invalidBody, "data must be base64 of at most \(consoleChunkBytes) bytes")
            }
            guard d.count <= consoleChunkBytes else { throw ProtocolError(.invalidBody, "data must be base64 of at most \(consoleChunkBytes) bytes") }
            return Array(d)
        }
    }

    public struct ConsoleInputReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("stream", .text), .required("written", .count)]
        public var stream: String
        public var written: Int
        public init(stream: String, written: Int) { self.stream = stream; self.written = written }
    }

    public struct ConsoleClose: RequestBody {
        public static let msgType = "console_close_request"
        public static let fields: [FieldSpec] = [.required("stream", .text)]
        public typealias Reply = ConsoleInputReply
        public static let idempotent = true
        public static let example = ConsoleClose(stream: "s-1")
        public var stream: String
        public init(stream: String) { self.stream = stream }
        public init(_ b: Body) { stream = b.text("stream")! }
        public var json: JSONValue { ["stream": .string(stream)] }
    }

    /// What the console printed, in order (`seq` 1, 2, 3, ... per stream; base64 `data`).
    public struct ConsoleOutput: EventBody {
        public static let topic = "console.output"
        public static let fields: [FieldSpec] = [.required("stream", .text), .required("seq", .count), .required("data", .string)]
        public var stream: String, seq: Int, bytes: [UInt8]
        public init(stream: String, seq: Int, bytes: [UInt8]) { self.stream = stream; self.seq = seq; self.bytes = bytes }
        public init?(_ v: JSONValue) {
            guard let s = v["stream"]?.stringValue, let n = v["seq"]?.intValue, let t = v["data"]?.stringValue,
                  let d = Data(base64Encoded: t) else { return nil }
            self.init(stream: s, seq: n, bytes: Array(d))
        }
        public var json: JSONValue { ["stream": .string(stream), "seq": .number(Double(seq)), "data": .string(Data(bytes).base64EncodedString())] }
    }

    /// The last message of a stream. `reason`: `closed` (the client asked), `idle` (no request
    /// within the idle timeout), `migrated` (the VM moved; `to` names the host), `vm_gone`
    /// (destroyed or stopped), `error` (`message` says what).
    public struct ConsoleClosed: EventBody {
        public static let topic = "console.closed"
        public static let reasons = ["closed", "idle", "migrated", "vm_gone", "error"]
        public static let fields: [FieldSpec] = [.required("stream", .text), .required("reason", .choice(reasons)),
                                                 .required("to", .string), .required("message", .string)]
        public var stream: String, reason: String, to: String, message: String
        public init(stream: String, reason: String, to: String = "", message: String = "") {
            self.stream = stream; self.reason = reason; self.to = to; self.message = message
        }
        public init?(_ v: JSONValue) {
            guard let s = v["stream"]?.stringValue, let r = v["reason"]?.stringValue else { return nil }
            self.init(stream: s, reason: r, to: v["to"]?.stringValue ?? "", message: v["message"]?.stringValue ?? "")
        }
        public var json: JSONValue { ["stream": .string(stream), "reason": .string(reason), "to": .string(to), "message": .string(message)] }
    }
}

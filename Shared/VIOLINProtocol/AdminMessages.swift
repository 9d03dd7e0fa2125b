/// The requests every service answers (PROTOCOL.md §5).
public enum AdminAPI {
    public static let requests: [any RequestBody.Type] = [Ping.self, Status.self, Metrics.self]

    public struct Ping: RequestBody {
        public static let msgType = "ping_request"
        public static let fields: [FieldSpec] = []
        public static let replyFields = ["service", "instance", "time"]
        public static let idempotent = true
        public static let example = Ping()
        public init() {}
        public init(_ body: Body) {}
        public var json: JSONValue { [:] }
    }

    public struct Status: RequestBody {
        public static let msgType = "status_request"
        public static let fields: [FieldSpec] = []
        public static let replyFields = ["service", "instance", "version", "pid", "uptime_s", "started_at", "endpoints", "state"]
        public static let idempotent = true
        public static let example = Status()
        public init() {}
        public init(_ body: Body) {}
        public var json: JSONValue { [:] }
    }

    public struct Metrics: RequestBody {
        public static let msgType = "metrics_request"
        public static let fields: [FieldSpec] = []
        public static let replyFields = ["service", "counters", "gauges"]
        public static let idempotent = true
        public static let example = Metrics()
        public init() {}
        public init(_ body: Body) {}
        public var json: JSONValue { [:] }
    }
}

/// The requests every service answers (PROTOCOL.md §5).
public enum AdminAPI {
    public static let requests: [any RequestBody.Type] = [Ping.self, Status.self, Metrics.self]

    public struct Ping: EmptyRequest {
        public static let msgType = "ping_request"
        public static let replyFields = ["service", "instance", "time"]
        public static let idempotent = true
        public init() {}
    }

    public struct Status: EmptyRequest {
        public static let msgType = "status_request"
        public static let replyFields = ["service", "instance", "version", "pid", "uptime_s", "started_at", "endpoints", "state"]
        public static let idempotent = true
        public init() {}
    }

    public struct Metrics: EmptyRequest {
        public static let msgType = "metrics_request"
        public static let replyFields = ["service", "counters", "gauges"]
        public static let idempotent = true
        public init() {}
    }
}

/// The requests every service answers (PROTOCOL.md §5).
public enum AdminAPI {
    public static let requests: [any RequestBody.Type] = [Ping.self, Status.self, Metrics.self]

    public struct Ping: EmptyRequest {
        public static let msgType = "ping_request"
        public typealias Reply = PingReply
        public static let idempotent = true
        public init() {}
    }

    public struct Status: EmptyRequest {
        public static let msgType = "status_request"
        public typealias Reply = StatusReply
        public static let idempotent = true
        public init() {}
    }

    public struct Metrics: EmptyRequest {
        public static let msgType = "metrics_request"
        public typealias Reply = MetricsReply
        public static let idempotent = true
        public init() {}
    }
}

/// The message catalogue: every request, reply and event of protocol 1, with its body.
/// PROTOCOL.md documents the same list for clients in other languages; a test keeps the
/// two in step.
public enum Catalogue {
    /// Requests every service answers.
    public static let adminRequests = AdminAPI.requests.map { $0.msgType }

    /// Events every service publishes, as `<service>.<event>`.
    public static let serviceEvents = [ServiceStarted.event, Heartbeat.event, ServiceStopping.event]
    /// Published by a service serving over CURVE when it refuses a client (PROTOCOL.md).
    public static let securityEvents = [AuthRefused.event]

    /// Requests and events of `violin-switch`'s control socket (PROTOCOL.md §8.1): from its types.
    public static let switchRequests = SwitchAPI.requests.map { $0.msgType }
    public static let switchEvents = SwitchAPI.events.map { $0.topic }

    /// Requests and events of `violin-monitor` (PROTOCOL.md §8.3).
    public static let monitorRequests = MonitorAPI.requests.map { $0.msgType }
    public static let monitorEvents = MonitorAPI.events.map { $0.topic }

    /// Requests and events of `violin-policy` (PROTOCOL.md §8.4): from its types.
    public static let policyRequests = PolicyAPI.requests.map { $0.msgType }
    public static let policyEvents = PolicyAPI.events.map { $0.topic }

    /// Requests and events of `violin-executor` (PROTOCOL.md §8.5): from its types.
    public static let executorRequests = ExecutorAPI.requests.map { $0.msgType }
    public static let executorEvents = ExecutorAPI.events.map { $0.topic }

    /// Requests and events of `violin-mesh` (PROTOCOL.md §8.2): from its types.
    public static let meshRequests = MeshAPI.requests.map { $0.msgType }
    public static let meshEvents = MeshAPI.events.map { $0.topic }

    /// Every message type named in the catalogue, with `<service>` standing for any service.
    public static let allTypes: [String] =
        adminRequests + adminRequests.map { $0.replacingSuffix("_request", with: "_reply") }
        + ["error_reply"] + (serviceEvents + securityEvents).map { "<service>.\($0)" } + switchRequests + switchEvents + meshRequests + meshEvents + monitorRequests + monitorEvents + policyRequests + policyEvents
        + executorRequests + executorEvents
}

extension String {
    func replacingSuffix(_ suffix: String, with other: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + other : self
    }
}

// MARK: - Bodies (typed views; readers ignore unknown fields)

public struct PingReply: ReplyBody {
    public static let fields: [FieldSpec] = [.required("service", .text), .required("instance", .text), .required("time", .text)]
    public var status: String
    public var service: String
    public var instance: String
    public var time: String
    public init(service: String, instance: String, time: String) {
        self.status = "ok"; self.service = service; self.instance = instance; self.time = time
    }
}

public struct StatusReply: ReplyBody {
    public static let fields: [FieldSpec] = [
        .required("service", .text), .required("instance", .text), .required("version", .text), .required("pid", .count),
        .required("uptime_s", .number(0...1e12)), .required("started_at", .text), .required("endpoints", .object), .required("state", .object),
    ]
    public var status: String
    public var service: String
    public var instance: String
    public var version: String
    public var pid: Int
    public var uptimeS: Double
    public var startedAt: String
    public var endpoints: [String: String]
    public var state: JSONValue

    public init(service: String, instance: String, version: String, pid: Int, uptimeS: Double,
                startedAt: String, endpoints: [String: String], state: JSONValue = [:]) {
        self.status = "ok"; self.service = service; self.instance = instance; self.version = version
        self.pid = pid; self.uptimeS = uptimeS; self.startedAt = startedAt; self.endpoints = endpoints
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case status, service, instance, version, pid, uptimeS = "uptime_s", startedAt = "started_at", endpoints, state
    }
}

public struct MetricsReply: ReplyBody {
    public static let fields: [FieldSpec] = [.required("service", .text), .required("counters", .object), .required("gauges", .object)]
    public var status: String
    public var service: String
    public var counters: [String: Int]
    public var gauges: [String: Double]
    public init(service: String, counters: [String: Int], gauges: [String: Double]) {
        self.status = "ok"; self.service = service; self.counters = counters; self.gauges = gauges
    }
}

/// The topic of a service's event: `<service>.<event>`.
public enum Topic {
    public static func of(_ service: String, _ event: String) -> String { service + "." + event }
}

/// `<service>.auth_refused`: a client refused by CURVE (PROTOCOL.md §8.6).
public struct AuthRefused: Codable, Equatable, Sendable {
    public static let event = "auth_refused"
    public var address: String
    public var key: String
    public var mechanism: String
    /// For a request refused by the authorization table: its type, the key's roles, and why.
    public var msgType: String?
    public var role: String?
    public var reason: String?
    public init(address: String, key: String, mechanism: String, msgType: String? = nil, role: String? = nil, reason: String? = nil) {
        self.address = address; self.key = key; self.mechanism = mechanism
        self.msgType = msgType; self.role = role; self.reason = reason
    }
    enum CodingKeys: String, CodingKey { case address, key, mechanism, msgType = "msg_type", role, reason }
}

public struct ServiceStarted: Codable, Equatable, Sendable {
    public static let event = "started"
    public var service: String
    public var instance: String
    public var version: String
    public var pid: Int
    public var endpoints: [String: String]
    public init(service: String, instance: String, version: String, pid: Int, endpoints: [String: String]) {
        self.service = service; self.instance = instance; self.version = version; self.pid = pid
        self.endpoints = endpoints
    }
}

public struct Heartbeat: Codable, Equatable, Sendable {
    public static let event = "heartbeat"
    public var service: String
    public var instance: String
    public var uptimeS: Double
    public var requestsHandled: Int
    public init(service: String, instance: String, uptimeS: Double, requestsHandled: Int) {
        self.service = service; self.instance = instance; self.uptimeS = uptimeS
        self.requestsHandled = requestsHandled
    }
    enum CodingKeys: String, CodingKey {
        case service, instance, uptimeS = "uptime_s", requestsHandled = "requests_handled"
    }
}

public struct ServiceStopping: Codable, Equatable, Sendable {
    public static let event = "stopping"
    public var service: String
    public var instance: String
    public var reason: String
    public init(service: String, instance: String, reason: String) {
        self.service = service; self.instance = instance; self.reason = reason
    }
}

extension Catalogue {
    /// Every typed event by topic.
    public static let eventTypes: [String: any EventBody.Type] = Dictionary(
        (SwitchAPI.events + MeshAPI.events + MonitorAPI.events + PolicyAPI.events + ExecutorAPI.events).map { ($0.topic, $0) },
        uniquingKeysWith: { a, _ in a })

    /// Whether an event's body reads as its topic's type (an event the catalogue does not type —
    /// `started`, `heartbeat`, `stopping`, `auth_refused` — passes when its body is an object).
    public static func validEvent(topic: String, body: JSONValue) -> Bool {
        guard let type = eventTypes[topic] else { return body.objectValue != nil }
        return (try? Body(validating: body, against: type.fields)) != nil
    }
}

/// `violin-policy`'s requests and events (PROTOCOL.md §8.4).
public enum PolicyAPI {
    public static let requests: [any RequestBody.Type] = [
        RegisterDomain.self, RegisterHost.self, RemoveHost.self, CreateViolin.self, DestroyViolin.self, SetMode.self,
        Evaluate.self, Explain.self, Decisions.self, Inventory.self, DrainHost.self,
    ]
    public static let events: [any EventBody.Type] = [Decided.self, ModeChanged.self, HostDraining.self, DriftDetected.self]

    /// The two ways the policy acts on its decisions.
    public enum Mode: String, Sendable, CaseIterable, Codable { case recommend, automatic }

    static let positive = FieldSpec.Kind.integer(1...(1 << 30))

    public struct RegisterDomain: RequestBody {
        public static let msgType = "register_domain_request"
        public static let fields: [FieldSpec] = [.required("id", .text)]
        public typealias Reply = IDReply
        public static let idempotent = false
        public static let example = RegisterDomain(id: "d1")
        public var id: String
        public init(id: String) { self.id = id }
        public init(_ b: Body) { id = b.text("id")! }
        public var json: JSONValue { ["id": .string(id)] }
    }

    public struct RegisterHost: RequestBody {
        public static let msgType = "register_host_request"
        public static let fields: [FieldSpec] = [
            .required("id", .text), .required("domain", .text), .required("cores", positive), .required("memory_mb", positive),
            .optional("executor", .string), .optional("monitor", .string), .optional("key", .curveKey),
        ]
        public typealias Reply = IDReply
        public static let idempotent = true
        public static let example = RegisterHost(id: "h1", domain: "d1", cores: 2, memoryMB: 4096, executor: "tcp://10.0.0.1:7704")
        public var id: String, domain: String
        public var cores: Int, memoryMB: Int
        public var executor: String, monitor: String, key: String
        public init(id: String, domain: String, cores: Int, memoryMB: Int, executor: String = "", monitor: String = "", key: String = "") {
            self.id = id; self.domain = domain; self.cores = cores; self.memoryMB = memoryMB
            self.executor = executor; self.monitor = monitor; self.key = key
        }
        public init(_ b: Body) {
            self.init(id: b.text("id")!, domain: b.text("domain")!, cores: b.integer("cores")!, memoryMB: b.integer("memory_mb")!,
                      executor: b.text("executor") ?? "", monitor: b.text("monitor") ?? "", key: b.text("key") ?? "")
        }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["id": .string(id), "domain": .string(domain), "cores": .number(Double(cores)),
                                          "memory_mb": .number(Double(memoryMB))]
            if !executor.isEmpty { o["executor"] = .string(executor) }
            if !monitor.isEmpty { o["monitor"] = .string(monitor) }
            if !key.isEmpty { o["key"] = .string(key) }
            return .object(o)
        }
    }

    public struct RemoveHost: RequestBody {
        public static let msgType = "remove_host_request"
        public static let fields: [FieldSpec] = [.required("id", .text)]
        public typealias Reply = IDReply
        public static let idempotent = false
        public static let example = RemoveHost(id: "h1")
        public var id: String
        public init(id: String) { self.id = id }
        public init(_ b: Body) { id = b.text("id")! }
        public var json: JSONValue { ["id": .string(id)] }
    }

    public struct CreateViolin: RequestBody {
        /// A VM of the VIOLIN, where it runs now.
        public struct VM: Sendable, Equatable {
            public var id: String, memoryMB: Int, host: String
            public init(id: String, memoryMB: Int, host: String) { self.id = id; self.memoryMB = memoryMB; self.host = host }
        }
        public static let msgType = "create_violin_request"
        public static let fields: [FieldSpec] = [
            .required("id", .text), .required("home_domain", .text), .required("head", .text), .required("vms", .list(.object)),
        ]
        public typealias Reply = IDReply
        public static let idempotent = false
        public static let example = CreateViolin(id: "A", homeDomain: "d1", head: "a1",
                                                 vms: [VM(id: "a1", memoryMB: 128, host: "h1"), VM(id: "a2", memoryMB: 128, host: "h2")])
        public var id: String, homeDomain: String, head: String
        public var vms: [VM]
        public init(id: String, homeDomain: String, head: String, vms: [VM]) {
            self.id = id; self.homeDomain = homeDomain; self.head = head; self.vms = vms
        }
        public init(_ b: Body) throws(ProtocolError) {
            id = b.text("id")!; homeDomain = b.text("home_domain")!; head = b.text("head")!
            let items = b.value["vms"]?.items ?? []
            guard !items.isEmpty else { throw ProtocolError(.invalidBody, "vms must be a non-empty list") }
            vms = []
            for (i, item) in items.enumerated() {
                let v: Body
                do { v = try Body(validating: item, against: [.required("id", .text), .required("memory_mb", positive), .required("host", .text)]) } catch {
                    throw ProtocolError(.invalidBody, "vms[\(i)]: \(error.message)")
                }
                vms.append(VM(id: v.text("id")!, memoryMB: v.integer("memory_mb")!, host: v.text("host")!))
            }
        }
        public var json: JSONValue {
            ["id": .string(id), "home_domain": .string(homeDomain), "head": .string(head),
             "vms": .array(vms.map { ["id": .string($0.id), "memory_mb": .number(Double($0.memoryMB)), "host": .string($0.host)] })]
        }
    }

    public struct DestroyViolin: RequestBody {
        public static let msgType = "destroy_violin_request"
        public static let fields: [FieldSpec] = [.required("id", .text)]
        public typealias Reply = IDReply
        public static let idempotent = false
        public static let example = DestroyViolin(id: "A")
        public var id: String
        public init(id: String) { self.id = id }
        public init(_ b: Body) { id = b.text("id")! }
        public var json: JSONValue { ["id": .string(id)] }
    }

    public struct SetMode: RequestBody {
        public static let msgType = "set_mode_request"
        public static let fields: [FieldSpec] = [.required("mode", .choice(Mode.allCases.map(\.rawValue)))]
        public typealias Reply = ModeReply
        public static let idempotent = true
        public static let example = SetMode(mode: .automatic)
        public var mode: Mode
        public init(mode: Mode) { self.mode = mode }
        public init(_ b: Body) { mode = Mode(rawValue: b.text("mode")!)! }
        public var json: JSONValue { ["mode": .string(mode.rawValue)] }
    }

    public struct Evaluate: EmptyRequest {
        public static let msgType = "evaluate_request"
        public typealias Reply = DecisionsReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public init() {}
    }

    public struct Explain: EmptyRequest {
        public static let msgType = "explain_request"
        public typealias Reply = ExplainReply
        public static let idempotent = true
        public init() {}
    }

    public struct Decisions: RequestBody {
        public static let msgType = "decisions_request"
        public static let fields: [FieldSpec] = [.optional("limit", .integer(1...10_000))]
        public typealias Reply = DecisionsReply
        public static let idempotent = true
        public static let example = Decisions(limit: 10)
        public var limit: Int
        public init(limit: Int = 50) { self.limit = limit }
        public init(_ b: Body) { limit = b.integer("limit") ?? 50 }
        public var json: JSONValue { ["limit": .number(Double(limit))] }
    }

    public struct Inventory: EmptyRequest {
        public static let msgType = "inventory_request"
        public typealias Reply = InventoryReply
        public static let idempotent = true
        public init() {}
    }

    public struct DrainHost: RequestBody {
        public static let msgType = "drain_host_request"
        public static let fields: [FieldSpec] = [.required("id", .text)]
        public typealias Reply = DrainReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = DrainHost(id: "h4")
        public var id: String
        public init(id: String) { self.id = id }
        public init(_ b: Body) { id = b.text("id")! }
        public var json: JSONValue { ["id": .string(id)] }
    }

    // MARK: Replies

    /// The id of what was registered, removed, created or destroyed.
    public struct IDReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("id", .text)]
        public var id: String
        public init(id: String) { self.id = id }
    }

    public struct ModeReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("mode", .choice(Mode.allCases.map(\.rawValue)))]
        public var mode: Mode
        public init(mode: Mode) { self.mode = mode }
    }

    public struct DecisionsReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("decisions", .list(.object))]
        /// As the ledger holds them (`id`, `time`, `kind`, `decision`, `reason`, `mode`, `outcome`),
        /// or as `evaluate` made them.
        public var decisions: [JSONValue]
        public init(decisions: [JSONValue]) { self.decisions = decisions }
    }

    public struct ExplainReply: ReplyBody {
        public struct Host: Codable, Sendable, Equatable {
            public var id: String, domain: String
            public var cores: Int
            public var score: Double
            public var highDemandVMs: Int
            public var load: Double
            public init(id: String, domain: String, cores: Int, score: Double, highDemandVMs: Int, load: Double) {
                self.id = id; self.domain = domain; self.cores = cores; self.score = score; self.highDemandVMs = highDemandVMs; self.load = load
            }
            enum CodingKeys: String, CodingKey { case id, domain, cores, score, highDemandVMs = "high_demand_vms", load }
        }
        public static let fields: [FieldSpec] = [.required("hosts", .list(.object)), .required("deviation", .anyNumber)]
        public var hosts: [Host]
        public var deviation: Double
        public init(hosts: [Host], deviation: Double) { self.hosts = hosts; self.deviation = deviation }
    }

    public struct InventoryReply: ReplyBody {
        public struct Host: Codable, Sendable, Equatable {
            public var id: String, domain: String
            public var cores: Int, memoryMB: Int
            /// Endpoints and CURVE key ("" when not known).
            public var executor: String, monitor: String, key: String
            public var draining: Bool
            public init(id: String, domain: String, cores: Int, memoryMB: Int, executor: String, monitor: String, key: String, draining: Bool) {
                self.id = id; self.domain = domain; self.cores = cores; self.memoryMB = memoryMB
                self.executor = executor; self.monitor = monitor; self.key = key; self.draining = draining
            }
            enum CodingKeys: String, CodingKey { case id, domain, cores, memoryMB = "memory_mb", executor, monitor, key, draining }
        }
        public struct Violin: Codable, Sendable, Equatable {
            public var id: String, homeDomain: String, head: String
            public init(id: String, homeDomain: String, head: String) { self.id = id; self.homeDomain = homeDomain; self.head = head }
            enum CodingKeys: String, CodingKey { case id, homeDomain = "home_domain", head }
        }
        public struct VM: Codable, Sendable, Equatable {
            public var id: String, violin: String
            public var memoryMB: Int
            /// "" while placed nowhere.
            public var host: String
            public init(id: String, violin: String, memoryMB: Int, host: String) { self.id = id; self.violin = violin; self.memoryMB = memoryMB; self.host = host }
            enum CodingKeys: String, CodingKey { case id, violin, memoryMB = "memory_mb", host }
        }
        public static let fields: [FieldSpec] = [
            .required("domains", .list(.text)), .required("hosts", .list(.object)), .required("violins", .list(.object)),
            .required("vms", .list(.object)), .required("mode", .choice(Mode.allCases.map(\.rawValue))), .required("policy", .text),
        ]
        public var domains: [String]
        public var hosts: [Host]
        public var violins: [Violin]
        public var vms: [VM]
        public var mode: String
        public var policy: String
        public init(domains: [String], hosts: [Host], violins: [Violin], vms: [VM], mode: String, policy: String) {
            self.domains = domains; self.hosts = hosts; self.violins = violins; self.vms = vms; self.mode = mode; self.policy = policy
        }
    }

    /// One VM a drain sends away.
    public struct Move: Codable, Sendable, Equatable {
        public var vm: String, to: String
        /// `sent` or `failed: ...`.
        public var outcome: String
        public init(vm: String, to: String, outcome: String) { self.vm = vm; self.to = to; self.outcome = outcome }
    }

    public struct DrainReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("id", .text), .required("moves", .list(.object)), .required("stuck", .list(.text))]
        public var id: String
        public var moves: [Move]
        /// VMs no other host can take.
        public var stuck: [String]
        public init(id: String, moves: [Move], stuck: [String]) { self.id = id; self.moves = moves; self.stuck = stuck }
    }

    // MARK: Events

    public struct Decided: EventBody {
        public static let topic = "policy.decided"
        public static let fields: [FieldSpec] = [
            .required("id", .integer(1...(1 << 53))), .required("kind", .text), .required("decision", .object),
            .required("reason", .string), .required("mode", .choice(Mode.allCases.map(\.rawValue))), .required("outcome", .string),
        ]
        public var id: Int, kind: String, decision: JSONValue, reason: String, mode: String, outcome: String
        public init(id: Int, kind: String, decision: JSONValue, reason: String, mode: String, outcome: String) {
            self.id = id; self.kind = kind; self.decision = decision; self.reason = reason; self.mode = mode; self.outcome = outcome
        }
        public var json: JSONValue {
            ["id": .number(Double(id)), "kind": .string(kind), "decision": decision, "reason": .string(reason),
             "mode": .string(mode), "outcome": .string(outcome)]
        }
    }

    public struct ModeChanged: EventBody {
        public static let topic = "policy.mode_changed"
        public static let fields: [FieldSpec] = [.required("mode", .choice(Mode.allCases.map(\.rawValue)))]
        public var mode: Mode
        public init(mode: Mode) { self.mode = mode }
        public var json: JSONValue { ["mode": .string(mode.rawValue)] }
    }

    public struct HostDraining: EventBody {
        public static let topic = "policy.host_draining"
        public static let fields: [FieldSpec] = [.required("id", .text), .required("moves", .list(.object)), .required("stuck", .list(.text))]
        public var id: String
        public var moves: [Move]
        public var stuck: [String]
        public init(id: String, moves: [Move], stuck: [String]) { self.id = id; self.moves = moves; self.stuck = stuck }
        public var json: JSONValue { DrainReply(id: id, moves: moves, stuck: stuck).json }
    }

    /// The inventory disagreed with what the hosts run.
    public struct DriftDetected: EventBody {
        public static let topic = "policy.drift_detected"
        public static let fields: [FieldSpec] = [
            .required("kind", .choice(["moved", "missing", "stray"])), .required("vm", .text), .required("host", .string),
            .required("inventory_host", .string), .required("why", .string),
        ]
        public var kind: String, vm: String, host: String, inventoryHost: String, why: String
        public init(kind: String, vm: String, host: String, inventoryHost: String, why: String) {
            self.kind = kind; self.vm = vm; self.host = host; self.inventoryHost = inventoryHost; self.why = why
        }
        public var json: JSONValue {
            ["kind": .string(kind), "vm": .string(vm), "host": .string(host), "inventory_host": .string(inventoryHost), "why": .string(why)]
        }
    }
}

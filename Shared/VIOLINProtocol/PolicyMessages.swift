/// `violin-policy`'s requests and events (PROTOCOL.md §8.4).
public enum PolicyAPI {
    public static let requests: [any RequestBody.Type] = [
        RegisterDomain.self, RegisterHost.self, RemoveHost.self, CreateViolin.self, DestroyViolin.self, SetMode.self,
        Evaluate.self, Explain.self, Traffic.self, DemandHint.self, Decisions.self, Inventory.self, DrainHost.self, CreateEnvironment.self, DestroyEnvironment.self, ApplyEnvironment.self,
    ] + keyRequests
    public static let events: [any EventBody.Type] = [Decided.self, ModeChanged.self, HostDraining.self, DriftDetected.self, PhaseChanged.self, VMPlaced.self, VMRestarted.self]

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
            .optional("mesh", .string), .optional("migration_uri", .string),
        ]
        public typealias Reply = IDReply
        public static let idempotent = true
        public static let example = RegisterHost(id: "h1", domain: "d1", cores: 2, memoryMB: 4096, executor: "tcp://10.0.0.1:7704",
                                                 mesh: "tcp://10.0.0.1:7701", migrationURI: "qemu+tls://10.0.0.1/system")
        public var id: String, domain: String
        public var cores: Int, memoryMB: Int
        public var executor: String, monitor: String, key: String
        /// Where other hosts reach this host's mesh and libvirt (a migration's destination):
        /// on the executor's address, `qemu+tls`, `qemu+tcp` or `qemu+ssh` only.
        public var mesh: String, migrationURI: String
        public init(id: String, domain: String, cores: Int, memoryMB: Int, executor: String = "", monitor: String = "", key: String = "",
                    mesh: String = "", migrationURI: String = "") {
            self.id = id; self.domain = domain; self.cores = cores; self.memoryMB = memoryMB
            self.executor = executor; self.monitor = monitor; self.key = key; self.mesh = mesh; self.migrationURI = migrationURI
        }
        public init(_ b: Body) {
            self.init(id: b.text("id")!, domain: b.text("domain")!, cores: b.integer("cores")!, memoryMB: b.integer("memory_mb")!,
                      executor: b.text("executor") ?? "", monitor: b.text("monitor") ?? "", key: b.text("key") ?? "",
                      mesh: b.text("mesh") ?? "", migrationURI: b.text("migration_uri") ?? "")
        }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["id": .string(id), "domain": .string(domain), "cores": .number(Double(cores)),
                                          "memory_mb": .number(Double(memoryMB))]
            if !executor.isEmpty { o["executor"] = .string(executor) }
            if !monitor.isEmpty { o["monitor"] = .string(monitor) }
            if !key.isEmpty { o["key"] = .string(key) }
            if !mesh.isEmpty { o["mesh"] = .string(mesh) }
            if !migrationURI.isEmpty { o["migration_uri"] = .string(migrationURI) }
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

    /// Who talks to whom: the traffic matrix, from the switches' pair counters.
    public struct Traffic: RequestBody {
        public static let msgType = "traffic_request"
        public static let fields: [FieldSpec] = [.optional("violin", .text)]
        public typealias Reply = TrafficReply
        public static let idempotent = true
        public static let example = Traffic(violin: "A")
        public var violin: String?
        public init(violin: String? = nil) { self.violin = violin }
        public init(_ b: Body) { violin = b.text("violin") }
        public var json: JSONValue { violin.map { ["violin": .string($0)] } ?? [:] }
    }

    public struct TrafficReply: ReplyBody {
        public struct Flow: Codable, Sendable, Equatable {
            public var violin: String, from: String, to: String
            public var bytesPerS: Double
            public init(violin: String, from: String, to: String, bytesPerS: Double) {
                self.violin = violin; self.from = from; self.to = to; self.bytesPerS = bytesPerS
            }
            enum CodingKeys: String, CodingKey { case violin, from, to, bytesPerS = "bytes_per_s" }
        }
        public static let fields: [FieldSpec] = [.required("flows", .list(.object))]
        public var flows: [Flow]
        public init(flows: [Flow]) { self.flows = flows }
    }

    /// What is coming: these VMs of a VIOLIN will be busy for `seconds` from now.
    public struct DemandHint: RequestBody {
        public static let msgType = "demand_hint_request"
        public static let fields: [FieldSpec] = [.required("violin", .text), .required("vms", .list(.text)), .required("seconds", .number(1...86_400))]
        public typealias Reply = DemandHintReply
        public static let idempotent = true
        public static let example = DemandHint(violin: "A", vms: ["a2", "a3"], seconds: 600)
        public var violin: String
        public var vms: [String]
        public var seconds: Double
        public init(violin: String, vms: [String], seconds: Double) { self.violin = violin; self.vms = vms; self.seconds = seconds }
        public init(_ b: Body) throws(ProtocolError) {
            violin = b.text("violin")!
            vms = (b.value["vms"]?.items ?? []).compactMap(\.stringValue)
            guard (1...1000).contains(vms.count) else { throw ProtocolError(.invalidBody, "vms must list 1-1000 VM ids") }
            seconds = b.number("seconds")!
        }
        public var json: JSONValue { ["violin": .string(violin), "vms": .array(vms.map { .string($0) }), "seconds": .number(seconds)] }
    }

    public struct DemandHintReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("violin", .text), .required("vms", .list(.text)), .required("until", .number(0...1e12))]
        public var violin: String
        public var vms: [String]
        public var until: Double
        public init(violin: String, vms: [String], until: Double) { self.violin = violin; self.vms = vms; self.until = until }
    }

    public struct Decisions: RequestBody {
        public static let msgType = "decisions_request"
        public static let fields: [FieldSpec] = [.optional("limit", .integer(1...10_000)), .optional("audit", .flag)]
        public typealias Reply = DecisionsReply
        public static let idempotent = true
        public static let example = Decisions(limit: 10, audit: true)
        public var limit: Int
        /// Also the audit trail: every change of state asked for, and by which key.
        public var audit: Bool
        public init(limit: Int = 50, audit: Bool = false) { self.limit = limit; self.audit = audit }
        public init(_ b: Body) { limit = b.integer("limit") ?? 50; audit = b.flag("audit") ?? false }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["limit": .number(Double(limit))]
            if audit { o["audit"] = true }
            return .object(o)
        }
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

    /// A VIOLIN from its spec: placed, given its VNI, MACs and NIC ports, and made on the hosts
    /// — all of it, or nothing.
    public struct CreateEnvironment: RequestBody {
        public static let msgType = "create_environment_request"
        public typealias Reply = EnvironmentReply
        public static let fields: [FieldSpec] = [.required("spec", .object), .optional("dry_run", .flag)]
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = CreateEnvironment(spec: ["name": "lab", "home_domain": "d1", "image": "tiny", "vms": [["name": "a1"]]])
        /// The spec file's mapping, as JSON (compose/violin-spec.yaml documents its keys).
        public var spec: JSONValue
        public var dryRun = false
        public init(spec: JSONValue, dryRun: Bool = false) { self.spec = spec; self.dryRun = dryRun }
        public init(_ b: Body) { spec = b.value["spec"] ?? [:]; dryRun = b.flag("dry_run") ?? false }
        public var json: JSONValue { dryRun ? ["spec": spec, "dry_run": true] : ["spec": spec] }
    }

    /// Every VM of a VIOLIN made from a spec destroyed on its host, then its inventory rows.
    public struct DestroyEnvironment: RequestBody {
        public static let msgType = "destroy_environment_request"
        public typealias Reply = DestroyedReply
        public static let fields: [FieldSpec] = [.required("name", .text)]
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = DestroyEnvironment(name: "lab")
        public var name: String
        public init(name: String) { self.name = name }
        public init(_ b: Body) { name = b.text("name")! }
        public var json: JSONValue { ["name": .string(name)] }
    }

    /// A running VIOLIN brought to its changed spec: VMs added (placed like a creation's) or
    /// removed; any other change is refused (`conflict`, naming it).
    public struct ApplyEnvironment: RequestBody {
        public static let msgType = "apply_environment_request"
        public typealias Reply = AppliedReply
        public static let fields: [FieldSpec] = [.required("spec", .object)]
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = ApplyEnvironment(spec: ["name": "lab", "home_domain": "d1", "image": "tiny", "vms": [["name": "a1"], ["name": "a2"]]])
        public var spec: JSONValue
        public init(spec: JSONValue) { self.spec = spec }
        public init(_ b: Body) { spec = b.value["spec"] ?? [:] }
        public var json: JSONValue { ["spec": spec] }
    }

    // MARK: Replies

    public struct AppliedReply: ReplyBody {
        public static let fields: [FieldSpec] = [
            .required("name", .text), .required("vni", .vni), .required("added", .list(.object)), .required("removed", .list(.text)),
            .required("left", .list(.text)),
        ]
        public var name: String
        public var vni: UInt32
        /// The VMs made, as a creation lists them; those destroyed; `vm@host` for those whose host
        /// did not answer (removed when it does).
        public var added: [EnvironmentReply.VM]
        public var removed: [String], left: [String]
        public init(name: String, vni: UInt32, added: [EnvironmentReply.VM], removed: [String], left: [String]) {
            self.name = name; self.vni = vni; self.added = added; self.removed = removed; self.left = left
        }
    }

    public struct EnvironmentReply: ReplyBody {
        public struct VM: Codable, Sendable, Equatable {
            public var name: String, host: String, domain: String, mac: String
            public var nicPort: Int, memoryMB: Int
            public var image: String
            public var ip: String?
            public var why: String
            public init(name: String, host: String, domain: String, mac: String, nicPort: Int, memoryMB: Int, image: String, ip: String?, why: String) {
                self.name = name; self.host = host; self.domain = domain; self.mac = mac; self.nicPort = nicPort
                self.memoryMB = memoryMB; self.image = image; self.ip = ip; self.why = why
            }
            enum CodingKeys: String, CodingKey { case name, host, domain, mac, nicPort = "nic_port", memoryMB = "memory_mb", image, ip, why }
        }
        public static let fields: [FieldSpec] = [
            .required("name", .text), .required("vni", .vni), .required("phase", .choice(["planned", "running"])), .required("vms", .list(.object)),
        ]
        public var name: String
        public var vni: UInt32
        /// `planned` (a dry run) or `running`.
        public var phase: String
        public var vms: [VM]
        public init(name: String, vni: UInt32, phase: String, vms: [VM]) { self.name = name; self.vni = vni; self.phase = phase; self.vms = vms }
    }

    public struct DestroyedReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("name", .text), .required("destroyed", .list(.text)), .required("left", .list(.text))]
        public var name: String
        /// VMs destroyed, and `vm@host` for those whose host did not answer.
        public var destroyed: [String], left: [String]
        public init(name: String, destroyed: [String], left: [String]) { self.name = name; self.destroyed = destroyed; self.left = left }
    }

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
            /// When it was made from its spec (ISO 8601); absent for one made otherwise.
            public var createdAt: String?
            public init(id: String, homeDomain: String, head: String, createdAt: String? = nil) {
                self.id = id; self.homeDomain = homeDomain; self.head = head; self.createdAt = createdAt
            }
            enum CodingKeys: String, CodingKey { case id, homeDomain = "home_domain", head, createdAt = "created_at" }
        }
        public struct VM: Codable, Sendable, Equatable {
            public var id: String, violin: String
            public var memoryMB: Int
            /// "" while placed nowhere.
            public var host: String
            /// From the VIOLIN's spec, when it was made from one: the address handed to the guest, its vCPUs.
            public var ip: String?, vcpus: Int?
            public init(id: String, violin: String, memoryMB: Int, host: String, ip: String? = nil, vcpus: Int? = nil) {
                self.id = id; self.violin = violin; self.memoryMB = memoryMB; self.host = host; self.ip = ip; self.vcpus = vcpus
            }
            enum CodingKeys: String, CodingKey { case id, violin, memoryMB = "memory_mb", host, ip, vcpus }
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

    /// A VIOLIN made from a spec changed phase.
    public struct PhaseChanged: EventBody {
        public static let topic = "policy.violin_phase_changed"
        public static let fields: [FieldSpec] = [
            .required("name", .text), .required("phase", .choice(["placing", "creating", "running", "failed", "destroying", "destroyed"])),
            .required("reason", .string),
        ]
        public var name: String, phase: String, reason: String
        public init(name: String, phase: String, reason: String) { self.name = name; self.phase = phase; self.reason = reason }
        public var json: JSONValue { ["name": .string(name), "phase": .string(phase), "reason": .string(reason)] }
    }

    /// A VM of a VIOLIN made from a spec now runs on its host, placed there for `why`.
    public struct VMPlaced: EventBody {
        public static let topic = "policy.vm_placed"
        public static let fields: [FieldSpec] = [
            .required("violin", .text), .required("vm", .text), .required("host", .text), .required("domain", .text), .required("why", .string),
        ]
        public var violin: String, vm: String, host: String, domain: String, why: String
        public init(violin: String, vm: String, host: String, domain: String, why: String) {
            self.violin = violin; self.vm = vm; self.host = host; self.domain = domain; self.why = why
        }
        public var json: JSONValue {
            ["violin": .string(violin), "vm": .string(vm), "host": .string(host), "domain": .string(domain), "why": .string(why)]
        }
    }

    /// A VM of a `restart: always` VIOLIN lost with its host, made again on another from its
    /// image: a new boot, its memory gone.
    public struct VMRestarted: EventBody {
        public static let topic = "policy.vm_restarted"
        public static let fields: [FieldSpec] = [
            .required("violin", .text), .required("vm", .text), .required("from", .text), .required("to", .text), .required("why", .string),
        ]
        public var violin: String, vm: String, from: String, to: String, why: String
        public init(violin: String, vm: String, from: String, to: String, why: String) {
            self.violin = violin; self.vm = vm; self.from = from; self.to = to; self.why = why
        }
        public var json: JSONValue {
            ["violin": .string(violin), "vm": .string(vm), "from": .string(from), "to": .string(to), "why": .string(why)]
        }
    }
}

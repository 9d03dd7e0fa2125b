/// Stopping a VM and starting it again on the same host (PROTOCOL.md §8.5): the executor keeps
/// the stopped VM's definition, its NIC ports and its place in the VIOLIN.
extension ExecutorAPI {
    public struct StopVM: RequestBody {
        public static let msgType = "stop_vm_request"
        public static let fields: [FieldSpec] = [.required("name", .text)]
        public typealias Reply = VMReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = StopVM(name: "a1")
        public var name: String
        public init(name: String) { self.name = name }
        public init(_ b: Body) { name = b.text("name")! }
        public var json: JSONValue { ["name": .string(name)] }
    }

    public struct StartVM: RequestBody {
        public static let msgType = "start_vm_request"
        public static let fields: [FieldSpec] = [.required("name", .text), .optional("seed", .endpoint), .optional("seed_key", .curveKey)]
        public typealias Reply = VMReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = StartVM(name: "a1", seed: "tcp://10.0.0.2:7701")
        public var name: String
        /// A member's mesh endpoint, through which this host's mesh joins the VIOLIN again when
        /// it left it (the stopped VM was its last port here), and that mesh's key.
        public var seed: String?
        public var seedKey: String?
        public init(name: String, seed: String? = nil, seedKey: String? = nil) { self.name = name; self.seed = seed; self.seedKey = seedKey }
        public init(_ b: Body) { name = b.text("name")!; seed = b.text("seed"); seedKey = b.text("seed_key").flatMap { $0.isEmpty ? nil : $0 } }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["name": .string(name)]
            if let seed { o["seed"] = .string(seed) }
            if let seedKey { o["seed_key"] = .string(seedKey) }
            return .object(o)
        }
    }

    public struct VMStopped: EventBody {
        public static let topic = "executor.vm_stopped"
        public static let fields: [FieldSpec] = [.required("vm", .text)]
        public var vm: String
        public init(vm: String) { self.vm = vm }
        public var json: JSONValue { ["vm": .string(vm)] }
    }

    public struct VMStarted: EventBody {
        public static let topic = "executor.vm_started"
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("vni", .vni)]
        public var vm: String, vni: UInt32
        public init(vm: String, vni: UInt32) { self.vm = vm; self.vni = vni }
        public var json: JSONValue { ["vm": .string(vm), "vni": .number(Double(vni))] }
    }
}

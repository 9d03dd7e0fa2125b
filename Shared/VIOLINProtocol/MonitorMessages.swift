/// `violin-monitor`'s requests and events (PROTOCOL.md §8.3).
public enum MonitorAPI {
    public static let requests: [any RequestBody.Type] = [Samples.self, SetBalloon.self, SetCPUWeight.self]
    public static let events: [any EventBody.Type] = [Sampled.self, VMAppeared.self, VMDisappeared.self]

    public struct Samples: EmptyRequest {
        public static let msgType = "samples_request"
        public typealias Reply = SamplesReply
        public static let idempotent = true
        public init() {}
    }

    public struct SetBalloon: RequestBody {
        public static let msgType = "set_balloon_request"
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("memory_mb", .integer(1...(1 << 30) - 1))]
        public typealias Reply = BalloonReply
        public static let idempotent = true
        public static let example = SetBalloon(vm: "a1", memoryMB: 96)
        public var vm: String
        public var memoryMB: Int
        public init(vm: String, memoryMB: Int) { self.vm = vm; self.memoryMB = memoryMB }
        public init(_ b: Body) { vm = b.text("vm")!; memoryMB = b.integer("memory_mb")! }
        public var json: JSONValue { ["vm": .string(vm), "memory_mb": .number(Double(memoryMB))] }
    }

    public struct SetCPUWeight: RequestBody {
        public static let msgType = "set_cpu_weight_request"
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("weight", .integer(1...10_000))]
        public typealias Reply = CPUWeightReply
        public static let idempotent = true
        public static let example = SetCPUWeight(vm: "a1", weight: 512)
        public var vm: String
        public var weight: Int
        public init(vm: String, weight: Int) { self.vm = vm; self.weight = weight }
        public init(_ b: Body) { vm = b.text("vm")!; weight = b.integer("weight")! }
        public var json: JSONValue { ["vm": .string(vm), "weight": .number(Double(weight))] }
    }

    // MARK: Replies

    public struct SamplesReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("host", .object), .required("vms", .list(.object))]
        /// As in `monitor.sampled`: `cpus`, `memory_mb`; per VM `name`, `uuid`, `cpu_percent`, ...
        public var host: JSONValue
        public var vms: [JSONValue]
        public init(host: JSONValue, vms: [JSONValue]) { self.host = host; self.vms = vms }
        /// The latest sample as it was published.
        public init(_ sampled: Sampled) {
            self.init(host: sampled.json["host"] ?? [:], vms: sampled.vms.map(\.json))
        }
    }

    public struct BalloonReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("target_mb", .count), .required("memory_mb", .count)]
        public var vm: String
        /// What was accepted.
        public var targetMB: Int
        /// libvirt's reading now (a guest's balloon reaches the target over the next moments).
        public var memoryMB: Int
        public init(vm: String, targetMB: Int, memoryMB: Int) { self.vm = vm; self.targetMB = targetMB; self.memoryMB = memoryMB }
        enum CodingKeys: String, CodingKey { case vm, targetMB = "target_mb", memoryMB = "memory_mb" }
    }

    public struct CPUWeightReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("weight", .count)]
        public var vm: String
        /// As libvirt reports it now.
        public var weight: Int
        public init(vm: String, weight: Int) { self.vm = vm; self.weight = weight }
    }

    // MARK: Events

    /// One VM as a sample describes it.
    public struct VMSample: Sendable, Equatable {
        public var name: String
        public var uuid: String
        /// Of its vCPUs over the last interval; nil on the first reading.
        public var cpuPercent: Double?
        public var vcpus: Int
        public var memoryMB: Int
        public var maxMemoryMB: Int
        public init(name: String, uuid: String, cpuPercent: Double?, vcpus: Int, memoryMB: Int, maxMemoryMB: Int) {
            self.name = name; self.uuid = uuid; self.cpuPercent = cpuPercent; self.vcpus = vcpus
            self.memoryMB = memoryMB; self.maxMemoryMB = maxMemoryMB
        }
        public var json: JSONValue {
            ["name": .string(name), "uuid": .string(uuid), "cpu_percent": cpuPercent.map { .number(($0 * 10).rounded() / 10) } ?? .null,
             "vcpus": .number(Double(vcpus)), "memory_mb": .number(Double(memoryMB)), "max_memory_mb": .number(Double(maxMemoryMB))]
        }
    }

    public struct Sampled: EventBody {
        public static let topic = "monitor.sampled"
        public static let fields: [FieldSpec] = [.required("host", .object), .required("vms", .list(.object))]
        public var hostCPUs: Int
        public var hostMemoryMB: Int
        public var vms: [VMSample]
        public init(hostCPUs: Int, hostMemoryMB: Int, vms: [VMSample]) { self.hostCPUs = hostCPUs; self.hostMemoryMB = hostMemoryMB; self.vms = vms }
        public var json: JSONValue {
            ["host": ["cpus": .number(Double(hostCPUs)), "memory_mb": .number(Double(hostMemoryMB))], "vms": .array(vms.map(\.json))]
        }
        /// The smoothed-CPU readings a subscriber needs (the policy): name and CPU %, where known.
        public static func cpuReadings(_ body: JSONValue) -> [(vm: String, cpuPercent: Double)] {
            body["vms"]?.items.compactMap { v in
                // A reading out of any host's range (0 to 100 % of 4096 cores) is not one.
                guard let name = v["name"]?.stringValue, !name.isEmpty, name.utf8.count <= 256, let cpu = v["cpu_percent"]?.numberValue,
                      cpu.isFinite, (0...409_600).contains(cpu) else { return nil }
                return (name, cpu)
            } ?? []
        }
    }

    public struct VMAppeared: EventBody {
        public static let topic = "monitor.vm_appeared"
        public static let fields: [FieldSpec] = [.required("vm", .text)]
        public var vm: String
        public init(vm: String) { self.vm = vm }
        public var json: JSONValue { ["vm": .string(vm)] }
    }

    public struct VMDisappeared: EventBody {
        public static let topic = "monitor.vm_disappeared"
        public static let fields: [FieldSpec] = [.required("vm", .text)]
        public var vm: String
        public init(vm: String) { self.vm = vm }
        public var json: JSONValue { ["vm": .string(vm)] }
    }
}

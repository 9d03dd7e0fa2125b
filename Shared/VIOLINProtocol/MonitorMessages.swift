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

    /// A guest's memory as its balloon driver reports it; rates over the last interval (null on
    /// the first reading).
    public struct GuestMemory: Sendable, Equatable {
        public var unusedMB: Int?
        public var availableMB: Int?
        public var swapInKBPerS: Double?
        public var swapOutKBPerS: Double?
        public var majorFaultsPerS: Double?
        public init(unusedMB: Int? = nil, availableMB: Int? = nil, swapInKBPerS: Double? = nil, swapOutKBPerS: Double? = nil,
                    majorFaultsPerS: Double? = nil) {
            self.unusedMB = unusedMB; self.availableMB = availableMB; self.swapInKBPerS = swapInKBPerS
            self.swapOutKBPerS = swapOutKBPerS; self.majorFaultsPerS = majorFaultsPerS
        }
        public var json: JSONValue {
            func n(_ x: Int?) -> JSONValue { x.map { .number(Double($0)) } ?? .null }
            func r(_ x: Double?) -> JSONValue { x.map { .number(($0 * 10).rounded() / 10) } ?? .null }
            return ["unused_mb": n(unusedMB), "available_mb": n(availableMB), "swap_in_kb_s": r(swapInKBPerS),
                    "swap_out_kb_s": r(swapOutKBPerS), "major_faults_s": r(majorFaultsPerS)]
        }
        /// Read back from a sample, every number range-checked; nil if it is not one.
        public init?(_ v: JSONValue?) {
            guard let v, case .object = v else { return nil }
            func count(_ k: String) -> Int? { v[k].flatMap(FieldSpec.Kind.integer).flatMap { (0...(1 << 40)).contains($0) ? $0 : nil } }
            func rate(_ k: String) -> Double? { v[k]?.numberValue.flatMap { $0.isFinite && (0...1e12).contains($0) ? $0 : nil } }
            self.init(unusedMB: count("unused_mb"), availableMB: count("available_mb"), swapInKBPerS: rate("swap_in_kb_s"),
                      swapOutKBPerS: rate("swap_out_kb_s"), majorFaultsPerS: rate("major_faults_s"))
        }
    }

    /// A VM's network through its switch port, from the VM's side: `tx` what it sent, `rx` what
    /// it got; Mbit/s over the last interval (null on the first reading).
    public struct Net: Sendable, Equatable {
        public var txBytes: Int, rxBytes: Int, txPackets: Int, rxPackets: Int
        public var txMbitS: Double?, rxMbitS: Double?
        public init(txBytes: Int, rxBytes: Int, txPackets: Int, rxPackets: Int, txMbitS: Double? = nil, rxMbitS: Double? = nil) {
            self.txBytes = txBytes; self.rxBytes = rxBytes; self.txPackets = txPackets; self.rxPackets = rxPackets
            self.txMbitS = txMbitS; self.rxMbitS = rxMbitS
        }
        public var json: JSONValue {
            func r(_ x: Double?) -> JSONValue { x.map { .number(($0 * 100).rounded() / 100) } ?? .null }
            return ["tx_bytes": .number(Double(txBytes)), "rx_bytes": .number(Double(rxBytes)), "tx_packets": .number(Double(txPackets)),
                    "rx_packets": .number(Double(rxPackets)), "tx_mbit_s": r(txMbitS), "rx_mbit_s": r(rxMbitS)]
        }
        /// Read back from a sample, every number range-checked; nil if it is not one.
        public init?(_ v: JSONValue?) {
            guard let v, case .object = v else { return nil }
            func count(_ k: String) -> Int? { v[k].flatMap(FieldSpec.Kind.integer).flatMap { $0 >= 0 ? $0 : nil } }
            func rate(_ k: String) -> Double? { v[k]?.numberValue.flatMap { $0.isFinite && (0...1e7).contains($0) ? $0 : nil } }
            guard let tb = count("tx_bytes"), let rb = count("rx_bytes"), let tp = count("tx_packets"), let rp = count("rx_packets") else { return nil }
            self.init(txBytes: tb, rxBytes: rb, txPackets: tp, rxPackets: rp, txMbitS: rate("tx_mbit_s"), rxMbitS: rate("rx_mbit_s"))
        }
    }

    /// One VM as a sample describes it.
    public struct VMSample: Sendable, Equatable {
        public var name: String
        public var uuid: String
        /// Of its vCPUs over the last interval; nil on the first reading.
        public var cpuPercent: Double?
        /// Of its vCPUs: ran plus waited for a CPU over the last interval; nil where unknown.
        public var demandPercent: Double?
        public var vcpus: Int
        public var memoryMB: Int
        public var maxMemoryMB: Int
        public var guest: GuestMemory?
        public var net: Net?
        public init(name: String, uuid: String, cpuPercent: Double?, demandPercent: Double? = nil, vcpus: Int, memoryMB: Int, maxMemoryMB: Int,
                    guest: GuestMemory? = nil, net: Net? = nil) {
            self.name = name; self.uuid = uuid; self.cpuPercent = cpuPercent; self.demandPercent = demandPercent; self.vcpus = vcpus
            self.memoryMB = memoryMB; self.maxMemoryMB = maxMemoryMB; self.guest = guest; self.net = net
        }
        public var json: JSONValue {
            ["name": .string(name), "uuid": .string(uuid), "cpu_percent": cpuPercent.map { .number(($0 * 10).rounded() / 10) } ?? .null,
             "demand_percent": demandPercent.map { .number(($0 * 10).rounded() / 10) } ?? .null,
             "vcpus": .number(Double(vcpus)), "memory_mb": .number(Double(memoryMB)), "max_memory_mb": .number(Double(maxMemoryMB)),
             "guest_memory": guest?.json ?? .null, "net": net?.json ?? .null]
        }
    }

    /// What the fine-grain levers read of one VM in a sample (range-checked).
    public struct LeverReading: Sendable, Equatable {
        public var vm: String
        public var memoryMB: Int
        public var maxMemoryMB: Int
        public var guest: GuestMemory?
        public var net: Net?
    }

    public struct Sampled: EventBody {
        public static let topic = "monitor.sampled"
        public static let fields: [FieldSpec] = [.required("host", .object), .required("vms", .list(.object))]
        public var hostCPUs: Int
        public var hostMemoryMB: Int
        /// What the host has free (nil where the hypervisor does not say).
        public var hostFreeMemoryMB: Int?
        public var vms: [VMSample]
        public init(hostCPUs: Int, hostMemoryMB: Int, hostFreeMemoryMB: Int? = nil, vms: [VMSample]) {
            self.hostCPUs = hostCPUs; self.hostMemoryMB = hostMemoryMB; self.hostFreeMemoryMB = hostFreeMemoryMB; self.vms = vms
        }
        public var json: JSONValue {
            ["host": ["cpus": .number(Double(hostCPUs)), "memory_mb": .number(Double(hostMemoryMB)),
                      "free_memory_mb": hostFreeMemoryMB.map { .number(Double($0)) } ?? .null],
             "vms": .array(vms.map(\.json))]
        }
        /// The host's free memory in a sample body, range-checked.
        public static func hostFreeMemoryMB(_ body: JSONValue) -> Int? {
            body["host"]?["free_memory_mb"].flatMap(FieldSpec.Kind.integer).flatMap { (0...(1 << 40)).contains($0) ? $0 : nil }
        }
        /// What the levers read of each VM (memory and network), every number range-checked; a
        /// VM whose figures are not numbers in range is left out.
        public static func leverReadings(_ body: JSONValue) -> [LeverReading] {
            body["vms"]?.items.compactMap { v in
                guard let name = v["name"]?.stringValue, !name.isEmpty, name.utf8.count <= 256,
                      let mem = v["memory_mb"].flatMap(FieldSpec.Kind.integer), (0...(1 << 30)).contains(mem),
                      let max = v["max_memory_mb"].flatMap(FieldSpec.Kind.integer), (0...(1 << 30)).contains(max) else { return nil }
                return LeverReading(vm: name, memoryMB: mem, maxMemoryMB: max, guest: GuestMemory(v["guest_memory"]), net: Net(v["net"]))
            } ?? []
        }
        /// The CPU readings a subscriber smooths (the policy): name and CPU demand % — the
        /// sample's `demand_percent` where it has one in range, else its `cpu_percent` — where known.
        public static func cpuReadings(_ body: JSONValue) -> [(vm: String, cpuPercent: Double)] {
            // A reading out of any host's range (0 to 100 % of 4096 cores) is not one.
            func percent(_ x: JSONValue?) -> Double? { x?.numberValue.flatMap { $0.isFinite && (0...409_600).contains($0) ? $0 : nil } }
            return body["vms"]?.items.compactMap { v in
                guard let name = v["name"]?.stringValue, !name.isEmpty, name.utf8.count <= 256,
                      let cpu = percent(v["demand_percent"]) ?? percent(v["cpu_percent"]) else { return nil }
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

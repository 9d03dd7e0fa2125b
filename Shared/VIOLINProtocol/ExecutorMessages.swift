/// `violin-executor`'s requests and events (PROTOCOL.md §8.5).
public enum ExecutorAPI {
    public static let requests: [any RequestBody.Type] = [
        CreateVM.self, DestroyVM.self, VMs.self, HostInfo.self, Migrate.self, MigrateViolin.self, Job.self, Jobs.self, Cancel.self,
        Images.self, ConsoleOpen.self, ConsoleInput.self, ConsoleClose.self, StopVM.self, StartVM.self,
    ]
    public static let events: [any EventBody.Type] = [
        VMCreated.self, VMDestroyed.self, MigrationStarted.self, MigrationProgress.self, MigrationCompleted.self,
        MigrationFailed.self, JobRecovered.self, VMStopped.self, VMStarted.self,
    ]

    public struct CreateVM: RequestBody {
        public static let msgType = "create_vm_request"
        public static let fields: [FieldSpec] = [
            .required("name", .text), .required("vni", .vni), .required("mac", .mac), .optional("image", .text), .optional("kernel", .text),
            .optional("nic_port", .integer(1024...65_534)), .optional("nic", .choice(["udp", "tap"])), .optional("memory_mb", .integer(16...65_536)), .optional("vcpus", .integer(1...64)),
            .optional("initrd", .string), .optional("cmdline", .string), .optional("disk", .string),
            .optional("disk_mb", .integer(0...1_048_576)), .optional("console", .string),
            .optional("seed", .text), .optional("seed_key", .string), .optional("uplink", .flag),
        ]
        public typealias Reply = CreateVMReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = CreateVM(name: "a1", vni: 101, mac: MACAddress("52:54:00:0a:00:01")!, kernel: "/boot/vmlinuz", nicPort: 20000)
        public var name: String
        public var vni: UInt32
        public var mac: MACAddress
        /// A host path (deprecated: see PROTOCOL.md §11), or "" with `image`.
        public var kernel: String
        /// An image of the host's store (`image_dir`): what the VM boots, instead of host paths.
        public var image: String?
        /// QEMU's UDP socket (0 with a TAP NIC).
        public var nicPort: Int
        /// `udp` or `tap`.
        public var nic = "udp"
        public var memoryMB = 128
        public var vcpus = 1
        public var initrd = "", cmdline = "", disk = "", console = ""
        public var diskMB = 0
        /// The mesh endpoint through which this host's mesh joins the VIOLIN, and its key.
        public var seed: String?
        public var seedKey: String?
        /// A second NIC on the host's uplink network (`uplink_network`, a NAT network).
        public var uplink = false

        public init(name: String, vni: UInt32, mac: MACAddress, kernel: String, nicPort: Int) {
            self.name = name; self.vni = vni; self.mac = mac; self.kernel = kernel; self.nicPort = nicPort
        }

        public init(_ b: Body) throws(ProtocolError) {
            guard (b.text("kernel") == nil) != (b.text("image") == nil) else {
                throw ProtocolError(.invalidBody, "give image (a name in the host's image store) or kernel, not both or neither")
            }
            let nic = b.text("nic") ?? "udp"
            guard nic == "tap" || b.integer("nic_port") != nil else { throw ProtocolError(.invalidBody, "nic_port is required for a udp NIC") }
            self.init(name: b.text("name")!, vni: b.vni()!, mac: b.mac()!, kernel: b.text("kernel") ?? "", nicPort: b.integer("nic_port") ?? 0)
            self.nic = nic
            image = b.text("image")
            memoryMB = b.integer("memory_mb") ?? 128
            vcpus = b.integer("vcpus") ?? 1
            initrd = b.text("initrd") ?? ""; cmdline = b.text("cmdline") ?? ""; disk = b.text("disk") ?? ""
            console = b.text("console") ?? ""
            diskMB = b.integer("disk_mb") ?? 0
            seed = b.text("seed"); seedKey = b.text("seed_key")
            uplink = b.flag("uplink") ?? false
        }

        public var json: JSONValue {
            var o: [String: JSONValue] = ["name": .string(name), "vni": .number(Double(vni)), "mac": .string(mac.description),
                                          "nic_port": .number(Double(nicPort)), "nic": .string(nic),
                                          "memory_mb": .number(Double(memoryMB)), "vcpus": .number(Double(vcpus))]
            for (k, v) in [("kernel", kernel), ("initrd", initrd), ("cmdline", cmdline), ("disk", disk), ("console", console)] where !v.isEmpty {
                o[k] = .string(v)
            }
            if let image { o["image"] = .string(image) }
            if diskMB > 0 { o["disk_mb"] = .number(Double(diskMB)) }
            if let seed { o["seed"] = .string(seed) }
            if let seedKey { o["seed_key"] = .string(seedKey) }
            if uplink { o["uplink"] = true }
            return .object(o)
        }
    }

    public struct DestroyVM: RequestBody {
        public static let msgType = "destroy_vm_request"
        public static let fields: [FieldSpec] = [.required("name", .text)]
        public typealias Reply = VMReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = DestroyVM(name: "a1")
        public var name: String
        public init(name: String) { self.name = name }
        public init(_ b: Body) { name = b.text("name")! }
        public var json: JSONValue { ["name": .string(name)] }
    }

    public struct VMs: EmptyRequest {
        public static let msgType = "vms_request"
        public typealias Reply = VMsReply
        public static let idempotent = true
        public init() {}
    }

    public struct HostInfo: EmptyRequest {
        public static let msgType = "host_info_request"
        public typealias Reply = HostInfoReply
        public static let idempotent = true
        public init() {}
    }

    /// Where a migration goes and how: the fields `migrate_request` and `migrate_violin_request` share.
    public struct MigrationOptions: Sendable, Equatable {
        /// The destination's executor endpoint: used only by an executor without a control
        /// node (an open lab); otherwise the destination comes from the inventory, by `to`.
        public var toExecutor: String
        /// The destination host's CURVE public key ("" without CURVE).
        public var toKey = ""
        /// The destination's host id: where the executor looks its links up in the control
        /// node's inventory (`host_request`).
        public var to = ""
        /// MiB/s; 0: no limit.
        public var bandwidthMiBps = 0
        public var autoConverge = false, postcopy = false, copyStorage = false
        public var timeoutS = 120.0
        public var reason = ""
        public var decisionID = ""
        public init(toExecutor: String) { self.toExecutor = toExecutor }

        static let fields: [FieldSpec] = [
            .optional("to_executor", .string), .optional("to_key", .string), .optional("to", .string),
            .optional("bandwidth_mibps", .integer(0...1_000_000)), .optional("auto_converge", .flag), .optional("postcopy", .flag),
            .optional("copy_storage", .flag), .optional("timeout_s", .number(0...86_400)), .optional("reason", .string),
            .optional("decision_id", .label),
        ]

        init(_ b: Body) throws(ProtocolError) {
            toExecutor = b.text("to_executor") ?? ""
            toKey = b.text("to_key") ?? ""; to = b.text("to") ?? ""
            guard !to.isEmpty || !toExecutor.isEmpty else { throw ProtocolError(.invalidBody, "to (the destination host's id) is required") }
            bandwidthMiBps = b.integer("bandwidth_mibps") ?? 0
            autoConverge = b.flag("auto_converge") ?? false; postcopy = b.flag("postcopy") ?? false
            copyStorage = b.flag("copy_storage") ?? false
            timeoutS = b.number("timeout_s") ?? 120
            guard timeoutS > 0 else { throw ProtocolError(.invalidBody, "timeout_s must be a number of seconds in (0, 86400]") }
            reason = b.text("reason") ?? ""; decisionID = b.label("decision_id") ?? ""
        }

        func encode(into o: inout [String: JSONValue]) {
            if !toExecutor.isEmpty { o["to_executor"] = .string(toExecutor) }
            if !toKey.isEmpty { o["to_key"] = .string(toKey) }
            if !to.isEmpty { o["to"] = .string(to) }
            if bandwidthMiBps > 0 { o["bandwidth_mibps"] = .number(Double(bandwidthMiBps)) }
            if autoConverge { o["auto_converge"] = true }
            if postcopy { o["postcopy"] = true }
            if copyStorage { o["copy_storage"] = true }
            if timeoutS != 120 { o["timeout_s"] = .number(timeoutS) }
            if !reason.isEmpty { o["reason"] = .string(reason) }
            if !decisionID.isEmpty { o["decision_id"] = .string(decisionID) }
        }
    }

    public struct Migrate: RequestBody {
        public static let msgType = "migrate_request"
        public static let fields: [FieldSpec] = [.required("vm", .text)] + MigrationOptions.fields
        public typealias Reply = JobState
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example: Migrate = {
            var o = MigrationOptions(toExecutor: "tcp://10.0.0.2:7704")
            o.to = "h2"; o.bandwidthMiBps = 50; o.postcopy = true; o.timeoutS = 60; o.reason = "test"; o.decisionID = "7"
            return Migrate(vm: "a1", options: o)
        }()
        public var vm: String
        public var options: MigrationOptions
        public init(vm: String, options: MigrationOptions) { self.vm = vm; self.options = options }
        public init(_ b: Body) throws(ProtocolError) { vm = b.text("vm")!; options = try MigrationOptions(b) }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["vm": .string(vm)]
            options.encode(into: &o)
            return .object(o)
        }
    }

    public struct MigrateViolin: RequestBody {
        public static let msgType = "migrate_violin_request"
        public static let fields: [FieldSpec] = [.required("vni", .vni), .optional("keep", .list(.text))] + MigrationOptions.fields
        public typealias Reply = ViolinJobsReply
        public static let idempotent = false
        public static let lane = RequestLane.long
        public static let example = MigrateViolin(vni: 102, keep: ["b1"], options: MigrationOptions(toExecutor: "tcp://10.0.0.3:7704"))
        public var vni: UInt32
        /// VMs that stay (the head node).
        public var keep: [String]
        public var options: MigrationOptions
        public init(vni: UInt32, keep: [String] = [], options: MigrationOptions) { self.vni = vni; self.keep = keep; self.options = options }
        public init(_ b: Body) throws(ProtocolError) { vni = b.vni()!; keep = b.texts("keep") ?? []; options = try MigrationOptions(b) }
        public var json: JSONValue {
            var o: [String: JSONValue] = ["vni": .number(Double(vni))]
            if !keep.isEmpty { o["keep"] = .array(keep.map { .string($0) }) }
            options.encode(into: &o)
            return .object(o)
        }
    }

    public struct Job: RequestBody {
        public static let msgType = "job_request"
        public static let fields: [FieldSpec] = [.required("job", .text)]
        public typealias Reply = JobReport
        public static let idempotent = true
        public static let example = Job(job: "job-1")
        public var job: String
        public init(job: String) { self.job = job }
        public init(_ b: Body) { job = b.text("job")! }
        public var json: JSONValue { ["job": .string(job)] }
    }

    public struct Jobs: RequestBody {
        public static let msgType = "jobs_request"
        public static let fields: [FieldSpec] = [.optional("limit", .integer(1...10_000))]
        public typealias Reply = JobsReply
        public static let idempotent = true
        public static let example = Jobs(limit: 10)
        public var limit: Int
        public init(limit: Int = 50) { self.limit = limit }
        public init(_ b: Body) { limit = b.integer("limit") ?? 50 }
        public var json: JSONValue { ["limit": .number(Double(limit))] }
    }

    public struct Cancel: RequestBody {
        public static let msgType = "cancel_request"
        public static let fields: [FieldSpec] = [.required("job", .text)]
        public typealias Reply = JobState
        public static let idempotent = true
        public static let example = Cancel(job: "job-1")
        public var job: String
        public init(job: String) { self.job = job }
        public init(_ b: Body) { job = b.text("job")! }
        public var json: JSONValue { ["job": .string(job)] }
    }

    /// The images of the host's store.
    public struct Images: EmptyRequest {
        public static let msgType = "images_request"
        public typealias Reply = ImagesReply
        public static let idempotent = true
        public init() {}
    }

    // MARK: Replies

    public struct ImagesReply: ReplyBody {
        public struct Image: Codable, Sendable, Equatable {
            public var name: String
            /// `kernel` (a kernel, with an initrd and a command line if the image has them) or `disk`.
            public var kind: String
            public init(name: String, kind: String) { self.name = name; self.kind = kind }
        }
        public static let fields: [FieldSpec] = [.required("host", .text), .required("images", .list(.object))]
        public var host: String
        public var images: [Image]
        public init(host: String, images: [Image]) { self.host = host; self.images = images }
    }

    public struct CreateVMReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("uuid", .text), .required("port", .object)]
        public var vm: String, uuid: String
        /// The switch port, as the switch's `ports_request` describes it.
        public var port: SwitchAPI.PortInfo
        public init(vm: String, uuid: String, port: SwitchAPI.PortInfo) { self.vm = vm; self.uuid = uuid; self.port = port }
    }

    public struct VMReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("vm", .text)]
        public var vm: String
        public init(vm: String) { self.vm = vm }
    }

    public struct VMsReply: ReplyBody {
        public struct VM: Codable, Sendable, Equatable {
            public var name: String, state: String
            public var memoryMB: Int
            /// From the domain's description; absent for a domain VIOLIN did not make.
            public var vni: UInt32?, mac: String?, nicPort: Int?
            public init(name: String, state: String, memoryMB: Int, vni: UInt32? = nil, mac: String? = nil, nicPort: Int? = nil) {
                self.name = name; self.state = state; self.memoryMB = memoryMB; self.vni = vni; self.mac = mac; self.nicPort = nicPort
            }
            enum CodingKeys: String, CodingKey { case name, state, memoryMB = "memory_mb", vni, mac, nicPort = "nic_port" }
        }
        public static let fields: [FieldSpec] = [.required("host", .text), .required("vms", .list(.object))]
        public var host: String
        public var vms: [VM]
        public init(host: String, vms: [VM]) { self.host = host; self.vms = vms }
    }

    public struct HostInfoReply: ReplyBody {
        public static let fields: [FieldSpec] = [
            .required("host", .text), .required("migration_uri", .text), .required("mesh", .string),
            .required("free_memory_mb", .count), .required("migrations_running", .count),
        ]
        public var host: String
        public var migrationURI: String
        /// This host's mesh endpoint.
        public var mesh: String
        public var freeMemoryMB: Int
        public var migrationsRunning: Int
        public init(host: String, migrationURI: String, mesh: String, freeMemoryMB: Int, migrationsRunning: Int) {
            self.host = host; self.migrationURI = migrationURI; self.mesh = mesh; self.freeMemoryMB = freeMemoryMB
            self.migrationsRunning = migrationsRunning
        }
        enum CodingKeys: String, CodingKey {
            case host, migrationURI = "migration_uri", mesh, freeMemoryMB = "free_memory_mb", migrationsRunning = "migrations_running"
        }
    }

    /// A job and its state: `migrate_request` (`queued`) and `cancel_request` (`cancelling`) answer it.
    public struct JobState: ReplyBody {
        public static let fields: [FieldSpec] = [.required("job", .text), .required("state", .text)]
        public var job: String, state: String
        public init(job: String, state: String) { self.job = job; self.state = state }
    }

    public struct ViolinJobsReply: ReplyBody {
        public struct Started: Codable, Sendable, Equatable {
            public var job: String, vm: String
            public init(job: String, vm: String) { self.job = job; self.vm = vm }
        }
        public static let fields: [FieldSpec] = [.required("jobs", .list(.object))]
        public var jobs: [Started]
        public init(jobs: [Started]) { self.jobs = jobs }
    }

    /// A migration job as the journal holds it.
    public struct JobReport: ReplyBody {
        public static let fields: [FieldSpec] = [
            .required("job", .text), .required("vm", .text), .required("from", .string), .required("to", .string),
            .required("state", .choice(["queued", "preparing", "migrating", "postcopy", "completed", "failed", "cancelled", "rolled_back"])),
            .required("error", .string), .optional("elapsed_ms", .count), .optional("downtime_ms", .count), .optional("blackout_ms", .count),
            .optional("processed_bytes", .count), .optional("remaining_bytes", .count), .optional("rate_bps", .count),
            .optional("decision_id", .string), .required("created_at", .text), .required("updated_at", .text),
        ]
        public var job: String, vm: String, from: String, to: String, state: String, error: String
        /// Null until known.
        public var elapsedMs: Int?, downtimeMs: Int?, blackoutMs: Int?, processedBytes: Int?, remainingBytes: Int?, rateBps: Int?
        public var decisionID: String
        public var createdAt: String, updatedAt: String
        public init(job: String, vm: String, from: String, to: String, state: String, error: String, elapsedMs: Int?, downtimeMs: Int?,
                    blackoutMs: Int?, processedBytes: Int?, remainingBytes: Int?, rateBps: Int?, decisionID: String, createdAt: String,
                    updatedAt: String) {
            self.job = job; self.vm = vm; self.from = from; self.to = to; self.state = state; self.error = error
            self.elapsedMs = elapsedMs; self.downtimeMs = downtimeMs; self.blackoutMs = blackoutMs
            self.processedBytes = processedBytes; self.remainingBytes = remainingBytes; self.rateBps = rateBps
            self.decisionID = decisionID; self.createdAt = createdAt; self.updatedAt = updatedAt
        }
        enum CodingKeys: String, CodingKey {
            case job, vm, from, to, state, error, elapsedMs = "elapsed_ms", downtimeMs = "downtime_ms", blackoutMs = "blackout_ms"
            case processedBytes = "processed_bytes", remainingBytes = "remaining_bytes", rateBps = "rate_bps"
            case decisionID = "decision_id", createdAt = "created_at", updatedAt = "updated_at"
        }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            job = try c.decode(String.self, forKey: .job); vm = try c.decode(String.self, forKey: .vm)
            from = try c.decode(String.self, forKey: .from); to = try c.decode(String.self, forKey: .to)
            state = try c.decode(String.self, forKey: .state); error = try c.decode(String.self, forKey: .error)
            elapsedMs = try c.decodeIfPresent(Int.self, forKey: .elapsedMs); downtimeMs = try c.decodeIfPresent(Int.self, forKey: .downtimeMs)
            blackoutMs = try c.decodeIfPresent(Int.self, forKey: .blackoutMs)
            processedBytes = try c.decodeIfPresent(Int.self, forKey: .processedBytes)
            remainingBytes = try c.decodeIfPresent(Int.self, forKey: .remainingBytes); rateBps = try c.decodeIfPresent(Int.self, forKey: .rateBps)
            decisionID = try c.decodeIfPresent(String.self, forKey: .decisionID) ?? ""
            createdAt = try c.decode(String.self, forKey: .createdAt); updatedAt = try c.decode(String.self, forKey: .updatedAt)
        }
        /// Unknown figures are written as null, as the document says.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(job, forKey: .job); try c.encode(vm, forKey: .vm); try c.encode(from, forKey: .from); try c.encode(to, forKey: .to)
            try c.encode(state, forKey: .state); try c.encode(error, forKey: .error)
            try c.encode(elapsedMs, forKey: .elapsedMs); try c.encode(downtimeMs, forKey: .downtimeMs); try c.encode(blackoutMs, forKey: .blackoutMs)
            try c.encode(processedBytes, forKey: .processedBytes); try c.encode(remainingBytes, forKey: .remainingBytes)
            try c.encode(rateBps, forKey: .rateBps); try c.encode(decisionID, forKey: .decisionID)
            try c.encode(createdAt, forKey: .createdAt); try c.encode(updatedAt, forKey: .updatedAt)
        }
    }

    public struct JobsReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("jobs", .list(.object))]
        /// Newest first.
        public var jobs: [JobReport]
        public init(jobs: [JobReport]) { self.jobs = jobs }
    }

    // MARK: Events

    static let byteCount = FieldSpec.Kind.integer(0...(1 << 53))

    public struct VMCreated: EventBody {
        public static let topic = "executor.vm_created"
        public static let fields: [FieldSpec] = [.required("vm", .text), .required("vni", .vni), .required("uuid", .text)]
        public var vm: String, vni: UInt32, uuid: String
        public init(vm: String, vni: UInt32, uuid: String) { self.vm = vm; self.vni = vni; self.uuid = uuid }
        public var json: JSONValue { ["vm": .string(vm), "vni": .number(Double(vni)), "uuid": .string(uuid)] }
    }

    public struct VMDestroyed: EventBody {
        public static let topic = "executor.vm_destroyed"
        public static let fields: [FieldSpec] = [.required("vm", .text)]
        public var vm: String
        public init(vm: String) { self.vm = vm }
        public var json: JSONValue { ["vm": .string(vm)] }
    }

    public struct MigrationStarted: EventBody {
        public static let topic = "executor.migration_started"
        public static let fields: [FieldSpec] = [.required("job", .text), .required("vm", .text), .required("from", .text), .required("to", .text)]
        public var job: String, vm: String, from: String, to: String
        public init(job: String, vm: String, from: String, to: String) { self.job = job; self.vm = vm; self.from = from; self.to = to }
        public var json: JSONValue { ["job": .string(job), "vm": .string(vm), "from": .string(from), "to": .string(to)] }
    }

    public struct MigrationProgress: EventBody {
        public enum Phase: String, Sendable { case precopy, postcopy, aborting }
        public static let topic = "executor.migration_progress"
        public static let fields: [FieldSpec] = [
            .required("job", .text), .required("vm", .text), .required("phase", .choice(["precopy", "postcopy", "aborting"])),
            .required("processed_bytes", ExecutorAPI.byteCount), .required("remaining_bytes", ExecutorAPI.byteCount), .required("total_bytes", ExecutorAPI.byteCount),
            .required("rate_bps", ExecutorAPI.byteCount), .required("elapsed_ms", ExecutorAPI.byteCount),
        ]
        public var job: String, vm: String, phase: Phase
        public var processedBytes: UInt64, remainingBytes: UInt64, totalBytes: UInt64, rateBps: UInt64, elapsedMs: UInt64
        public init(job: String, vm: String, phase: Phase, processedBytes: UInt64, remainingBytes: UInt64, totalBytes: UInt64,
                    rateBps: UInt64, elapsedMs: UInt64) {
            self.job = job; self.vm = vm; self.phase = phase; self.processedBytes = processedBytes; self.remainingBytes = remainingBytes
            self.totalBytes = totalBytes; self.rateBps = rateBps; self.elapsedMs = elapsedMs
        }
        public var json: JSONValue {
            ["job": .string(job), "vm": .string(vm), "phase": .string(phase.rawValue),
             "processed_bytes": .number(Double(processedBytes)), "remaining_bytes": .number(Double(remainingBytes)),
             "total_bytes": .number(Double(totalBytes)), "rate_bps": .number(Double(rateBps)), "elapsed_ms": .number(Double(elapsedMs))]
        }
    }

    public struct MigrationCompleted: EventBody {
        public static let topic = "executor.migration_completed"
        public static let fields: [FieldSpec] = [
            .required("job", .text), .required("vm", .text), .required("from", .text), .required("to", .text),
            .optional("elapsed_ms", ExecutorAPI.byteCount), .optional("downtime_ms", ExecutorAPI.byteCount), .optional("blackout_ms", ExecutorAPI.byteCount),
        ]
        public var job: String, vm: String, from: String, to: String
        public var elapsedMs: Int?, downtimeMs: Int?, blackoutMs: Int?
        public init(job: String, vm: String, from: String, to: String, elapsedMs: Int?, downtimeMs: Int?, blackoutMs: Int?) {
            self.job = job; self.vm = vm; self.from = from; self.to = to
            self.elapsedMs = elapsedMs; self.downtimeMs = downtimeMs; self.blackoutMs = blackoutMs
        }
        public var json: JSONValue {
            func n(_ v: Int?) -> JSONValue { v.map { .number(Double($0)) } ?? .null }
            return ["job": .string(job), "vm": .string(vm), "from": .string(from), "to": .string(to),
                    "elapsed_ms": n(elapsedMs), "downtime_ms": n(downtimeMs), "blackout_ms": n(blackoutMs)]
        }
        /// The fields a subscriber needs (the policy's inventory), from a received body.
        public static func moved(_ body: JSONValue) -> (vm: String, to: String)? {
            guard let vm = body["vm"]?.stringValue, !vm.isEmpty, let to = body["to"]?.stringValue, !to.isEmpty else { return nil }
            return (vm, to)
        }
    }

    public struct MigrationFailed: EventBody {
        public static let topic = "executor.migration_failed"
        public static let fields: [FieldSpec] = [.required("job", .text), .required("vm", .text), .required("state", .text), .required("error", .string)]
        public var job: String, vm: String, state: String, error: String
        public init(job: String, vm: String, state: String, error: String) { self.job = job; self.vm = vm; self.state = state; self.error = error }
        public var json: JSONValue { ["job": .string(job), "vm": .string(vm), "state": .string(state), "error": .string(error)] }
    }

    public struct JobRecovered: EventBody {
        public static let topic = "executor.job_recovered"
        public static let fields: [FieldSpec] = [.required("job", .text), .required("vm", .text), .required("state", .text), .required("why", .string)]
        public var job: String, vm: String, state: String, why: String
        public init(job: String, vm: String, state: String, why: String) { self.job = job; self.vm = vm; self.state = state; self.why = why }
        public var json: JSONValue { ["job": .string(job), "vm": .string(vm), "state": .string(state), "why": .string(why)] }
    }
}

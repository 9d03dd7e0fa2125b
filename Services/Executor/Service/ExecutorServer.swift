import ExecutorCore
import Foundation
import Hypervisor
import Logging
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The migration executor of one host (PROTOCOL.md §8.5): creates and destroys the host's VMs
/// with their switch ports, and live-migrates them with libvirt, journaling every job.
///
/// Threads: requests are answered on the service's loop thread with its own libvirt
/// connection; every migration runs on a thread of its own (its own libvirt connections and
/// sockets), at most `maxMigrations` at once; the shared state is behind one lock.
public final class ExecutorServer: ServiceLogic, @unchecked Sendable {
    public struct Options: Sendable {
        public var hostID: String
        public var libvirtURI: String
        public var migrationURI: String
        public var mesh: String
        public var database: String
        public var maxMigrations = 2
        public var progressInterval = 0.5
        /// Memory this host offers to VMs, MiB; 0: what libvirt reports free.
        public var memoryMB = 0
        public var callTimeoutMs = 3000
        /// This host's CURVE key pair: with it the host's services serve over CURVE, and the
        /// executor reaches them (and other hosts', with their keys) as a CURVE client.
        public var keyPair: CurveKeyPair?
        /// The host's image store: one directory per image, named for it, holding `vmlinuz` and
        /// optionally `initrd` (or `initrd.gz`, `initrd.img`) and `cmdline`.
        public var imageDir = "/var/lib/violin/images"
        /// Where each VM's serial console is logged, `<vm>.log` ("": not logged).
        public var consoleDir = ""
        /// A console stream that sends no request for this long is closed (seconds).
        public var consoleIdleTimeout = Double(ConsoleRelay.idleTimeoutS)
        /// The libvirt network a VM's uplink NIC joins (`create_vm_request`'s `uplink`): a NAT
        /// network every host defines under this name; "" when hosts offer none.
        public var uplinkNetwork = "default"
        /// The control node's policy endpoint and its public key: where a migration's destination
        /// is looked up (nil: an open lab's executor takes `to_executor`; with keys it refuses).
        public var control: String?
        public var controlKey = ""
        /// Migrations queued or running at once, at most (`max_migrations` of them run).
        public var maxJobs = 64
        /// Where this executor's own TLS client certificate for other hosts' libvirt is
        /// (`cacert.pem`, `clientcert.pem`, `clientkey.pem`; "": libvirt's default, /etc/pki).
        /// Local configuration: a URI from the inventory never names a path.
        public var libvirtPKI = ""
        /// Days the journal keeps a finished job (pruned at start).
        public var retentionDays = 90.0
        /// Seconds a recovering job waits for a host's libvirt that does not answer before it
        /// ends `failed` (one libvirt still migrates is waited for without a limit).
        public var unreachableLimitS = Recovery.unreachableLimitS
        /// Seconds between the two looks for stale VM ports after a start (0: no sweep).
        public var staleSweepS = 15.0
        /// How a hypervisor connection is opened (libvirt; `InMemoryHypervisor` in tests).
        public var connect: HypervisorConnector = Hypervisors.libvirt
        public init(hostID: String, libvirtURI: String, migrationURI: String, mesh: String, database: String) {
            self.hostID = hostID; self.libvirtURI = libvirtURI; self.migrationURI = migrationURI
            self.mesh = mesh; self.database = database
        }
    }

    final class Control: @unchecked Sendable {
        var cancelled = false
    }

    public let options: Options
    public let journal: Journal
    let logger: Logger
    /// The loop thread's libvirt connection, opened on first use (and again after a failure),
    /// so the executor starts and answers even while libvirt is not up.
    private var connection: (any MigratingHypervisor)?
    private let context = ZMQContext()
    let lock = NSLockLite()
    var controls: [String: Control] = [:]      // job id -> its control, while it runs
    var busyVMs: [String: String] = [:]         // vm -> job id
    var threads = 0
    let slots: DispatchSemaphore
    public var publish: (String, JSONValue) -> Void = { _, _ in }
    /// The migrations running here and how the finished ones ended (Prometheus).
    let running = RunningMigrations()
    public func attach(metrics: MetricSet) { running.attach(metrics) }
    public func collectMetrics(into m: MetricSet) { running.collect(into: m) }

    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        journal = try Journal(path: options.database)
        if !options.consoleDir.isEmpty {
            try FileManager.default.createDirectory(atPath: options.consoleDir, withIntermediateDirectories: true)
        }
        slots = DispatchSemaphore(value: max(1, options.maxMigrations))
    }

    /// Signalled by `stop`: the stale-port sweep ends.
    private let stopping = DispatchSemaphore(value: 0)

    public func stop() {
        stopping.signal()
        consoles.stop()
        context.shutdown()
    }

    /// The consoles of this host's VMs, relayed to `violin console` (PROTOCOL.md §4.1).
    lazy var consoles = ConsoleRelay(host: options.hostID, open: { [unowned self] vm throws(ProtocolError) in
        do throws(HypervisorError) { return try self.options.connect(self.options.libvirtURI).openConsole(vm) } catch {
            throw ProtocolError(error.kind == .notFound ? .notFound : .unavailable, "console of \(vm) on \(self.options.hostID): \(error.message)")
        }
    }, movedTo: { [unowned self] vm in self.movedTo(vm) }, idleTimeout: options.consoleIdleTimeout)

    /// Where `vm` went when its console ended: the destination of its latest migration from
    /// here, once that migration is over, if it completed in the last two minutes.
    func movedTo(_ vm: String) -> String? {
        let deadline = monotonicMillis() + 120_000
        while lock.withLock({ busyVMs[vm] != nil }) && monotonicMillis() < deadline { usleep(100_000) }
        guard let job = (try? journal.recent(limit: 100))?.first(where: { $0.vm == vm }), job.state == .completed,
              let at = ISO8601DateFormatter().date(from: job.updatedAt), Date().timeIntervalSince(at) < 120 else { return nil }
        return job.toHost
    }

    func libvirt() throws(ProtocolError) -> any MigratingHypervisor {
        if let c = connection, (try? c.host()) != nil { return c }
        connection = nil
        do { connection = try options.connect(options.libvirtURI) } catch {
            throw ProtocolError(.unavailable, "libvirt at \(options.libvirtURI): \(error.message)")
        }
        // The pool of VM disks, on every host: a migration that copies storage finds it at the
        // destination, and libvirt creates the disk there first.
        do { try connection!.ensurePool(name: Self.pool, path: Self.poolPath) } catch {
            logger.warning("no storage pool: disks cannot be created or copied", metadata: ["error": "\(error.message)"])
        }
        return connection!
    }

    static let pool = "violin"
    static let poolPath = "/var/lib/libvirt/images/violin"
    static func volumeName(_ vm: String) -> String { vm + ".img" }

    // MARK: - Talking to meshes and executors

    /// `key`: the server's CURVE public key (nil: this host's own, for its own mesh; "": plain).
    func call<R: RequestBody>(_ endpoint: String, _ request: R, key: String? = nil, timeoutMs: Int? = nil,
                              retries: Int? = nil) throws(ProtocolError) -> R.Reply {
        let serverKey = key ?? options.keyPair?.publicKey ?? ""
        let security = options.keyPair.flatMap { serverKey.isEmpty ? nil : ClientSecurity(keyPair: $0, serverPublicKey: serverKey) }
        let client = ServiceClient(context: context, endpoint: endpoint, security: security, sender: "executor@\(options.hostID)",
                                   timeoutMs: timeoutMs ?? options.callTimeoutMs)
        defer { client.close() }
        do {
            return try client.call(request, retries: retries)
        } catch .error(let e) {
            throw ProtocolError(e.code, "\(endpoint): \(e.message)")
        } catch {
            throw ProtocolError(.unavailable, "\(endpoint) \(R.msgType): \(error)")
        }
    }

    /// The VM's port on its VIOLIN's switch: QEMU's UDP netdev on this host's loopback, or the
    /// TAP device its NIC opens.
    static func switchPort(_ facts: VMFacts, vm: String) -> SwitchAPI.AddPort {
        let b = facts.portBody(vm: vm)
        if b["kind"] == "vm_tap" { return SwitchAPI.AddPort(name: b["name"] ?? VMSpec.portName(vm), kind: .vmTap(mtu: nil)) }
        return SwitchAPI.AddPort(name: b["name"] ?? VMSpec.portName(vm), kind: .udp(local: b["local"] ?? "", remote: b["remote"] ?? ""))
    }

    // MARK: - VMs

    func facts(_ vm: String, _ hv: any MigratingHypervisor) throws(ProtocolError) -> VMFacts {
        let xml: String
        do { xml = try hv.xml(vm) } catch {
            throw ProtocolError(error.kind == .notFound ? .notFound : .unavailable, "VM \(vm): \(error.message)")
        }
        guard let f = VMFacts(domainXML: xml) else { throw ProtocolError(.conflict, "VM \(vm) is not a VIOLIN VM (no violin metadata)") }
        return f
    }

    func usedMemoryMB(_ hv: any MigratingHypervisor) -> Int {
        ((try? hv.domains()) ?? []).reduce(0) { $0 + Int($1.maxMemoryKiB / 1024) }
    }

    func freeMemoryMB() throws(ProtocolError) -> Int {
        let hv = try libvirt()
        let libvirtFree = Int(hv.freeMemoryMiB())
        guard options.memoryMB > 0 else { return libvirtFree }
        let offered = options.memoryMB - usedMemoryMB(hv)
        // 0 from libvirt is its error value (a hypervisor that cannot tell, like the test driver):
        // then the memory offered is all there is to go by.
        return libvirtFree > 0 ? min(libvirtFree, offered) : offered
    }

    /// An image of the store: its kernel, initrd and command line. The name is checked before
    /// it touches a path: letters, digits, '-', '_' and '.', not starting with '.'.
    func image(_ name: String) throws(ProtocolError) -> (kernel: String, initrd: String, cmdline: String) {
        guard !name.isEmpty, name.count <= 64, name.first != ".",
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw ProtocolError(.invalidBody, "image must be a name of 1-64 letters, digits, '-', '_' or '.', not starting with '.'")
        }
        let dir = options.imageDir + "/" + name
        let fm = FileManager.default
        guard fm.fileExists(atPath: dir + "/vmlinuz") else {
            throw ProtocolError(.notFound, "host \(options.hostID) has no image \(name) (violin images lists them)")
        }
        let initrd = ["initrd", "initrd.gz", "initrd.img"].map { dir + "/" + $0 }.first { fm.fileExists(atPath: $0) } ?? ""
        let cmdline = (try? String(contentsOfFile: dir + "/cmdline", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return (dir + "/vmlinuz", initrd, cmdline)
    }

    func images() -> ExecutorAPI.ImagesReply {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: options.imageDir)) ?? []
        let kernels = names.sorted().filter { (try? image($0)) != nil }
        return ExecutorAPI.ImagesReply(host: options.hostID, images: kernels.map { .init(name: $0, kind: "kernel") })
    }

    func createVM(_ r: ExecutorAPI.CreateVM) throws(ProtocolError) -> ExecutorAPI.CreateVMReply {
        let vni = Int(r.vni)
        var booted: (kernel: String, initrd: String, cmdline: String) = (r.kernel, r.initrd, r.cmdline)
        if let name = r.image { booted = try image(name) }
        var spec = VMSpec(name: r.name, vni: r.vni, mac: r.mac.description, kernel: booted.kernel, nicPort: r.nicPort)
        spec.memoryMB = r.memoryMB
        spec.vcpus = r.vcpus
        spec.nic = VMSpec.NIC(rawValue: r.nic) ?? .udp
        spec.initrd = r.image == nil ? r.initrd : booted.initrd
        // With an image, the request's words follow the image's own command line.
        spec.cmdline = r.image == nil ? r.cmdline : [booted.cmdline, r.cmdline].filter { !$0.isEmpty }.joined(separator: " ")
        spec.disk = r.disk
        spec.diskMB = r.diskMB
        if r.uplink {
            guard !options.uplinkNetwork.isEmpty else { throw ProtocolError(.conflict, "host \(options.hostID) offers no uplink (uplink_network is empty)") }
            spec.uplinkNetwork = options.uplinkNetwork
        }
        // The console's log: the executor's own file (a path from the request is deprecated, §11).
        spec.console = !r.console.isEmpty || options.consoleDir.isEmpty ? r.console : options.consoleDir + "/" + spec.name + ".log"
        do { try spec.validate() } catch { throw ProtocolError(.invalidBody, error.description) }
        for (k, path) in [("kernel", spec.kernel), ("initrd", spec.initrd), ("disk", spec.disk)] where !path.isEmpty {
            guard FileManager.default.fileExists(atPath: path) else { throw ProtocolError(.invalidBody, "\(k) \(path) does not exist") }
        }
        let hv = try libvirt()
        guard hv.state(spec.name) == .absent, try stoppedVM(spec.name) == nil else {
            throw ProtocolError(.conflict, "a VM named \(spec.name) exists on this host")
        }
        let free = try freeMemoryMB()
        guard free >= spec.memoryMB else {
            throw ProtocolError(.conflict, "host \(options.hostID) has \(free) MiB free, \(spec.name) needs \(spec.memoryMB)")
        }
        if spec.diskMB > 0 {
            do { spec.disk = try hv.createVolume(pool: Self.pool, name: Self.volumeName(spec.name), capacityMiB: UInt64(spec.diskMB)) } catch {
                throw ProtocolError(.unavailable, "disk for \(spec.name): \(error.message)")
            }
        }
        let facts = VMFacts(domainXML: spec.domainXML)!
        let added = try call(options.mesh, MeshAPI.AddPort(vni: facts.vni, port: Self.switchPort(facts, vm: spec.name),
                                                           seed: r.seed, seedKey: r.seedKey))
        let uuid: String
        do { uuid = try hv.create(xml: spec.domainXML) } catch {
            _ = try? call(options.mesh, MeshAPI.RemovePort(vni: UInt32(vni), name: spec.portName))
            if spec.diskMB > 0 { hv.deleteVolume(pool: Self.pool, name: Self.volumeName(spec.name)) }
            throw ProtocolError(.unavailable, "libvirt: \(error.message)")
        }
        logger.info("VM created", metadata: ["vm": "\(spec.name)", "vni": "\(vni)"])
        emit(ExecutorAPI.VMCreated(vm: spec.name, vni: spec.vni, uuid: uuid))
        return ExecutorAPI.CreateVMReply(vm: spec.name, uuid: uuid, port: added.port)
    }

    func destroyVM(_ name: String) throws(ProtocolError) -> ExecutorAPI.VMReply {
        if let job = lock.withLock({ busyVMs[name] }) { throw ProtocolError(.conflict, "VM \(name) is migrating (job \(job))") }
        let hv = try libvirt()
        if hv.state(name) == .absent, try stoppedVM(name) != nil {
            // A stopped VM: its definition goes, and its disk.
            try journalRead { try journal.removeStopped(name) }
            hv.deleteVolume(pool: Self.pool, name: Self.volumeName(name))
            emit(ExecutorAPI.VMDestroyed(vm: name))
            return ExecutorAPI.VMReply(vm: name)
        }
        let f = try facts(name, hv)
        do { try hv.destroy(name) } catch { throw ProtocolError(.unavailable, "libvirt: \(error.message)") }
        hv.deleteVolume(pool: Self.pool, name: Self.volumeName(name))
        _ = try? call(options.mesh, MeshAPI.RemovePort(vni: f.vni, name: VMSpec.portName(name)))
        emit(ExecutorAPI.VMDestroyed(vm: name))
        return ExecutorAPI.VMReply(vm: name)
    }

    func vms() throws(ProtocolError) -> ExecutorAPI.VMsReply {
        let hv = try libvirt()
        let list: [DomainStats]
        do { list = try hv.domains() } catch { throw ProtocolError(.unavailable, "libvirt: \(error.message)") }
        let vms: [ExecutorAPI.VMsReply.VM] = list.map { d in
            let f = (try? hv.xml(d.name)).flatMap { VMFacts(domainXML: $0) }
            return .init(name: d.name, state: hv.state(d.name).rawValue, memoryMB: Int(d.maxMemoryKiB / 1024), vni: f?.vni, mac: f?.mac,
                         nicPort: f.map { Int($0.nicPort) })
        }
        let stopped: [ExecutorAPI.VMsReply.VM] = try journalRead { try journal.stopped() }.map { st in
            let f = VMFacts(domainXML: st.definition)
            return .init(name: st.name, state: "stopped", memoryMB: st.memoryMB, vni: UInt32(st.vni), mac: f?.mac, nicPort: f?.nicPort)
        }
        return ExecutorAPI.VMsReply(host: options.hostID, vms: vms + stopped)
    }

    func stoppedVM(_ name: String) throws(ProtocolError) -> Journal.Stopped? {
        try journalRead { try journal.stopped() }.first { $0.name == name }
    }

    /// Stops a VM and keeps what starts it again; its port leaves the switch (and the host's mesh
    /// the VIOLIN, when it was the last port here).
    func stopVM(_ name: String) throws(ProtocolError) -> ExecutorAPI.VMReply {
        if let job = lock.withLock({ busyVMs[name] }) { throw ProtocolError(.conflict, "VM \(name) is migrating (job \(job))") }
        let hv = try libvirt()
        let f = try facts(name, hv)
        let definition: String
        do { definition = try hv.definition(name) } catch { throw ProtocolError(.unavailable, "libvirt: \(error.message)") }
        try journalRead { try journal.saveStopped(.init(name: name, definition: definition, vni: Int(f.vni), memoryMB: f.memoryMB)) }
        do { try hv.destroy(name) } catch {
            try? journal.removeStopped(name)
            throw ProtocolError(.unavailable, "libvirt: \(error.message)")
        }
        _ = try? call(options.mesh, MeshAPI.RemovePort(vni: f.vni, name: VMSpec.portName(name)))
        logger.info("VM stopped", metadata: ["vm": "\(name)"])
        emit(ExecutorAPI.VMStopped(vm: name))
        return ExecutorAPI.VMReply(vm: name)
    }

    /// Starts a stopped VM again from its definition, with its port on the switch first.
    func startVM(_ r: ExecutorAPI.StartVM) throws(ProtocolError) -> ExecutorAPI.VMReply {
        guard let st = try stoppedVM(r.name) else {
            throw ProtocolError(.notFound, "no stopped VM \(r.name) on host \(options.hostID)")
        }
        guard let facts = VMFacts(domainXML: st.definition) else { throw ProtocolError(.internalError, "the definition of \(r.name) lost its metadata") }
        let hv = try libvirt()
        guard hv.state(r.name) == .absent else { throw ProtocolError(.conflict, "VM \(r.name) runs") }
        let free = try freeMemoryMB()
        guard free >= st.memoryMB else {
            throw ProtocolError(.conflict, "host \(options.hostID) has \(free) MiB free, \(r.name) needs \(st.memoryMB)")
        }
        _ = try call(options.mesh, MeshAPI.AddPort(vni: facts.vni, port: Self.switchPort(facts, vm: r.name), seed: r.seed, seedKey: r.seedKey))
        do { _ = try hv.create(xml: st.definition) } catch {
            _ = try? call(options.mesh, MeshAPI.RemovePort(vni: facts.vni, name: VMSpec.portName(r.name)))
            throw ProtocolError(.unavailable, "libvirt: \(error.message)")
        }
        try? journal.removeStopped(r.name)
        logger.info("VM started", metadata: ["vm": "\(r.name)"])
        emit(ExecutorAPI.VMStarted(vm: r.name, vni: facts.vni))
        return ExecutorAPI.VMReply(vm: r.name)
    }

    // MARK: - Migration requests

    struct JobOptions {
        var migration = MigrationOptions()
        var timeoutS = 120.0
    }

    func jobOptions(_ m: ExecutorAPI.MigrationOptions) -> JobOptions {
        var o = JobOptions()
        o.migration.autoConverge = m.autoConverge
        o.migration.postcopy = m.postcopy
        o.migration.copyStorage = m.copyStorage
        o.migration.bandwidthMiBps = UInt64(m.bandwidthMiBps)
        o.timeoutS = m.timeoutS
        return o
    }

    struct Destination {
        var host: String
        var executor: String
        var key: String
        var uri: String
        var mesh: String
        var freeMB: Int
    }

    /// Where a migration goes. With a control node: the host `to` as its inventory has it —
    /// links checked, usable (not draining, key still accepted) — and only its free memory
    /// asked of the destination itself. Without one (an open lab): the executor named.
    func destination(_ o: ExecutorAPI.MigrationOptions) throws(ProtocolError) -> Destination {
        guard let control = options.control else {
            guard !o.toExecutor.isEmpty else { throw ProtocolError(.invalidBody, "to_executor is required without a control node") }
            let dest = try destination(o.toExecutor, key: o.toKey)
            if !o.to.isEmpty, o.to != dest.host { throw ProtocolError(.conflict, "to is \(o.to) but \(dest.executor) is host \(dest.host)") }
            return dest
        }
        guard !o.to.isEmpty else { throw ProtocolError(.invalidBody, "to (the destination host's id) is required") }
        let record: PolicyAPI.HostRecordReply
        do { record = try call(control, PolicyAPI.HostRecord(id: o.to), key: options.controlKey, timeoutMs: 2000, retries: 1) } catch {
            throw error.code == .notFound ? ProtocolError(.notFound, "no host \(o.to) in the inventory") : error
        }
        guard record.usable else { throw ProtocolError(.conflict, record.why ?? "host \(o.to) takes no VM now") }
        if let why = Destinations.check(executor: record.executor, mesh: record.mesh, migrationURI: record.migrationURI) {
            throw ProtocolError(.forbidden, "host \(o.to)'s registered links: \(why)")
        }
        guard record.id != options.hostID else { throw ProtocolError(.conflict, "the destination is this host (\(record.id))") }
        let info = try call(record.executor, ExecutorAPI.HostInfo(), key: record.key, timeoutMs: 2000, retries: 0)
        guard info.host == record.id else { throw ProtocolError(.conflict, "\(record.executor) answers as host \(info.host), not \(record.id)") }
        return Destination(host: record.id, executor: record.executor, key: record.key, uri: record.migrationURI, mesh: record.mesh,
                           freeMB: info.freeMemoryMB)
    }

    func destination(_ executor: String, key: String) throws(ProtocolError) -> Destination {
        guard key.isEmpty || CurveKeyPair.isValidKey(key) else { throw ProtocolError(.invalidBody, "to_key must be a CURVE public key") }
        // Asked once: an unreachable destination is reported at once, not after resends.
        let info = try call(executor, ExecutorAPI.HostInfo(), key: key, timeoutMs: 2000, retries: 0)
        let (host, uri, mesh, free) = (info.host, info.migrationURI, info.mesh, info.freeMemoryMB)
        guard host != options.hostID else { throw ProtocolError(.conflict, "the destination is this host (\(host))") }
        return Destination(host: host, executor: executor, key: key, uri: uri, mesh: mesh, freeMB: free)
    }

    func newJobID() -> String {
        var g = SystemRandomNumberGenerator()
        return "job-" + String(g.next() as UInt64, radix: 16).prefix(10)
    }

    /// Checks a migration of `vm` and journals it; the caller starts it.
    func admit(_ vm: String, to dest: Destination, _ o: ExecutorAPI.MigrationOptions, memoryClaimed: inout Int) throws(ProtocolError) -> Journal.Job {
        let hv = try libvirt()
        let f = try facts(vm, hv)
        let state = hv.state(vm)
        guard state == .running || state == .paused else { throw ProtocolError(.conflict, "VM \(vm) is \(state.rawValue), not running") }
        if let job = lock.withLock({ busyVMs[vm] }) { throw ProtocolError(.conflict, "VM \(vm) is already migrating (job \(job))") }
        let inFlight = lock.withLock { busyVMs.count }
        guard inFlight < options.maxJobs else {
            throw ProtocolError(.conflict, "this executor has \(inFlight) migrations queued or running, its most (max_jobs)")
        }
        guard dest.freeMB - memoryClaimed >= f.memoryMB else {
            throw ProtocolError(.conflict, "host \(dest.host) has \(dest.freeMB - memoryClaimed) MiB free, \(vm) needs \(f.memoryMB)")
        }
        memoryClaimed += f.memoryMB
        var job = Journal.Job(id: newJobID(), vm: vm, fromHost: options.hostID, toHost: dest.host, toExecutor: dest.executor)
        job.destinationURI = dest.uri
        job.destinationMesh = dest.mesh
        job.destinationKey = dest.key
        job.decisionID = o.decisionID
        job.reason = o.reason
        job.copyStorage = o.copyStorage
        do { try journal.save(job) } catch { throw ProtocolError(.internalError, "journal: \(error)") }
        lock.withLock { busyVMs[vm] = job.id; controls[job.id] = Control() }
        return job
    }

    /// The migrations of one whole-VIOLIN request: each waits, once its VM has moved (or
    /// failed to), until all have, so the network cuts over for the whole VIOLIN at once.
    final class CutOverGroup: @unchecked Sendable {
        private let cond = NSCondition()
        private var waiting: Int
        init(_ count: Int) { waiting = count }
        /// Arrives; returns when all have arrived, or after `timeout` seconds.
        func arriveAndWait(timeout: Double) {
            cond.lock()
            defer { cond.unlock() }
            waiting -= 1
            if waiting <= 0 { cond.broadcast(); return }
            let end = Date().addingTimeInterval(timeout)
            while waiting > 0, cond.wait(until: end) {}
        }
    }

    func start(_ job: Journal.Job, _ o: JobOptions, facts: VMFacts, group: CutOverGroup? = nil) {
        let t = Thread { [self] in MigrationRunner(self, job, o, facts: facts, group: group).run() }
        t.name = "migrate-\(job.vm)"
        lock.withLock { threads += 1 }
        t.start()
    }

    /// The destination's mesh brings the VIOLIN up there (through our mesh) and prepares the port.
    func prepareDestinationPort(_ job: Journal.Job, _ facts: VMFacts) throws(ProtocolError) {
        let port = MeshAPI.AddPort(vni: facts.vni, port: Self.switchPort(facts, vm: job.vm), seed: options.mesh,
                                   seedKey: options.keyPair?.publicKey)
        _ = try call(job.destinationMesh, port, key: job.destinationKey)
        // A cap on the VM's port here goes with the VM.
        let name = VMSpec.portName(job.vm)
        if let rate = (try? call(options.mesh, MeshAPI.PortStats(vni: facts.vni, name: name), retries: 0))?.counters.rateMbitS, rate > 0 {
            _ = try? call(job.destinationMesh, MeshAPI.SetPortRate(vni: facts.vni, name: name, mbitS: rate), key: job.destinationKey)
        }
    }

    /// What libvirt's migrate call ended with, filled in by its helper thread.
    final class Outcome: @unchecked Sendable { var error: HypervisorError? }

    /// Starts libvirt's blocking migrate on a helper thread (its own connection); `done` is
    /// signalled when it returns.
    func migrateInBackground(_ vm: String, to dest: String, _ mo: MigrationOptions) -> (Outcome, DispatchSemaphore) {
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let uri = options.libvirtURI
        let connect = options.connect
        let helper = Thread {
            do {
                let conn = try connect(uri)
                var mo = mo
                mo.tls = dest.hasPrefix("qemu+tls://")
                try conn.migrate(vm, to: dest, options: mo)
            } catch {
                outcome.error = error as? HypervisorError ?? HypervisorError(kind: .failed, message: "\(error)")
            }
            done.signal()
        }
        helper.name = "libvirt-migrate"
        helper.start()
        return (outcome, done)
    }

    func saveJob(_ job: Journal.Job) {
        do { try journal.save(job) } catch { logger.error("journal: \(error)") }
    }

    /// After a successful migration: the source port goes (with a grace period of forwarding to
    /// the destination), the destination announces the MAC; returns the network blackout the
    /// two switches saw (last frame from the VM at the old port -> first frame at the new). The
    /// last frame marks the VM's pause only if the VM was sending during the migration (after
    /// `since`); for a silent VM there is no blackout to measure (nil).
    func cutOver(_ job: Journal.Job, facts: VMFacts, since: UInt64) -> Int? {
        let portName = VMSpec.portName(job.vm)
        let mac = MACAddress(facts.mac)
        if let mac { _ = try? call(job.destinationMesh, MeshAPI.Announce(vni: facts.vni, name: portName, mac: mac), key: job.destinationKey) }
        // The last port of its VIOLIN here: the mesh leaves the VIOLIN (telling its members, waiting
        // for its switch to exit) before it answers, which can take seconds — the port's last
        // counters are in that answer.
        let old = try? call(options.mesh, MeshAPI.RemovePort(vni: facts.vni, name: portName,
                                                             forward: mac.map { .init(mac: $0, to: job.destinationMesh) }), timeoutMs: 15_000)
        // The guest's first frame at the new place may follow the resume by a moment.
        var first: Int?
        let deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000_000
        repeat {
            first = (try? call(job.destinationMesh, MeshAPI.PortStats(vni: facts.vni, name: portName), key: job.destinationKey,
                               retries: 0))?.counters.firstRxMs
            if first != nil { break }
            usleep(20_000)
        } while DispatchTime.now().uptimeNanoseconds < deadline
        guard let last = old?.port.lastRxMs, last >= since, let first, first >= last else { return nil }
        return first - last
    }

    // MARK: - Recovery after a restart

    public func recover() {
        // Finished jobs older than the retention go first; unfinished ones are never pruned.
        if let n = try? journal.prune(before: Date().addingTimeInterval(-options.retentionDays * 86_400)), n > 0 {
            logger.info("journal pruned", metadata: ["jobs": "\(n)", "days": "\(options.retentionDays)"])
        }
        let unfinished = (try? journal.unfinished()) ?? []
        for job in unfinished {
            let t = Thread { [self] in self.recover(job) }
            t.name = "recover-\(job.vm)"
            t.start()
        }
        let sweep = Thread { [self] in self.sweepStalePorts(pause: options.staleSweepS) }
        sweep.name = "stale-ports"
        sweep.start()
    }

    /// The VM ports of this host's mesh that no VM here uses (`StalePorts`).
    func stalePorts() -> [(vni: UInt32, name: String)]? {
        guard let hv = try? libvirt(), let ports = try? call(options.mesh, MeshAPI.Ports(), retries: 1) else { return nil }
        let all = ports.violins.flatMap { v in v.ports.map { (vni: v.vni, name: $0) } }
        let present = Set(all.map { String($0.name.dropFirst(3)) }.filter {
            hv.state($0) != .absent || ((try? self.stoppedVM($0)) ?? nil) != nil
        })
        return StalePorts.find(ports: all, present: present, busy: Set(lock.withLock { busyVMs.keys }))
    }

    /// Every `pause` seconds until stopped, a look at the mesh's VM ports: those stale in two
    /// looks in a row are removed (a port whose VM went without this executor's knowing, as a
    /// guest lost in a post-copy or a copy restored on a host back from a crash, would
    /// otherwise keep its VIOLIN's switch running here for good).
    func sweepStalePorts(pause: Double) {
        guard pause > 0 else { return }
        var before: [(vni: UInt32, name: String)]?
        while stopping.wait(timeout: .now() + pause) == .timedOut {
            let now = stalePorts()
            if let before, let now {
                for p in StalePorts.confirmed(before, now) {
                    _ = try? call(options.mesh, MeshAPI.RemovePort(vni: p.vni, name: p.name))
                    logger.notice("stale port removed", metadata: ["vni": "\(p.vni)", "port": "\(p.name)"])
                }
            }
            before = now
        }
        stopping.signal()        // for any other waiter
    }

    func presence(_ hv: (any MigratingHypervisor)?, _ vm: String) -> Presence {
        guard let hv else { return .unknown }
        switch hv.state(vm) {
        case .running: return .running
        case .paused: return .paused
        case .absent, .shutoff: return .absent
        case .other: return .paused
        case .unreachable: return .unknown
        }
    }

    /// The two hosts' libvirt as a recovering job sees them: connected again whenever one
    /// stops answering (a libvirtd restarted under us).
    final class RecoveryView {
        let node: ExecutorServer
        let job: Journal.Job
        var local: (any MigratingHypervisor)?, remote: (any MigratingHypervisor)?
        var facts: VMFacts?
        init(_ node: ExecutorServer, _ job: Journal.Job) { self.node = node; self.job = job }

        func look() -> (source: Presence, destination: Presence, active: Bool) {
            var source = node.presence(local, job.vm)
            if source == .unknown {
                local = try? node.options.connect(node.options.libvirtURI)
                source = node.presence(local, job.vm)
            }
            var destination = Presence.absent
            if job.state != .queued {
                destination = node.presence(remote, job.vm)
                if destination == .unknown, !job.destinationURI.isEmpty {
                    remote = try? node.options.connect(node.remoteLibvirt(job.destinationURI))
                    destination = node.presence(remote, job.vm)
                }
            }
            if facts == nil {
                facts = (try? local?.xml(job.vm)).flatMap { VMFacts(domainXML: $0) } ?? (try? remote?.xml(job.vm)).flatMap { VMFacts(domainXML: $0) }
            }
            let active = (job.state == .migrating || job.state == .postcopy) && ((try? local?.jobStats(job.vm))?.active ?? false)
            return (source, destination, active)
        }
    }

    /// Looks until recovery can decide: as long as libvirt still migrates the VM (libvirtd runs
    /// a peer-to-peer migration itself), and as long as a host's libvirt does not answer — up
    /// to `Recovery.unreachableLimitS`, after which the job fails with the VM left as it is.
    func awaitDecision(_ view: RecoveryView) -> Recovery {
        var unreachableSince: UInt64?
        var pause: UInt32 = 200_000
        while true {
            let seen = view.look()
            let decision = Recovery.decide(source: seen.source, destination: seen.destination, migrationActive: seen.active,
                                           state: view.job.state)
            if decision.outcome != .wait { return decision }
            let now = DispatchTime.now().uptimeNanoseconds
            if seen.active { unreachableSince = nil; pause = 200_000 } else {
                let since = unreachableSince ?? now
                unreachableSince = since
                if Double(now - since) / 1e9 >= options.unreachableLimitS {
                    return Recovery.gaveUp(after: options.unreachableLimitS)
                }
                pause = min(pause * 2, 2_000_000)
            }
            usleep(pause)
        }
    }

    /// An unfinished job from the journal, seen through to the end a migration of the same
    /// outcome would have had (`Recovery.effects`).
    func recover(_ initial: Journal.Job) {
        var job = initial
        lock.withLock { busyVMs[job.vm] = job.id }
        defer { lock.withLock { busyVMs[job.vm] = nil } }
        let view = RecoveryView(self, job)
        let decision = awaitDecision(view)
        let (local, remote) = (view.local, view.remote)
        if decision.destroySource { try? local?.destroy(job.vm) }
        if decision.destroyDestination { try? remote?.destroy(job.vm) }
        if decision.resumeSource { try? local?.resume(job.vm) }
        if decision.resumeDestination { try? remote?.resume(job.vm) }
        switch decision.outcome {
        case .completed: job.state = .completed
        case .rolledBack: job.state = .rolledBack
        case .wait, .lost: job.state = .failed; job.error = decision.why
        }
        if job.error.isEmpty { job.error = "recovered after a restart: " + decision.why }
        for effect in decision.effects(copyStorage: job.copyStorage) { performRecovery(effect, job, view) }
        logger.notice("job recovered", metadata: ["job": "\(job.id)", "vm": "\(job.vm)", "state": "\(job.state.rawValue)", "why": "\(decision.why)"])
        emit(ExecutorAPI.JobRecovered(job: job.id, vm: job.vm, state: job.state.rawValue, why: decision.why))
    }

    /// The effects of `Recovery.effects`, carried out as a migration's runner carries them out.
    func performRecovery(_ effect: MigrationEffect, _ job: Journal.Job, _ view: RecoveryView) {
        let facts = view.facts
        switch effect {
        case .cutOver:
            if let facts { _ = cutOver(job, facts: facts, since: .max) }
        case .removeDestinationPort:
            if let facts { removeDestinationPort(job, vni: facts.vni) }
        case .deleteSourceDisk: view.local?.deleteVolume(pool: Self.pool, name: Self.volumeName(job.vm))
        case .journal: saveJob(job)
        case .publishCompleted: publishCompleted(job)
        case .publishFailed: publishFailed(job)
        default: break
        }
    }

    // MARK: - A job's end, shared by its runner and by recovery

    func removeDestinationPort(_ job: Journal.Job, vni: UInt32) {
        guard !job.destinationMesh.isEmpty else { return }
        _ = try? call(job.destinationMesh, MeshAPI.RemovePort(vni: vni, name: VMSpec.portName(job.vm)), key: job.destinationKey)
    }

    func publishCompleted(_ job: Journal.Job) {
        running.ended(job.vm, state: job.state.rawValue, downtimeMs: job.downtimeMs, blackoutMs: job.blackoutMs)
        logger.info("migration completed", metadata: ["job": "\(job.id)", "vm": "\(job.vm)", "to": "\(job.toHost)",
                                                      "elapsed_ms": "\(job.elapsedMs ?? 0)", "downtime_ms": "\(job.downtimeMs ?? -1)"])
        emit(ExecutorAPI.MigrationCompleted(job: job.id, vm: job.vm, from: job.fromHost, to: job.toHost,
                                            elapsedMs: job.elapsedMs, downtimeMs: job.downtimeMs, blackoutMs: job.blackoutMs))
    }

    func publishFailed(_ job: Journal.Job) {
        running.ended(job.vm, state: job.state.rawValue, downtimeMs: nil, blackoutMs: nil)
        logger.warning("migration failed", metadata: ["job": "\(job.id)", "vm": "\(job.vm)", "state": "\(job.state.rawValue)", "error": "\(job.error)"])
        emit(ExecutorAPI.MigrationFailed(job: job.id, vm: job.vm, state: job.state.rawValue, error: job.error))
    }

    // MARK: - Requests

    static func report(_ j: Journal.Job) -> ExecutorAPI.JobReport {
        ExecutorAPI.JobReport(job: j.id, vm: j.vm, from: j.fromHost, to: j.toHost, state: j.state.rawValue, error: j.error,
                              elapsedMs: j.elapsedMs, downtimeMs: j.downtimeMs, blackoutMs: j.blackoutMs, processedBytes: j.processed,
                              remainingBytes: j.remaining, rateBps: j.rate, decisionID: j.decisionID, createdAt: j.createdAt,
                              updatedAt: j.updatedAt)
    }

    /// A journal read; a database failure is an internal error, not "no such job".
    func journalRead<T>(_ body: () throws -> T) throws(ProtocolError) -> T {
        do { return try body() } catch { throw ProtocolError(.internalError, "journal: \(error)") }
    }

    /// The requests of PROTOCOL.md §8.5, one handler per type.
    private lazy var table: RequestTable = {
        var t = RequestTable()
        t.on(ExecutorAPI.CreateVM.self) { [unowned self] r in try self.createVM(r) }
        t.on(ExecutorAPI.DestroyVM.self) { [unowned self] r in try self.destroyVM(r.name) }
        t.on(ExecutorAPI.StopVM.self) { [unowned self] r in try self.stopVM(r.name) }
        t.on(ExecutorAPI.StartVM.self) { [unowned self] r in try self.startVM(r) }
        t.on(ExecutorAPI.VMs.self) { [unowned self] _ in try self.vms() }
        t.on(ExecutorAPI.Images.self) { [unowned self] _ in self.images() }
        t.on(ExecutorAPI.HostInfo.self) { [unowned self] _ in
            let running = self.lock.withLock { self.busyVMs.count }
            return ExecutorAPI.HostInfoReply(host: self.options.hostID, migrationURI: self.options.migrationURI, mesh: self.options.mesh,
                                             freeMemoryMB: try self.freeMemoryMB(), migrationsRunning: running)
        }
        t.on(ExecutorAPI.Migrate.self) { [unowned self] r in try self.migrate(r) }
        t.on(ExecutorAPI.MigrateViolin.self) { [unowned self] r in try self.migrateViolin(r) }
        t.on(ExecutorAPI.ConsoleOpen.self, from: Requester.self) { [unowned self] r, who in
            try self.consoles.open(r, parent: who.msgId, route: who.route)
        }
        t.on(ExecutorAPI.ConsoleInput.self, from: Requester.self) { [unowned self] r, who in try self.consoles.input(r, route: who.route) }
        t.on(ExecutorAPI.ConsoleClose.self, from: Requester.self) { [unowned self] r, who in try self.consoles.close(r, route: who.route) }
        t.on(ExecutorAPI.Job.self) { [unowned self] r in
            guard let j = try self.journalRead({ try self.journal.job(r.job) }) else { throw ProtocolError(.notFound, "no job \(r.job)") }
            return Self.report(j)
        }
        t.on(ExecutorAPI.Jobs.self) { [unowned self] r in
            let jobs = try self.journalRead { try self.journal.recent(limit: r.limit) }
            return ExecutorAPI.JobsReply(jobs: jobs.map(Self.report))
        }
        t.on(ExecutorAPI.Cancel.self) { [unowned self] r in
            guard let j = try self.journalRead({ try self.journal.job(r.job) }) else { throw ProtocolError(.notFound, "no job \(r.job)") }
            guard j.state != .postcopy else {
                throw ProtocolError(.conflict, "job \(r.job) is in post-copy: the guest runs at the destination, it cannot be cancelled")
            }
            guard let control = self.lock.withLock({ self.controls[r.job] }) else {
                throw ProtocolError(.conflict, "job \(r.job) is \(j.state.rawValue): nothing to cancel")
            }
            self.lock.withLock { control.cancelled = true }
            return ExecutorAPI.JobState(job: r.job, state: "cancelling")
        }
        return t
    }()

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try table.handle(request) }
    public func handle(_ request: Message, from requester: Requester) throws(ProtocolError) -> JSONValue? {
        try table.handle(request, from: requester)
    }
    public func attach(_ streams: any StreamSender) { consoles.attach(streams) }
    public func lane(of msgType: String) -> RequestTable.Lane { table.lane(of: msgType) }

    /// How this process reaches another host's libvirt: a `qemu+tls` URI with this host's own
    /// client certificate directory (`libvirt_pki`), when one is configured.
    func remoteLibvirt(_ uri: String) -> String {
        guard uri.hasPrefix("qemu+tls://"), !uri.contains("?"), !options.libvirtPKI.isEmpty else { return uri }
        return uri + "?pkipath=" + options.libvirtPKI
    }

    /// With keys, a migration's destination comes only from the control node's inventory.
    func requireDestinationSource() throws(ProtocolError) {
        if options.control == nil && options.keyPair != nil {
            throw ProtocolError(.forbidden, "this executor has keys but no control node (control) to take destinations from")
        }
    }

    func migrate(_ r: ExecutorAPI.Migrate) throws(ProtocolError) -> ExecutorAPI.JobState {
        try requireDestinationSource()
        let o = jobOptions(r.options)
        let hv = try libvirt()
        _ = try facts(r.vm, hv)      // unknown VM: not_found before the destination is asked
        let dest = try destination(r.options)
        var claimed = 0
        let job = try admit(r.vm, to: dest, r.options, memoryClaimed: &claimed)
        start(job, o, facts: try facts(r.vm, hv))
        return ExecutorAPI.JobState(job: job.id, state: JobState.queued.rawValue)
    }

    func migrateViolin(_ r: ExecutorAPI.MigrateViolin) throws(ProtocolError) -> ExecutorAPI.ViolinJobsReply {
        try requireDestinationSource()
        let keep = Set(r.keep)
        let o = jobOptions(r.options)
        let hv = try libvirt()
        let dest = try destination(r.options)
        let names = ((try? hv.domains()) ?? []).map(\.name).filter { name in
            !keep.contains(name) && (try? hv.xml(name)).flatMap { VMFacts(domainXML: $0) }?.vni == r.vni
        }
        guard !names.isEmpty else { throw ProtocolError(.notFound, "no movable VM of VIOLIN \(r.vni) on host \(options.hostID)") }
        var claimed = 0
        var admitted: [(Journal.Job, VMFacts)] = []
        for name in names {
            do {
                admitted.append((try admit(name, to: dest, r.options, memoryClaimed: &claimed), try facts(name, hv)))
            } catch {
                // All or nothing: the ones admitted so far are withdrawn.
                for (j, _) in admitted {
                    var dropped = j
                    dropped.state = .cancelled
                    dropped.error = "withdrawn: \(error.message)"
                    try? journal.save(dropped)
                    lock.withLock { busyVMs[j.vm] = nil; controls[j.id] = nil }
                }
                throw error
            }
        }
        let group = CutOverGroup(admitted.count)
        for (job, f) in admitted { start(job, o, facts: f, group: group) }
        return ExecutorAPI.ViolinJobsReply(jobs: admitted.map { .init(job: $0.0.id, vm: $0.0.vm) })
    }

    public var state: JSONValue {
        let (busy, n) = lock.withLock { (busyVMs, threads) }
        return ["host": .string(options.hostID), "libvirt_uri": .string(options.libvirtURI),
                "migrating": .object(busy.mapValues { .string($0) }), "migration_threads": .number(Double(n))]
    }
}

import Foundation
import Logging
import PolicyCore
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The adaptation manager as a service (PROTOCOL.md §8.4): the inventory and ledger in
/// SQLite, CPU samples from the bus, the policy core on a period and on request, and in
/// automatic mode the migrations sent to the executors.
public final class PolicyServer: ServiceLogic, @unchecked Sendable {
    public struct Options: Sendable {
        public var database: String
        public var subscribe: String?
        public var interval = 30.0
        public var policy = "paper"
        public var smoothing = DemandSmoother.defaultWeight
        public var executorTimeoutMs = 1000
        /// For executor requests that do work, creating or destroying a VM (they queue behind the
        /// executor's other long requests).
        public var workTimeoutMs = 120_000
        /// Seconds between two comparisons of the inventory with the executors; 0: never.
        public var reconcileInterval = 10.0
        /// Seconds a host may not answer before the VMs placed on it count as lost.
        public var hostLostAfter = 30.0
        /// For a CURVE bus: our key pair and the bus's public key.
        public var busSecurity: ClientSecurity?
        /// Our key pair, to reach executors that serve over CURVE (with the host's registered key).
        public var keyPair: CurveKeyPair?
        /// Days the ledger keeps a decision about a VIOLIN or VM that no longer exists.
        public var retentionDays = 90.0
        /// The accepted keys and their roles (with CURVE): `violin keys` edits its file.
        public var keyTable: KeyTable?
        /// Fine-grain levers (CPU weight, balloon, network cap) before any migration.
        public var levers = false
        /// Each host's link to the others, Mbit/s, for the network lever (0: unknown, no caps).
        public var linkMbps = 0.0
        /// Seconds a lever's effect is awaited: before another lever on the VM or a migration
        /// off its host, and before its effect is measured for the ledger.
        public var leverSettle = 60.0
        /// A VM whose smoothed CPU use (% of a vCPU) is above this is high-demand.
        public var highDemandPercent = highDemandThreshold
        public init(database: String) { self.database = database }
    }

    public let store: PolicyStore
    let options: Options
    private let policy: AdaptationPolicy
    let logger: Logger
    let lock = NSLockLite()
    private var smoother: DemandSmoother
    /// VMs above the high-demand threshold after the last sample: a change triggers a round at once.
    private var high = Set<String>()
    private var roundDue = false
    /// Samples ingested so far (`metrics`: `samples_ingested`; the benchmark reads it).
    public private(set) var ingested = 0
    public var counters: [String: Int] {
        lock.withLock { ["samples_ingested": ingested, "drift_detected": driftFound, "events_refused": refusedEvents,
                         "readings_refused": refusedReadings, "events_missed": missedEvents] }
    }
    /// When the ledger was last pruned (monotonic ms; at most once an hour).
    private var prunedAt: Int64 = -1
    /// Removes ledger rows older than `retentionDays` about what no longer exists.
    func pruneIfDue() {
        let now = monotonicMillis()
        let due = lock.withLock { () -> Bool in
            guard prunedAt < 0 || now - prunedAt > 3_600_000 else { return false }
            prunedAt = now
            return true
        }
        guard due else { return }
        let n = (try? store.prune(before: Date().addingTimeInterval(-options.retentionDays * 86_400))) ?? 0
        if n > 0 { logger.info("ledger pruned", metadata: ["rows": "\(n)", "days": "\(options.retentionDays)"]) }
    }
    /// Monitor readings about a VM the sender's host does not run (ignored).
    private var refusedReadings = 0
    /// Who talks to whom (from `mesh.traffic`).
    private var traffic = TrafficMatrix()
    /// VMs that will be busy (`demand_hint_request`): their VIOLIN and until when.
    private var hints: [VMID: (violin: String, until: Double)] = [:]
    /// Where each VM runs, as the inventory says, read again at most once a second (samples
    /// come many times a second).
    private var placementCache: (at: Int64, map: [String: String]) = (-1, [:])
    func currentPlacement() -> [String: String] {
        let now = monotonicMillis()
        if let fresh = lock.withLock({ placementCache.at >= 0 && now - placementCache.at < 1000 ? placementCache.map : nil }) { return fresh }
        let map = (try? store.inventory().placement) ?? [:]
        lock.withLock { placementCache = (now, map) }
        return map
    }
    /// Executor events about a VM the sender's host does not hold (ignored).
    private var refusedEvents = 0
    /// Events the bus never brought (jumps in a publisher's seq); each makes a reconcile run at once.
    private var missedEvents = 0
    /// The last reconciliation's findings (each is published once), and how many so far.
    private var lastDrift = Set<Reconcile.Drift>()
    /// The last look at the hosts heard none of them (the policy was cut off).
    private var heardNone = false
    /// Hosts that did not answer the last reconciliation, since when (seconds since 1970).
    var silentSince: [HostID: Double] = [:]
    private var driftFound = 0
    private let reconciler = WorkerThread()
    /// VIOLINs this process is making now: their journaled creation is not left over.
    var creating = Set<String>()
    let creatingLock = NSLockLite()
    /// VIOLINs a destroy or a restart of lost VMs works on now: one of them at a time per
    /// VIOLIN (`exclusively`), so a restart never makes a VM of a VIOLIN being destroyed.
    private var turnsTaken = Set<String>()
    private let turns = NSCondition()
    /// How many callers wait for their turn now (tests watch it).
    public var waitingForTurn: Int { turns.lock(); defer { turns.unlock() }; return waiting }
    private var waiting = 0
    let context = ZMQContext()
    /// What the levers read and have set (`Levers.swift`).
    var leverState = LeverState()
    /// Lever decisions whose effect is still to be measured: id, the decision, when.
    var awaitingEffect: [(id: Int64, decision: Decision, at: Double)] = []
    private let worker = WorkerThread()
    public var publish: (String, JSONValue) -> Void = { _, _ in }
    /// Phases and drift as said on the bus (`PolicyFigures.swift`).
    let figures = PolicyFigures()

    /// The live web view and where it is served (`web_listen`), when it is.
    private(set) var web: WebView?
    private var webEndpoint: HTTPEndpoint?

    /// Publishes a typed event, counting what the exposition shows of it and showing it on the web view.
    func emit(_ event: some EventBody) {
        let body = event.json
        figures.saw(type(of: event).topic, body)
        web?.feed(type(of: event).topic, body)
        publish(type(of: event).event, body)
    }

    /// Serves the web view at `address` (loopback, or with `token`); returns the port bound.
    @discardableResult
    public func serveWeb(_ address: HTTPAddress, token: String?) throws -> UInt16 {
        let view = WebView(policy: self)
        let endpoint = try HTTPEndpoint(address: address, token: token, routes: view.routes)
        web = view
        let port = try endpoint.start()
        webEndpoint = endpoint
        return port
    }

    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        store = try PolicyStore(path: options.database)
        silentSince = (try? store.silence()) ?? [:]
        smoother = DemandSmoother(weight: options.smoothing)
        let inner: any AdaptationPolicy
        switch options.policy {
        case "paper":
            var paper = PaperPolicy()
            paper.highThreshold = options.highDemandPercent
            inner = paper
        case "cost-benefit":
            var costBenefit = CostBenefitPolicy()
            costBenefit.highThreshold = options.highDemandPercent
            inner = costBenefit
        default: throw ProtocolError(.invalidBody, "unknown policy \(options.policy) (paper, cost-benefit)")
        }
        var levers = LeversFirstPolicy(inner: inner)
        levers.settleSeconds = options.leverSettle
        levers.highThreshold = options.highDemandPercent
        policy = options.levers ? levers : inner
    }

    var mode: String { (try? store.setting("mode")) ?? "recommend" }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: - The worker: samples and periodic evaluation

    public func start() throws {
        let sub: EventSubscriber? = try options.subscribe.map {
            // Every event of the monitors and executors, not only the two it reads: a publisher's
            // seq counts all its events, so only a subscriber of all of them sees true gaps.
            try EventSubscriber(context: context, endpoint: $0, topics: ["monitor.", "executor.", MeshAPI.Traffic.topic], security: options.busSecurity)
        }
        worker.start(name: "policy-worker") { [self] in
            self.work(sub)
            sub?.close()
        }
        if options.reconcileInterval > 0 {
            reconciler.start(name: "policy-reconcile") { [self] in self.reconcileLoop() }
        } else {
            Thread { [self] in self.cleanUp() }.start()
        }
    }

    public func stop() {
        webEndpoint?.stop()
        reconciler.stop()
        worker.stop()
        context.shutdown()
        context.terminate()
    }

    private func work(_ sub: EventSubscriber?) {
        var next = monotonicMillis() + Int64(options.interval * 1000)
        var items = [PollItem(fd: worker.waker.readFD)]
        if let sub { items.append(PollItem(socket: sub.socket)) }
        while !worker.isStopping {
            _ = try? poll(&items, timeoutMs: Int(max(0, next - monotonicMillis())))
            if items[0].readable { worker.waker.drain() }
            if let sub, items.count > 1, items[1].readable {
                while case .event(let m, let missed)? = try? sub.next(timeoutMs: 0) {
                    if missed > 0 { catchUp(missed, sender: m.header.sender) }
                    web?.feed(m.header.msgType, m.body)
                    switch m.header.msgType {
                    case ExecutorAPI.MigrationCompleted.topic: migrated(m.body, sender: m.header.sender)
                    case MonitorAPI.Sampled.topic: ingest(m.body, sender: m.header.sender)
                    case MeshAPI.Traffic.topic: ingestTraffic(m.body, sender: m.header.sender)
                    default: break
                    }
                }
            }
            let due = lock.withLock { defer { roundDue = false }; return roundDue }
            if due || monotonicMillis() >= next {
                next = monotonicMillis() + Int64(options.interval * 1000)
                _ = try? evaluate()
            }
        }
    }

    /// Events of `sender` went missing (the bus restarted, a queue overflowed): a missed
    /// `executor.migration_completed` would leave the inventory wrong until the next reconcile,
    /// so the reconcile runs now. Missed samples need nothing: the next ones come anyway.
    func catchUp(_ missed: UInt64, sender: String) {
        lock.withLock { missedEvents += Int(clamping: missed) }
        logger.notice("events missed", metadata: ["sender": "\(sender)", "missed": "\(missed)"])
        if sender.hasPrefix("executor") { reconciler.waker.wake() }
    }

    /// One `monitor.sampled` body: the smoothed CPU use of every VM it names. A VM whose smoothed
    /// use crosses the high-demand threshold (either way) makes the next round start at once.
    /// Only the readings of VMs the sender's host runs count (`sender` `monitor@<host>`, which
    /// the bus checked against its key): a host's monitor speaks for its own VMs only.
    public func ingest(_ body: JSONValue, sender: String) {
        guard case .array = body["vms"] else { return }
        let host = sender.hasPrefix("monitor@") ? String(sender.dropFirst("monitor@".count)) : ""
        let placement = currentPlacement()
        let all = MonitorAPI.Sampled.cpuReadings(body)
        let readings = all.filter { placement[$0.vm] == host }
        if readings.count < all.count { lock.withLock { refusedReadings += all.count - readings.count } }
        if options.levers { ingestLevers(body, host: host, own: Set(placement.filter { $0.value == host }.keys)) }
        lock.withLock {
            ingested += 1
            for (name, cpu) in readings {
                smoother.add(name, cpu: cpu)
                let isHigh = (smoother.averages[name] ?? 0) > options.highDemandPercent
                if isHigh != high.contains(name) {
                    if isHigh { high.insert(name) } else { high.remove(name) }
                    roundDue = true
                }
            }
        }
    }

    /// One `mesh.traffic` body: the pair counters of the sender's host's switch (`mesh@<host>`,
    /// which the bus checked against its key), read as VMs through the inventory's MACs. Pairs
    /// whose source VM is not on that host are refused (counted with the refused readings).
    public func ingestTraffic(_ body: JSONValue, sender: String, atS: Double? = nil) {
        guard sender.hasPrefix("mesh@"), let t = MeshAPI.Traffic.read(body), let inv = try? store.inventory() else { return }
        let host = String(sender.dropFirst("mesh@".count))
        let byMAC = Dictionary(inv.macs.compactMap { $0.value.isEmpty ? nil : ($0.value.lowercased(), $0.key) }, uniquingKeysWith: { a, _ in a })
        let result = lock.withLock {
            traffic.ingest(host: host, pairs: t.pairs.map { (src: $0.src, dst: $0.dst, bytes: $0.bytes) }, atS: atS ?? Self.now(),
                           vm: { byMAC[$0] }, placement: { inv.placement[$0] })
        }
        if result.refused > 0 { lock.withLock { refusedReadings += result.refused } }
    }

    /// VMs of a VIOLIN that will be busy for `seconds`: the next round counts them so at once.
    func demandHint(_ r: PolicyAPI.DemandHint, _ caller: Caller) throws(ProtocolError) -> PolicyAPI.DemandHintReply {
        let inv: PolicyStore.Inventory
        do { inv = try store.inventory() } catch { throw ProtocolError(.internalError, "\(error)") }
        guard let violin = inv.violins.first(where: { $0.id == r.violin }) else { throw ProtocolError(.notFound, "no VIOLIN \(r.violin)") }
        if !caller.isOperator, !caller.adminDomains.isEmpty, !caller.adminDomains.contains(violin.homeDomain) {
            throw forbidden("\(caller.audit) administers \(caller.adminDomains.joined(separator: ",")), not \(violin.homeDomain) (VIOLIN \(r.violin))")
        }
        let own = Set(inv.vms.filter { $0.violin == r.violin }.map(\.id))
        if let stranger = r.vms.first(where: { !own.contains($0) }) { throw ProtocolError(.notFound, "\(stranger) is no VM of VIOLIN \(r.violin)") }
        let until = Self.now() + r.seconds
        lock.withLock {
            for vm in r.vms { hints[vm] = (r.violin, until) }
            roundDue = true
        }
        audit("demand_hint", ["violin": .string(r.violin), "vms": .array(r.vms.map { .string($0) }), "seconds": .number(r.seconds)], caller)
        worker.waker.wake()
        return PolicyAPI.DemandHintReply(violin: r.violin, vms: r.vms, until: (until * 1000).rounded() / 1000)
    }

    func trafficReply(_ violin: String?) throws(ProtocolError) -> PolicyAPI.TrafficReply {
        let inv: PolicyStore.Inventory
        do { inv = try store.inventory() } catch { throw ProtocolError(.internalError, "\(error)") }
        if let violin, !inv.violins.contains(where: { $0.id == violin }) { throw ProtocolError(.notFound, "no VIOLIN \(violin)") }
        let owner = Dictionary(inv.vms.map { ($0.id, $0.violin) }, uniquingKeysWith: { a, _ in a })
        let flows = lock.withLock { traffic.flows(nowS: Self.now()) }
        return PolicyAPI.TrafficReply(flows: flows.compactMap { f in
            guard let v = owner[f.from], owner[f.to] == v, violin == nil || violin == v else { return nil }
            return .init(violin: v, from: f.from, to: f.to, bytesPerS: (f.bytesPerS * 10).rounded() / 10)
        })
    }

    /// An executor moved a VM: the inventory follows (the VM's new host, as the executor names
    /// it) — when the executor that says so is the one of the host the VM was on (`sender`
    /// `executor@<host>`, which the bus checked against its key), and the destination is a host.
    public func migrated(_ body: JSONValue, sender: String) {
        guard let (vm, to) = ExecutorAPI.MigrationCompleted.moved(body) else { return }
        let from = sender.hasPrefix("executor@") ? String(sender.dropFirst("executor@".count)) : ""
        let placed = (try? store.inventory())?.placement[vm]
        guard let placed, placed == from || placed == to else {
            lock.withLock { refusedEvents += 1 }
            logger.warning("a migration_completed not from the VM's host: ignored",
                           metadata: ["vm": "\(vm)", "to": "\(to)", "sender": "\(sender)", "placed": "\(placed ?? "nowhere")"])
            return
        }
        do { try store.place(vm: vm, on: to) } catch {
            logger.warning("migration of an unknown VM or to an unknown host", metadata: ["vm": "\(vm)", "to": "\(to)", "error": "\(error)"])
        }
    }

    // MARK: - Decisions

    func clusterState() throws -> (ClusterState, PolicyStore.Inventory) {
        let inv = try store.inventory()
        let cpu = lock.withLock { smoother.averages }
        // A draining host takes no VM: to the policy it has no memory to offer. A host whose key
        // was revoked neither takes nor gives one: it and its VMs are out of the round.
        let revoked = revokedHosts(inv)
        let hosts = inv.hosts.filter { !revoked.contains($0.id) }
            .map { inv.draining.contains($0.id) ? PolicyCore.Host(id: $0.id, domain: $0.domain, cores: $0.cores, memoryMB: 0) : $0 }
        let placement = inv.placement.filter { !revoked.contains($0.value) }
        var state = ClusterState(hosts: hosts, vms: inv.vms.filter { placement[$0.id] != nil }, violins: inv.violins, placement: placement,
                                 cpu: cpu, lastMigrated: inv.lastDecided, now: Self.now())
        if options.levers { state.levers = leverView(placement: placement, hosts: hosts.map(\.id)) }
        // What is coming: a hinted VM demands its whole vCPU until its hint ends, and its VIOLIN
        // counts as having jobs waiting.
        let now = Self.now()
        let coming = lock.withLock { hints = hints.filter { $0.value.until > now }; return hints }
        state.expect(coming.mapValues(\.violin))
        // Who talks to whom, as the switches measured it (the cost-benefit policy weighs it).
        let flows = lock.withLock { traffic.flows(nowS: Self.now()) }
        state.setTraffic(flows.map { (from: $0.from, to: $0.to, bytesPerS: $0.bytesPerS) })
        return (state, inv)
    }

    /// Runs the policy once: every decision goes to the ledger (and, in automatic mode, to the
    /// source host's executor), and is published.
    @discardableResult
    public func evaluate() throws -> [JSONValue] {
        // One round at a time (the timer, a threshold crossing and `evaluate_request` may ask
        // at once): a round must see the cooldowns the previous one recorded.
        try rounds.withLock { try evaluateOnce() }
    }

    private let rounds = NSLockLite()

    private func evaluateOnce() throws -> [JSONValue] {
        let (state, inv) = try self.clusterState()
        let mode = self.mode
        var out: [JSONValue] = []
        measureEffects(state)
        var sentLevers: [Decision] = []
        for d in policy.decide(state) {
            let body = describe(d)
            let inputs = JSONText.string(["cpu": .object(d.moves.reduce(into: [String: JSONValue]()) { acc, m in
                acc[m.0] = .number(((state.cpu[m.0] ?? 0) * 10).rounded() / 10) })] as JSONValue)
            let id = try store.record(kind: kind(d), body: JSONText.string(body), reason: d.reason, inputs: inputs, mode: mode,
                                      outcome: mode == "automatic" ? "sending" : "recommended", vms: d.moves.map(\.0), at: state.now)
            var outcome = mode == "automatic" ? "" : "recommended"
            if mode == "automatic" {
                outcome = d.leverVM == nil ? execute(d, id: id, inv: inv, state: state) : executeLever(d, inv: inv, state: state)
                try store.setOutcome(id, outcome)
                if d.leverVM != nil && outcome == "sent" {
                    sentLevers.append(d)
                    lock.withLock { awaitingEffect.append((id, d, state.now)) }
                }
            }
            let decided = PolicyAPI.Decided(id: Int(id), kind: kind(d), decision: body, reason: d.reason, mode: mode, outcome: outcome)
            emit(decided)
            out.append(decided.json)
        }
        // Hosts a relieving lever acted on: their migrations wait for its effect.
        if let levers = policy as? LeversFirstPolicy {
            let held = levers.holdingHosts(sentLevers, state)
            lock.withLock { for h in held { leverState.heldAt[h] = state.now } }
        }
        return out
    }

    /// Sends each migration of `d` to its source host's executor; never blocks past the timeout.
    private func execute(_ d: Decision, id: Int64, inv: PolicyStore.Inventory, state: ClusterState) -> String {
        var failures: [String] = []
        for (vm, to) in d.moves {
            guard let from = state.placement[vm], !(inv.endpoints[from]?.executor ?? "").isEmpty else {
                failures.append("\(vm): no executor known for its host")
                continue
            }
            let client = executorClient(from, inv)
            defer { client.close() }
            do {
                _ = try client.call(Self.migration(vm, to: to, inv, reason: d.reason, decisionID: String(id)))
            } catch {
                failures.append("\(vm): \(error)")
            }
        }
        return failures.isEmpty ? "sent" : "failed: " + failures.joined(separator: "; ")
    }

    /// The command that moves `vm` to host `to`, sent to the executor of the VM's host.
    static func migration(_ vm: String, to: String, _ inv: PolicyStore.Inventory, reason: String, decisionID: String = "") -> ExecutorAPI.Migrate {
        var o = ExecutorAPI.MigrationOptions(toExecutor: inv.endpoints[to]?.executor ?? "")
        o.toKey = inv.keys[to] ?? ""
        o.to = to
        o.reason = reason
        o.decisionID = decisionID
        return ExecutorAPI.Migrate(vm: vm, options: o)
    }

    /// A client for a host's executor: over CURVE when both we and the host have keys.
    /// Runs `body` while no other destroy or restart works on `violin`.
    func exclusively<T>(_ violin: String, _ body: () throws(ProtocolError) -> T) throws(ProtocolError) -> T {
        turns.lock()
        while turnsTaken.contains(violin) { waiting += 1; turns.wait(); waiting -= 1 }
        turnsTaken.insert(violin)
        turns.unlock()
        defer {
            turns.lock()
            turnsTaken.remove(violin)
            turns.broadcast()
            turns.unlock()
        }
        return try body()
    }

    /// A client of `host`'s executor: quick requests time out after `executorTimeoutMs`, or
    /// `workTimeoutMs` with `work`.
    func executorClient(_ host: String, _ inv: PolicyStore.Inventory, work: Bool = false) -> ServiceClient {
        hostClient(inv.endpoints[host]?.executor ?? "", key: inv.keys[host] ?? "", timeoutMs: work ? options.workTimeoutMs : options.executorTimeoutMs)
    }

    /// A client of one of a host's services (executor, monitor, mesh), over CURVE with the
    /// host's key when it has one.
    func hostClient(_ endpoint: String, key: String, timeoutMs: Int) -> ServiceClient {
        let security = options.keyPair.flatMap { key.isEmpty ? nil : ClientSecurity(keyPair: $0, serverPublicKey: key) }
        return ServiceClient(context: context, endpoint: endpoint, security: security, sender: "policy", timeoutMs: timeoutMs)
    }

    func kind(_ d: Decision) -> String {
        switch d {
        case .migrateVM: "migrate_vm"
        case .migrateViolin: "migrate_violin"
        case .setCPUWeight: "set_cpu_weight"
        case .setBalloon: "set_balloon"
        case .setPortRate: "set_port_rate"
        }
    }

    func describe(_ d: Decision) -> JSONValue {
        switch d {
        case .migrateVM(let vm, let from, let to, let s, _):
            return ["vm": .string(vm), "from": .string(from), "to": .string(to), "estimated_s": .number((s * 10).rounded() / 10)]
        case .migrateViolin(let v, let domain, let placement, let s, _):
            return ["violin": .string(v), "to_domain": .string(domain), "estimated_s": .number((s * 10).rounded() / 10),
                    "placement": .object(placement.mapValues { .string($0) })]
        case .setCPUWeight(let vm, let w, _): return ["vm": .string(vm), "weight": .number(Double(w))]
        case .setBalloon(let vm, let mb, _): return ["vm": .string(vm), "target_mb": .number(Double(mb))]
        case .setPortRate(let vm, let mbit, _): return ["vm": .string(vm), "mbit_s": .number(mbit)]
        }
    }

    // MARK: - Requests

    public var state: JSONValue { ["mode": .string(mode), "policy": .string(policy.name)] }

    func storeCall<T>(_ body: () throws -> T) throws(ProtocolError) -> T {
        do { return try body() } catch let f as PolicyStore.Failure {
            switch f.kind {
            case .notFound: throw ProtocolError(.notFound, f.description)
            case .conflict: throw ProtocolError(.conflict, f.description)
            case .invalid: throw ProtocolError(.invalidBody, f.description)
            }
        } catch let e as ProtocolError { throw e } catch {
            throw ProtocolError(.internalError, "database: \(error)")
        }
    }

    /// The requests of PROTOCOL.md §8.4, one handler per type.
    private lazy var table: RequestTable = {
        var t = RequestTable()
        t.on(PolicyAPI.RegisterDomain.self, caller: { [unowned self] r, who in try self.registerDomain(r, who) })
        t.on(PolicyAPI.RegisterHost.self, caller: { [unowned self] r, who in try self.registerHost(r, who) })
        t.on(PolicyAPI.DrainHost.self, caller: { [unowned self] r, who in
            try self.requireDomain(of: r.id, who)
            self.audit("drain_host", ["id": .string(r.id)], who)
            return try self.drain(r.id)
        })
        t.on(PolicyAPI.RemoveHost.self, caller: { [unowned self] r, who in
            try self.requireDomain(of: r.id, who)
            try self.storeCall { try self.store.removeHost(r.id) }
            self.audit("remove_host", ["id": .string(r.id)], who)
            return PolicyAPI.IDReply(id: r.id)
        })
        t.on(PolicyAPI.HostRecord.self) { [unowned self] r in try self.hostRecord(r.id) }
        t.on(PolicyAPI.Keys.self) { [unowned self] _ in try self.keys() }
        t.on(PolicyAPI.HostKeys.self) { [unowned self] _ in try self.hostKeys() }
        t.on(PolicyAPI.AcceptKey.self, caller: { [unowned self] r, who in try self.acceptKey(r, who) })
        t.on(PolicyAPI.RejectKey.self, caller: { [unowned self] r, who in try self.rejectKey(r, who) })
        t.on(PolicyAPI.RevokeKey.self, caller: { [unowned self] r, who in try self.revokeKey(r, who) })
        t.on(PolicyAPI.CreateViolin.self) { [unowned self] r in
            let vms = r.vms.map { PolicyStore.NewVM(id: $0.id, memoryMB: $0.memoryMB, host: $0.host) }
            try self.storeCall { try self.store.createViolin(id: r.id, homeDomain: r.homeDomain, head: r.head, vms: vms) }
            return PolicyAPI.IDReply(id: r.id)
        }
        t.on(PolicyAPI.DestroyViolin.self) { [unowned self] r in
            try self.storeCall { try self.store.destroyViolin(r.id) }
            return PolicyAPI.IDReply(id: r.id)
        }
        t.on(PolicyAPI.SetMode.self, caller: { [unowned self] r, who in
            try self.storeCall { try self.store.setSetting("mode", r.mode.rawValue) }
            self.audit("set_mode", ["mode": .string(r.mode.rawValue)], who)
            self.emit(PolicyAPI.ModeChanged(mode: r.mode))
            return PolicyAPI.ModeReply(mode: r.mode)
        })
        t.on(PolicyAPI.Evaluate.self) { [unowned self] _ in
            let decisions = try self.storeCall { try self.evaluate() }
            return PolicyAPI.DecisionsReply(decisions: decisions)
        }
        t.on(PolicyAPI.Explain.self) { [unowned self] _ in try self.explain() }
        t.on(PolicyAPI.Traffic.self) { [unowned self] r in try self.trafficReply(r.violin) }
        t.on(PolicyAPI.DemandHint.self, caller: { [unowned self] r, who in try self.demandHint(r, who) })
        t.on(PolicyAPI.Decisions.self) { [unowned self] r in try self.decisions(limit: r.limit, audit: r.audit) }
        t.on(PolicyAPI.Inventory.self) { [unowned self] _ in try self.inventoryReply() }
        t.on(PolicyAPI.CreateEnvironment.self, caller: { [unowned self] r, who in
            if !r.dryRun { self.audit("create_environment", ["name": r.spec["name"] ?? .null], who) }
            return try self.createEnvironment(r)
        })
        t.on(PolicyAPI.DestroyEnvironment.self, caller: { [unowned self] r, who in
            self.audit("destroy_environment", ["name": .string(r.name)], who)
            return try self.destroyEnvironment(r.name)
        })
        t.on(PolicyAPI.ApplyEnvironment.self, caller: { [unowned self] r, who in
            self.audit("apply_environment", ["name": r.spec["name"] ?? .null], who)
            return try self.applyEnvironment(r)
        })
        return t
    }()

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try table.handle(request) }
    public func handle(_ request: Message, from requester: Requester) throws(ProtocolError) -> JSONValue? {
        try table.handle(request, from: requester)
    }
    public func lane(of msgType: String) -> RequestTable.Lane { table.lane(of: msgType) }

    /// What each of several calls made at once ended with.
    final class Outcomes: @unchecked Sendable {
        private let lock = NSLockLite()
        private var list: [String]
        init(_ n: Int) { list = Array(repeating: "", count: n) }
        func set(_ i: Int, _ outcome: String) { lock.withLock { list[i] = outcome } }
        var values: [String] { lock.withLock { list } }
    }

    func drain(_ id: String) throws(ProtocolError) -> PolicyAPI.DrainReply {
        try storeCall { try store.setDraining(id) }
        let (state, inv) = try storeCall { try self.clusterState() }
        let plan = Drain.plan(state, host: id, draining: inv.draining)
        // Sent all at once, each with the executor timeout: a dead executor costs one timeout,
        // not one per VM.
        let outcomes = Outcomes(plan.moves.count)
        DispatchQueue.concurrentPerform(iterations: plan.moves.count) { i in
            let (vm, to) = plan.moves[i]
            guard !(inv.endpoints[id]?.executor ?? "").isEmpty else {
                return outcomes.set(i, "failed: no executor known for host \(id)")
            }
            let client = executorClient(id, inv)
            defer { client.close() }
            do {
                _ = try client.call(Self.migration(vm, to: to, inv, reason: "host \(id) is draining"))
                outcomes.set(i, "sent")
            } catch { outcomes.set(i, "failed: \(error)") }
        }
        let moves = plan.moves.enumerated().map { i, m in PolicyAPI.Move(vm: m.0, to: m.1, outcome: outcomes.values[i]) }
        let event = PolicyAPI.HostDraining(id: id, moves: moves, stuck: plan.stuck)
        emit(event)
        return PolicyAPI.DrainReply(id: id, moves: moves, stuck: plan.stuck)
    }

    func explain() throws(ProtocolError) -> PolicyAPI.ExplainReply {
        let (state, inv) = try storeCall { try self.clusterState() }
        let scores = Scores(state, highThreshold: options.highDemandPercent)
        return PolicyAPI.ExplainReply(
            hosts: inv.hosts.map { h in
                .init(id: h.id, domain: h.domain, cores: h.cores, score: (scores.score(h.id) * 1000).rounded() / 1000,
                      highDemandVMs: scores.high[h.id] ?? 0, load: ((scores.load[h.id] ?? 0) * 100).rounded() / 100)
            },
            deviation: (scores.deviation * 1000).rounded() / 1000)
    }

    func decisions(limit: Int, audit: Bool = false) throws(ProtocolError) -> PolicyAPI.DecisionsReply {
        let rows = try storeCall { try store.decisions(limit: limit, audit: audit) }
        return PolicyAPI.DecisionsReply(decisions: rows.map { r in
            ["id": .number(Double(r["id"] as Int64)), "time": .string(r["time"]), "kind": .string(r["kind"]),
             "decision": (try? JSONText.parse(Array((r["body"] as String).utf8))) ?? .null,
             "reason": .string(r["reason"]), "mode": .string(r["mode"]), "outcome": .string(r["outcome"]),
             "asked_by": .string(r["asked_by"] ?? ""), "effect": .string(r["effect"] ?? "")]
        })
    }

    func inventoryReply() throws(ProtocolError) -> PolicyAPI.InventoryReply {
        let inv = try storeCall { try store.inventory() }
        // What the specs add: when each VIOLIN was made, each VM's address and vCPUs.
        var made: [String: String] = [:], fromSpec: [String: ViolinSpec.VM] = [:]
        for v in inv.violins {
            guard let saved = savedSpec(v.id) else { continue }
            made[v.id] = saved.createdAt
            for vm in saved.spec.vms { fromSpec[vm.name] = vm }
        }
        return PolicyAPI.InventoryReply(
            domains: inv.domains,
            hosts: inv.hosts.map { .init(id: $0.id, domain: $0.domain, cores: $0.cores, memoryMB: $0.memoryMB,
                                         executor: inv.endpoints[$0.id]?.executor ?? "", monitor: inv.endpoints[$0.id]?.monitor ?? "",
                                         key: inv.keys[$0.id] ?? "", draining: inv.draining.contains($0.id)) },
            violins: inv.violins.map { .init(id: $0.id, homeDomain: $0.homeDomain, head: $0.head, createdAt: made[$0.id]) },
            vms: inv.vms.map { .init(id: $0.id, violin: $0.violin, memoryMB: $0.memoryMB, host: inv.placement[$0.id] ?? "",
                                     ip: fromSpec[$0.id]?.ip, vcpus: fromSpec[$0.id]?.vcpus) },
            mode: mode, policy: policy.name)
    }

    // MARK: - Reconciliation with the hosts

    private func reconcileLoop() {
        var items = [PollItem(fd: reconciler.waker.readFD)]
        while !reconciler.isStopping {
            reconcile()
            _ = try? poll(&items, timeoutMs: Int(options.reconcileInterval * 1000))
            if items[0].readable { reconciler.waker.drain() }
        }
    }

    /// Per host, where its newest completed migration of each VM took it (its executor's
    /// journal); a host that does not answer gives nothing.
    func destinations(of hosts: Set<HostID>, _ inv: PolicyStore.Inventory) -> [HostID: [VMID: HostID]] {
        var out: [HostID: [VMID: HostID]] = [:]
        for host in hosts.sorted() where !(inv.endpoints[host]?.executor ?? "").isEmpty {
            let client = executorClient(host, inv)
            defer { client.close() }
            guard let jobs = try? client.call(ExecutorAPI.Jobs(limit: 200), retries: 0) else { continue }
            var went: [VMID: HostID] = [:]
            // Newest first: the first completed migration of a VM from here is its latest.
            for j in jobs.jobs where j.state == "completed" && j.from == host && went[j.vm] == nil { went[j.vm] = j.to }
            out[host] = went
        }
        return out
    }

    /// One comparison of the inventory with what every executor runs: a VM that moved without
    /// the policy hearing of it is moved in the inventory; the rest is reported. Each drift is
    /// published once, until it changes.
    public func reconcile() {
        cleanUp()
        guard let inv = try? store.inventory() else { return }
        var reports: [HostID: Set<String>?] = [:]
        for host in inv.hosts.map(\.id) {
            guard !(inv.endpoints[host]?.executor ?? "").isEmpty else { continue }
            let client = executorClient(host, inv)
            defer { client.close() }
            // updateValue: assigning nil through the subscript would drop the host, not record its silence.
            reports.updateValue((try? client.call(ExecutorAPI.VMs(), retries: 0)).map { Set($0.vms.map(\.name)) }, forKey: host)
        }
        let now = Date().timeIntervalSince1970
        let answered = Set(reports.filter { $0.value != nil }.keys)
        let (before, after) = lock.withLock { () -> ([HostID: Double], [HostID: Double]) in
            let before = silentSince
            silentSince = Lost.silence(before, asked: Set(reports.keys), answered: answered, previousHeardNone: heardNone, now: now)
            heardNone = !reports.isEmpty && answered.isEmpty
            return (before, silentSince)
        }
        // Kept in the store: a policy restarted (killed, its node down) goes on counting a host's
        // silence from when it began, instead of from its own start.
        if after != before { try? store.setSilence(after) }
        // A host silent for host_lost_after is lost: it holds nothing a VM could be found on, so
        // it does not keep a VM that no other host runs from counting as missing.
        let lostHosts = lock.withLock { Set(silentSince.filter { now - $0.value >= options.hostLostAfter }.keys) }
        let asked = reports.filter { !lostHosts.contains($0.key) }
        var drift = Reconcile.drift(placement: inv.placement, reports: asked)
        // A VM its host answers without, that no other answering host runs: that host's journal
        // may say it migrated it to one that has gone silent since.
        let unaccounted = Reconcile.unaccounted(placement: inv.placement, reports: asked)
        let departed = Reconcile.departed(unaccounted, reports: asked, destinations: destinations(of: Set(unaccounted.values), inv))
        let went = Set(departed.compactMap { if case .departed(let vm, _, _) = $0 { vm } else { nil } })
        drift = drift.filter { if case .missing(let vm, _) = $0 { !went.contains(vm) } else { true } } + departed
        // Missing in two looks in a row: hosts are asked one after another, so a VM migrating
        // between two of them can be missed by both answers of one look.
        let previous = lock.withLock { lastDrift }
        restartLost(inv, missing: Reconcile.missingTwice(drift, previous))
        let fresh = lock.withLock { () -> [Reconcile.Drift] in
            defer { lastDrift = Set(drift) }
            return drift.filter { !lastDrift.contains($0) }
        }
        fresh.forEach(apply)
        lock.withLock { driftFound += fresh.count }
    }

    /// A drift seen for the first time: a VM found elsewhere is placed there; each is published.
    private func apply(_ d: Reconcile.Drift) {
        let event: PolicyAPI.DriftDetected
        switch d {
        case .moved(let vm, let from, let to), .departed(let vm, let from, let to):
            do { try store.place(vm: vm, on: to) } catch { logger.warning("reconcile: cannot move \(vm) to \(to): \(error)"); return }
            let why = if case .departed = d {
                "\(from) answers without it and its journal says it migrated it to \(to), which does not answer"
            } else {
                "\(to) runs it, not \(from)"
            }
            event = PolicyAPI.DriftDetected(kind: d.kind, vm: vm, host: to, inventoryHost: from, why: why + ": the inventory now places it on \(to)")
        case .missing(let vm, let host):
            event = PolicyAPI.DriftDetected(kind: d.kind, vm: vm, host: "", inventoryHost: host, why: "every host answered and none runs it")
        case .stray(let vm, let host):
            event = PolicyAPI.DriftDetected(kind: d.kind, vm: vm, host: host, inventoryHost: "", why: "\(host) runs a VM no VIOLIN owns")
        }
        emit(event)
    }
}

import Foundation
import Logging
import MeshCore
import Primitives
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The switch control plane of one host (PROTOCOL.md §8.2): the membership of each VIOLIN's
/// switch mesh, the supervision of each VIOLIN's `violin-switch`, and ports on request.
///
/// Threads: requests are answered on the service's loop thread (joins contact the seed and the
/// members from there); a heartbeat thread checks the members, the switches' processes and the
/// peer sets. Each thread has its own sockets; the shared state is behind one lock.
public final class MeshServer: ServiceLogic, @unchecked Sendable {
    public struct Options: Sendable {
        public var me: String                 // our mesh endpoint, as other hosts reach it
        public var hostAddress: String        // our underlay address (IPv4 or IPv6), for the tunnels
        public var basePort: UInt16 = 4789
        public var switchBinary: String
        public var runDirectory: String
        public var interval = 1.0
        public var timeout = 3.0
        /// Seconds between `mesh.traffic` events (0: none).
        public var trafficInterval = 10.0
        /// Forwarding threads of each switch (`violin-switch --queues`).
        public var switchQueues = 1
        /// VIOLINs present here at most: each is a switch process.
        public var maxViolins = 256
        /// Members one VIOLIN may have here (other hosts); one more is refused.
        public var maxMembers = 256
        /// Seconds of silence before a member is forgotten (nil: 20 member timeouts, at least 60).
        public var forgetAfter: Double?
        /// Our CURVE key pair: with it, we reach other meshes over CURVE (their keys travel in
        /// the member lists; a seed's is given with the join).
        public var keyPair: CurveKeyPair?
        public init(me: String, hostAddress: String, switchBinary: String, runDirectory: String) {
            self.me = me; self.hostAddress = hostAddress; self.switchBinary = switchBinary; self.runDirectory = runDirectory
        }
    }

    /// What the mesh keeps about one VIOLIN present here; persisted, so a restarted mesh adopts.
    struct Presence: Codable {
        var tunnel: String
        var ports: [String: JSONValue]       // name -> the add_port body, to re-create after a switch restart
        var members: [Member]
        var pid: Int32 = 0
        /// Port name -> the set_port_rate body in force (absent in files of earlier versions).
        var rates: [String: JSONValue]?
    }

    public let options: Options
    private let logger: Logger
    private let lock = NSLockLite()
    private var membership: Membership
    private var presence: [UInt32: Presence] = [:]
    /// One client per member for heartbeats, kept from round to round: a fresh CURVE handshake
    /// for every beat costs round trips a slow link between domains cannot spare. Taken out
    /// while a beat uses it (one thread each).
    private var beatClients: [String: (key: String, client: ServiceClient)] = [:]
    private var children: [UInt32: ChildProcess] = [:]
    /// When each VIOLIN's switch started, and when a dead one is due to start again.
    private var schedule = RestartSchedule<UInt32>()
    /// Restarts run here, one at a time, so a switch that takes seconds to come up never
    /// holds up the heartbeats; `restarting` keeps a VIOLIN from being queued twice.
    private let restarts = DispatchQueue(label: "mesh-switch-restarts")
    /// The traffic reports go out here, off the heartbeat thread (a switch slow to answer must
    /// not stretch a heartbeat round); one report at a time.
    private let reports = DispatchQueue(label: "mesh-traffic-reports")
    private var reporting = false
    private var restarting: Set<UInt32> = []
    private var stopping = false
    private let context = ZMQContext()
    private let worker = WorkerThread()
    /// Heartbeats sent and unanswered, switches restarted: for the Prometheus exposition.
    private let figures = Counters()
    public var publish: (String, JSONValue) -> Void = { _, _ in }

    /// Refuses a run directory others could plant files in (`PrivateDirectory`).
    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        membership = Membership(me: options.me, timeout: options.timeout, maxMembers: options.maxMembers, evictAfter: options.forgetAfter)
        try PrivateDirectory.prepare(options.runDirectory)
    }

    static func now() -> Double { Double(monotonicMillis()) / 1000 }

    func control(_ vni: UInt32) -> String { "ipc://\(options.runDirectory)/switch-\(vni).sock" }
    var stateFile: String { options.runDirectory + "/mesh-state.json" }

    // MARK: - Start, adopt, stop

    /// Restores what the last run left: switches still running are adopted, dead ones restarted.
    public func start() {
        if let data = FileManager.default.contents(atPath: stateFile),
           let saved = try? JSONDecoder().decode([String: Presence].self, from: data) {
            for (key, p) in saved.sorted(by: { $0.key < $1.key }) {
                guard let vni = UInt32(key) else { continue }
                lock.withLock {
                    presence[vni] = p
                    membership.present(vni, tunnel: p.tunnel)
                    membership.restore(vni, p.members, now: Self.now())
                }
                if p.pid > 0, kill(p.pid, 0) == 0, switchAnswers(vni) {
                    logger.info("adopted switch", metadata: ["vni": "\(vni)", "pid": "\(p.pid)"])
                    emit(MeshAPI.SwitchAdopted(vni: vni, pid: p.pid, tunnel: p.tunnel))
                } else {
                    startSwitch(vni)
                }
            }
        }
        // Back after a while, the others may have forgotten us: we say we are here (all at
        // once, off the start: a member that does not answer costs its timeout).
        let told = lock.withLock { presence.keys.flatMap { vni in membership.list(vni).filter { $0.endpoint != options.me }.map { (vni, $0.endpoint) } } }
        for (vni, member) in told { DispatchQueue.global().async { [self] in reannounce(vni, to: member) } }
        worker.start(name: "mesh-heartbeat") { [self] in self.heartbeatLoop() }
    }

    /// Tells `member` that this host is a member of VIOLIN `vni` (with its tunnel), so that a
    /// member that forgot us (a long partition, our long absence) takes us back.
    private func reannounce(_ vni: UInt32, to member: String) {
        guard let tunnel = lock.withLock({ presence[vni]?.tunnel }) else { return }
        _ = try? meshCall(member, MeshAPI.MemberAnnounce(member: .init(vni: vni, endpoint: options.me, tunnel: tunnel, key: myKey)))
    }

    /// Stops the heartbeats; the switches keep forwarding (they are adopted on the next start).
    public func stop() {
        lock.withLock { stopping = true }
        worker.stop()
        lock.withLock {
            beatClients.values.forEach { $0.client.close() }
            beatClients = [:]
        }
        context.shutdown()
        context.terminate()
    }

    private func save() {
        let snapshot: [String: Presence] = lock.withLock {
            var out: [String: Presence] = [:]
            for (vni, var p) in presence {
                p.members = membership.members[vni].map { Array($0.values).sorted { $0.endpoint < $1.endpoint } } ?? []
                out[String(vni)] = p
            }
            return out
        }
        if let data = try? JSONEncoder().encode(snapshot) {
            let tmp = stateFile + ".tmp"
            FileManager.default.createFile(atPath: tmp, contents: data)
            _ = rename(tmp, stateFile)
        }
    }

    // MARK: - Switches

    private func freePort() -> UInt16 {
        let used = Set(presence.values.compactMap { $0.tunnel.split(separator: ":").last.flatMap { UInt16($0) } })
        var p = options.basePort
        while used.contains(p) { p += 1 }
        return p
    }

    /// Starts (or restarts) the VIOLIN's switch and gives it its ports and peers; whether its
    /// control socket answered.
    @discardableResult
    private func startSwitch(_ vni: UInt32) -> Bool {
        guard let p = lock.withLock({ presence[vni] }) else { return false }
        // The switch outlives the mesh: it must not hold the mesh's own output open.
        let log = options.runDirectory + "/switch-\(vni).log"
        let arguments = ["--vni", "\(vni)", "--tunnel", p.tunnel, "--listen", control(vni), "--bus", "none",
                         "--log-level", "warning", "--queues", "\(options.switchQueues)"]
        // Started under the lock that `switchExited` takes: a switch that dies at once is
        // seen as this VIOLIN's child, and restarted.
        let started: Result<ChildProcess, Error> = lock.withLock {
            do {
                let process = try ChildProcess(options.switchBinary, arguments, stdout: .append(log), stderr: .append(log),
                                               onExit: { [weak self] child in self?.switchExited(vni, child) })
                children[vni] = process
                schedule.started(vni, at: Self.now())
                presence[vni]?.pid = process.pid
                return .success(process)
            } catch {
                schedule.retry(vni, at: Self.now(), after: 1)
                return .failure(error)
            }
        }
        let process: ChildProcess
        switch started {
        case .success(let child): process = child
        case .failure(let error):
            logger.error("cannot start violin-switch", metadata: ["vni": "\(vni)", "error": "\(error)"])
            return false
        }
        emit(MeshAPI.SwitchStarted(vni: vni, pid: process.pid, tunnel: p.tunnel))
        // Wait for its control socket, then hand it its ports and peers.
        guard ServiceClient.waitUntilAnswers(context: context, endpoint: control(vni), within: 10, alive: { process.isRunning }) else {
            return false
        }
        for (_, body) in p.ports.sorted(by: { $0.key < $1.key }) {
            if let port = try? SwitchAPI.AddPort.decode(body) { _ = try? switchCall(vni, port) }
        }
        for (_, body) in (p.rates ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let rate = try? SwitchAPI.SetPortRate.decode(body) { _ = try? switchCall(vni, rate) }
        }
        pushPeers(vni)
        save()
        return true
    }

    private func switchExited(_ vni: UInt32, _ process: ChildProcess) {
        let restart: Bool = lock.withLock {
            guard children[vni] === process else { return false }
            children[vni] = nil
            guard !stopping, presence[vni] != nil else { return false }
            schedule.exited(vni, at: Self.now())
            return true
        }
        emit(MeshAPI.SwitchExited(vni: vni, status: Int(process.exitStatus ?? -1)))
        if restart { worker.waker.wake() }
    }

    /// One request to the VIOLIN's switch, from whichever thread calls (a client per call).
    @discardableResult
    func switchCall<R: RequestBody>(_ vni: UInt32, _ request: R, timeoutMs: Int = 2000) throws(ProtocolError) -> R.Reply {
        let client = ServiceClient(context: context, endpoint: control(vni), sender: options.me, timeoutMs: timeoutMs)
        defer { client.close() }
        do { return try client.call(request) } catch {
            switch error {
            case .error(let e): throw e
            default: throw ProtocolError(.unavailable, "switch of VIOLIN \(vni): \(error)")
            }
        }
    }

    private func switchAnswers(_ vni: UInt32) -> Bool {
        ServiceClient.waitUntilAnswers(context: context, endpoint: control(vni), within: 0)
    }

    private func pushPeers(_ vni: UInt32) {
        let peers = lock.withLock { membership.peers(vni) }
        _ = try? switchCall(vni, SwitchAPI.SetPeers(peers: peers))
    }

    // MARK: - Talking to other meshes

    private var myKey: String { options.keyPair?.publicKey ?? "" }

    private func meshCall<R: RequestBody>(_ endpoint: String, _ request: R, key: String? = nil, timeoutMs: Int = 1500,
                                          retries: Int? = nil) throws(ServiceClient.Failure) -> R.Reply {
        var security: ClientSecurity?
        if let pair = options.keyPair {
            let server = key ?? lock.withLock { membership.key(of: endpoint) }
            if !server.isEmpty { security = ClientSecurity(keyPair: pair, serverPublicKey: server) }
        }
        let client = ServiceClient(context: context, endpoint: endpoint, security: security, sender: options.me,
                                   timeoutMs: timeoutMs)
        defer { client.close() }
        return try client.call(request, retries: retries)
    }

    /// One heartbeat to a member; no resend: a heartbeat that goes unanswered is the news. It
    /// may take up to two thirds of `member_timeout` — room for a new connection's handshake
    /// over a slow link — as the rounds run all members at once.
    private func beat(_ endpoint: String) -> Bool {
        let key = lock.withLock { membership.key(of: endpoint) }
        var entry = lock.withLock { beatClients.removeValue(forKey: endpoint) }
        if entry == nil || entry?.key != key {
            entry?.client.close()
            var security: ClientSecurity?
            if let pair = options.keyPair, !key.isEmpty { security = ClientSecurity(keyPair: pair, serverPublicKey: key) }
            let timeoutMs = Int(max(options.interval * 500, options.timeout * 667))
            entry = (key, ServiceClient(context: context, endpoint: endpoint, security: security, sender: options.me, timeoutMs: timeoutMs))
        }
        guard let entry else { return false }
        // The VIOLINs in which we count it a member: it says in which of them we are none there.
        let shared = lock.withLock { membership.members.filter { presence[$0.key] != nil && $0.value[endpoint] != nil }.keys.sorted() }
        let reply = try? entry.client.call(MeshAPI.MemberHeartbeat(endpoint: options.me, violins: shared), retries: 0)
        lock.withLock { beatClients[endpoint] = entry }
        for vni in reply?.unknown ?? [] where shared.contains(vni) { reannounce(vni, to: endpoint) }
        return reply != nil
    }

    private func announce(_ change: MembershipChange?) {
        guard let change else { return }
        switch change {
        case .joined(let vni, let member): emit(MeshAPI.MemberJoined(vni: vni, member: member))
        case .left(let vni, let member, let reason): emit(MeshAPI.MemberLeft(vni: vni, member: member, reason: reason))
        }
    }

    // MARK: - Presence

    /// Makes the VIOLIN present here (switch up) and joins its mesh through `seed`.
    func join(_ vni: UInt32, seed: String?, seedKey: String? = nil) throws(ProtocolError) -> MeshAPI.JoinReply {
        let isNew: Bool? = lock.withLock {
            if presence[vni] != nil { return false }
            guard presence.count < options.maxViolins else { return nil }
            let tunnel = Self.tunnel(options.hostAddress, port: freePort())
            presence[vni] = Presence(tunnel: tunnel, ports: [:], members: [])
            membership.present(vni, tunnel: tunnel)
            return true
        }
        guard let isNew else {
            throw ProtocolError(.conflict, "this host runs \(options.maxViolins) VIOLINs, its most (max_violins): VIOLIN \(vni) cannot join here")
        }
        // A VIOLIN whose switch cannot start here is not kept (and not restarted forever): the
        // request fails, and a flood of them leaves nothing behind.
        if isNew, !startSwitch(vni) {
            try? leave(vni)
            throw ProtocolError(.unavailable, "violin-switch for VIOLIN \(vni) did not start (\(options.runDirectory)/switch-\(vni).log)")
        }
        let tunnel = lock.withLock { presence[vni]!.tunnel }
        if let seed, seed != options.me {
            let reply: MeshAPI.MemberJoinReply
            do {
                reply = try meshCall(seed, MeshAPI.MemberJoin(member: .init(vni: vni, endpoint: options.me, tunnel: tunnel, key: myKey)),
                                     key: seedKey)
            } catch {
                // Refused by the seed (a VIOLIN of the other address family, a full one): nothing stays here.
                if case .error(let e) = error, e.code == .conflict { try? leave(vni); throw ProtocolError(.conflict, "seed \(seed): \(e.message)") }
                // No answer (a seed down, or one reached without its key): a VIOLIN new here is not
                // kept either — an island no member knows, which a later add_port would take for joined.
                if isNew { try? leave(vni) }
                throw ProtocolError(.unavailable, "seed \(seed): \(error)")
            }
            // One VIOLIN's switches use one address family: a VIOLIN of the other is not joined.
            if let other = reply.members.first(where: { !Self.sameFamily($0.tunnel, tunnel) }) {
                try? leave(vni)
                throw ProtocolError(.conflict, Self.familyClash(vni, theirs: other.tunnel, ours: tunnel))
            }
            var others: [(String, String)] = []
            for m in reply.members {
                let (e, t) = (m.endpoint, m.tunnel)
                let k = m.key ?? (e == seed ? seedKey ?? "" : "")
                let change = lock.withLock { membership.admit(vni, endpoint: e, tunnel: t, now: Self.now(), key: k) }
                announce(change)
                if e != seed && e != options.me { others.append((e, t)) }
            }
            // Announce ourselves to every member the seed named.
            for (e, _) in others {
                _ = try? meshCall(e, MeshAPI.MemberAnnounce(member: .init(vni: vni, endpoint: options.me, tunnel: tunnel, key: myKey)))
            }
        }
        pushPeers(vni)
        save()
        return MeshAPI.JoinReply(vni: vni, tunnel: tunnel, members: members(vni))
    }

    func leave(_ vni: UInt32) throws(ProtocolError) {
        let (members, child, pid): ([Member], ChildProcess?, Int32) = lock.withLock {
            guard let p = presence.removeValue(forKey: vni) else { return ([], nil, 0) }
            schedule.cancel(vni)
            return (membership.absent(vni), children.removeValue(forKey: vni), p.pid)
        }
        for m in members {
            _ = try? meshCall(m.endpoint, MeshAPI.MemberLeave(vni: vni, endpoint: options.me),
                              timeoutMs: 500)
        }
        if let child, child.isRunning {
            // Gone before the request is answered: its tunnel port is free again at once, and a
            // VIOLIN that joins next may be given it (its switch could not bind it otherwise).
            child.terminate()
            if child.wait(timeout: 5) == nil {
                child.terminate(SIGKILL)
                _ = child.wait(timeout: 5)
            }
        } else if pid > 1, isOurSwitch(pid, vni) {
            // A switch adopted after a restart of the mesh is no child of ours, but ours to stop.
            kill(pid, SIGTERM)
        }
        save()
    }

    /// Whether `pid` is still the switch this mesh started for `vni` (its control socket on its
    /// command line), not a process that reused the number.
    func isOurSwitch(_ pid: Int32, _ vni: UInt32) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains(control(vni))
    }

    func members(_ vni: UInt32) -> [MeshAPI.MemberInfo] {
        let (list, all) = lock.withLock { (membership.list(vni, myKey: myKey), membership.members[vni] ?? [:]) }
        var out = list.map { MeshAPI.MemberInfo(endpoint: $0.endpoint, tunnel: $0.tunnel, alive: true, key: $0.key) }
        for m in all.values.filter({ !$0.alive }).sorted(by: { $0.endpoint < $1.endpoint }) {
            out.append(MeshAPI.MemberInfo(endpoint: m.endpoint, tunnel: m.tunnel, alive: false))
        }
        return out
    }

    // MARK: - Heartbeats and supervision

    private var lastTraffic: Int64 = 0

    /// Who talks to whom through each VIOLIN's switch here, on the bus (`mesh.traffic`), for the
    /// switches that counted any pair; a switch that does not answer is skipped this time.
    private func publishTraffic() {
        let vnis = lock.withLock { presence.keys.sorted() }
        for vni in vnis {
            guard let t = try? switchCall(vni, SwitchAPI.Traffic(limit: MeshAPI.Traffic.maxPairs), timeoutMs: 1000), !t.pairs.isEmpty else { continue }
            emit(MeshAPI.Traffic(vni: vni, pairs: t.pairs, other: t.other))
        }
    }

    /// Switches due for a restart, and adopted ones that died: restarted off this thread.
    private func superviseSwitches() {
        // Switches due for a restart, and adopted ones that died.
        let (due, adoptedDead): ([UInt32], [UInt32]) = lock.withLock {
            let now = Self.now()
            var list = schedule.due(at: now)
            var dead: [UInt32] = []
            for (vni, p) in presence where children[vni] == nil && !schedule.isScheduled(vni) && !restarting.contains(vni)
                && p.pid > 0 && kill(p.pid, 0) != 0 {
                dead.append(vni)
            }
            list += dead
            list = list.filter { !restarting.contains($0) }
            list.forEach { schedule.cancel($0); restarting.insert($0) }
            return (list.sorted(), dead.sorted())
        }
        // An adopted switch is not our child: its exit status is not ours to read.
        for vni in adoptedDead { emit(MeshAPI.SwitchExited(vni: vni, status: -1)) }
        for vni in due {
            figures.add("switch_restarts")
            restarts.async { [self] in
                startSwitch(vni)
                lock.withLock { _ = restarting.remove(vni) }
            }
        }
    }

    /// Every `traffic_interval`, the switches' pair counters on the bus (one report at a time).
    private func reportTrafficIfDue() {
        guard options.trafficInterval > 0, monotonicMillis() - lastTraffic >= Int64(options.trafficInterval * 1000) else { return }
        let start: Bool = lock.withLock { defer { reporting = true }; return !reporting }
        guard start else { return }
        lastTraffic = monotonicMillis()
        reports.async { [self] in
            publishTraffic()
            lock.withLock { reporting = false }
        }
    }

    private func heartbeatLoop() {
        var items = [PollItem(fd: worker.waker.readFD)]
        while !worker.isStopping {
            let contacts = lock.withLock { membership.contacts }
            let roundStarted = monotonicMillis()
            // All members at once (Concurrently): a dead one costs its timeout, not everyone's.
            let answered = Concurrently.filter(contacts) { [self] endpoint in beat(endpoint) }
            figures.add("heartbeats_sent", contacts.count)
            figures.add("heartbeats_missed", contacts.count - answered.count)
            lock.withLock {
                for (endpoint, entry) in beatClients where !contacts.contains(endpoint) {
                    entry.client.close()
                    beatClients[endpoint] = nil
                }
            }
            for endpoint in answered {
                let changes = lock.withLock { membership.heard(endpoint, now: Self.now()) }
                changes.forEach(announce)
                for case .joined(let vni, let member) in changes {
                    pushPeers(vni)
                    // Silent long enough to have been dropped there too: we say we are back.
                    reannounce(vni, to: member)
                }
            }
            let expired = lock.withLock { membership.expire(now: Self.now()) }
            expired.forEach(announce)
            for vni in Set(expired.compactMap { if case .left(let v, _, _) = $0 { v } else { nil } }) { pushPeers(vni) }
            if !expired.isEmpty { save() }
            superviseSwitches()
            reportTrafficIfDue()
            // A round that waited for a slow member counts against the pause to the next.
            _ = try? poll(&items, timeoutMs: max(0, Int(options.interval * 1000) - Int(monotonicMillis() - roundStarted)))
            if items[0].readable { worker.waker.drain() }
        }
    }

    // MARK: - Requests

    public var state: JSONValue {
        lock.withLock {
            ["violins": .array(presence.keys.sorted().map { .number(Double($0)) })]
        }
    }

    /// The mesh's series, and each of its switches' (asked for their stats at each scrape).
    public func collectMetrics(into m: MetricSet) {
        let members: [(UInt32, Int)] = lock.withLock {
            presence.keys.sorted().map { vni in (vni, (membership.members[vni] ?? [:]).values.filter(\.alive).count) }
        }
        for (vni, n) in members {
            m.gauge("violin_mesh_members", [("vni", "\(vni)")], value: Double(n), help: "Other hosts' meshes alive in the VIOLIN's mesh.")
        }
        m.counter("violin_mesh_heartbeats_sent_total", total: Double(figures["heartbeats_sent"]), help: "Heartbeats sent to member meshes.")
        m.counter("violin_mesh_heartbeats_missed_total", total: Double(figures["heartbeats_missed"]), help: "Heartbeats a member did not answer.")
        m.counter("violin_mesh_switch_restarts_total", total: Double(figures["switch_restarts"]), help: "Switches restarted after they died.")
        for (vni, _) in members {
            guard let stats = try? switchCall(vni, SwitchAPI.Stats(), timeoutMs: 1000) else { continue }
            SwitchFigures.collect(stats, into: m)
        }
    }

    private func requirePresent(_ vni: UInt32) throws(ProtocolError) {
        guard lock.withLock({ presence[vni] != nil }) else { throw ProtocolError(.notFound, "VIOLIN \(vni) is not present here") }
    }

    /// The requests of PROTOCOL.md §8.2, one handler per type.
    private lazy var table: RequestTable = {
        var t = RequestTable()
        onViolinRequests(&t)
        onMemberRequests(&t)
        return t
    }()

    /// What operators and the executor ask: VIOLINs, ports, members.
    private func onViolinRequests(_ t: inout RequestTable) {
        t.on(MeshAPI.JoinViolin.self) { [unowned self] r in try self.join(r.vni, seed: r.seed, seedKey: Self.key(r.seedKey)) }
        t.on(MeshAPI.LeaveViolin.self) { [unowned self] r in
            try self.requirePresent(r.vni)
            try self.leave(r.vni)
            return MeshAPI.VNIReply(vni: r.vni)
        }
        t.on(MeshAPI.AddPort.self, caller: { [unowned self] r, who in
            let present = self.lock.withLock { self.presence[r.vni] != nil }
            // Through its own mesh, another host brings this host into a VIOLIN — or back into
            // its membership here, when this mesh lost track of it (a restart, a partition).
            let throughCaller = self.isPeer(who) && r.seedKey == who.key && r.seed != nil
            if !present, self.isPeer(who), !throughCaller {
                throw ProtocolError(.forbidden, "\(who.audit) is no member of VIOLIN \(r.vni) here, and may join this host only through its own mesh")
            }
            if !present || (throughCaller && !self.isMember(r.vni, who)) {
                _ = try self.join(r.vni, seed: r.seed, seedKey: Self.key(r.seedKey))
            }
            try self.requireMember(r.vni, who)
            let reply = try self.switchCall(r.vni, r.port)
            self.lock.withLock { self.presence[r.vni]?.ports[r.port.name] = r.port.json }
            self.save()
            return MeshAPI.AddPortReply(vni: r.vni, port: reply.port)
        })
        t.on(MeshAPI.RemovePort.self, caller: { [unowned self] r, who in
            try self.requireMember(r.vni, who)
            return try self.removePort(r)
        })
        t.on(MeshAPI.Announce.self, caller: { [unowned self] r, who in
            try self.requirePresent(r.vni)
            try self.requireMember(r.vni, who)
            let reply = try self.switchCall(r.vni, SwitchAPI.Announce(port: r.name, mac: r.mac))
            return MeshAPI.AnnounceReply(vni: r.vni, announced: reply.announced)
        })
        t.on(MeshAPI.PortStats.self, caller: { [unowned self] r, who in
            try self.requirePresent(r.vni)
            try self.requireMember(r.vni, who)
            let stats = try self.switchCall(r.vni, SwitchAPI.Stats())
            guard let port = stats.ports[r.name] else { throw ProtocolError(.notFound, "no port \(r.name) in VIOLIN \(r.vni)") }
            return MeshAPI.PortStatsReply(vni: r.vni, name: r.name, counters: port)
        })
        t.on(MeshAPI.SetPortRate.self) { [unowned self] r in try self.setPortRate(r) }
        t.on(MeshAPI.Members.self) { [unowned self] r in
            try self.requirePresent(r.vni)
            let peers = self.lock.withLock { self.membership.peers(r.vni) }
            return MeshAPI.MembersReply(vni: r.vni, members: self.members(r.vni), peers: peers)
        }
        t.on(MeshAPI.Ports.self) { [unowned self] _ in
            let list: [MeshAPI.PortsReply.Violin] = self.lock.withLock {
                self.presence.keys.sorted().map { vni in
                    let p = self.presence[vni]!
                    return .init(vni: vni, tunnel: p.tunnel, switch: self.control(vni), pid: Int(p.pid), ports: p.ports.keys.sorted())
                }
            }
            return MeshAPI.PortsReply(violins: list)
        }
    }

    /// What the other hosts' meshes ask (PROTOCOL.md §8.2, mesh to mesh).
    private func onMemberRequests(_ t: inout RequestTable) {
        t.on(MeshAPI.MemberJoin.self, caller: { [unowned self] r, who in
            try self.requireSelf(r.member, who)
            try self.admit(r.member)
            let list = self.lock.withLock { self.membership.list(r.member.vni, myKey: self.myKey) }.filter { $0.endpoint != r.member.endpoint }
            return MeshAPI.MemberJoinReply(members: list.map { .init(endpoint: $0.endpoint, tunnel: $0.tunnel, key: $0.key) })
        })
        t.on(MeshAPI.MemberAnnounce.self, caller: { [unowned self] r, who in
            try self.requireSelf(r.member, who)
            try self.admit(r.member)
            return EmptyReply()
        })
        t.on(MeshAPI.MemberLeave.self, caller: { [unowned self] r, who in
            try self.requireEndpoint(r.endpoint, who)
            let change = self.lock.withLock { self.membership.remove(r.vni, endpoint: r.endpoint) }
            self.announce(change)
            if change != nil { self.pushPeers(r.vni); self.save() }
            return EmptyReply()
        })
        t.on(MeshAPI.MemberHeartbeat.self, caller: { [unowned self] r, who in
            try self.requireEndpoint(r.endpoint, who)
            let (changes, vnis, unknown) = self.lock.withLock { () -> ([MembershipChange], [UInt32], [UInt32]) in
                // Where the sender counts us a member and we are present, but do not know it.
                let unknown = (r.violins ?? []).filter { self.presence[$0] != nil && self.membership.members[$0]?[r.endpoint] == nil }
                return (self.membership.heard(r.endpoint, now: Self.now()), self.membership.violins, unknown.sorted())
            }
            changes.forEach(self.announce)
            for case .joined(let vni, _) in changes { self.pushPeers(vni) }
            return MeshAPI.HeartbeatReply(violins: vnis.sorted(), unknown: r.violins == nil ? nil : unknown)
        })
    }

    // MARK: - Who may say what (PROTOCOL.md §7.1)

    /// A caller that is neither this node (its own key, or no CURVE) nor an operator: another
    /// host, or the control node.
    func isPeer(_ who: Caller) -> Bool { !who.isOperator }

    /// Another host reaches a VIOLIN's ports only as one of its members (by its mesh's key).
    func isMember(_ vni: UInt32, _ who: Caller) -> Bool {
        lock.withLock { membership.members[vni]?.values.contains { $0.key == who.key } ?? false }
    }

    func requireMember(_ vni: UInt32, _ who: Caller) throws(ProtocolError) {
        guard isPeer(who) else { return }
        guard isMember(vni, who) else { throw ProtocolError(.forbidden, "\(who.audit) is no member of VIOLIN \(vni) here") }
    }

    /// A member speaks for itself only: the key it names is its connection's, and an endpoint
    /// another key holds is not taken over.
    func requireSelf(_ m: MeshAPI.Member, _ who: Caller) throws(ProtocolError) {
        guard isPeer(who) else { return }
        guard m.key == who.key else { throw ProtocolError(.forbidden, "a member names its own key only (\(who.audit))") }
        try requireEndpoint(m.endpoint, who, vni: m.vni)
    }

    /// Requests about the member at `endpoint` come from that member's key.
    func requireEndpoint(_ endpoint: String, _ who: Caller, vni: UInt32? = nil) throws(ProtocolError) {
        guard isPeer(who) else { return }
        let held = lock.withLock { () -> [String] in
            membership.members.filter { vni == nil || $0.key == vni }.values.compactMap { $0[endpoint]?.key }
        }
        if let other = held.first(where: { $0 != who.key }) {
            throw ProtocolError(.forbidden, "member \(endpoint) is held by key \(other.prefix(8))…, not \(who.audit)")
        }
    }

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try table.handle(request) }
    public func handle(_ request: Message, from requester: Requester) throws(ProtocolError) -> JSONValue? {
        try table.handle(request, from: requester)
    }
    public func lane(of msgType: String) -> RequestTable.Lane { table.lane(of: msgType) }

    /// A key field: empty means none.
    private static func key(_ k: String?) -> String? { (k ?? "").isEmpty ? nil : k }

    private func admit(_ m: MeshAPI.Member) throws(ProtocolError) {
        try requirePresent(m.vni)
        if let ours = lock.withLock({ presence[m.vni]?.tunnel }), !Self.sameFamily(m.tunnel, ours) {
            throw ProtocolError(.conflict, Self.familyClash(m.vni, theirs: m.tunnel, ours: ours))
        }
        let (full, change) = lock.withLock { () -> (Bool, MembershipChange?) in
            if membership.isFull(m.vni, adding: m.endpoint) { return (true, nil) }
            return (false, membership.admit(m.vni, endpoint: m.endpoint, tunnel: m.tunnel, now: Self.now(), key: m.key))
        }
        if full {
            throw ProtocolError(.conflict, "VIOLIN \(m.vni) has \(options.maxMembers) members here, its most (max_members): \(m.endpoint) cannot join")
        }
        announce(change)
        pushPeers(m.vni)
        save()
    }

    /// A switch's tunnel on `address`: "10.0.0.1:4790", or "[2001:db8::1]:4790".
    static func tunnel(_ address: String, port: UInt16) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    static func sameFamily(_ a: String, _ b: String) -> Bool { a.hasPrefix("[") == b.hasPrefix("[") }

    static func familyClash(_ vni: UInt32, theirs: String, ours: String) -> String {
        "VIOLIN \(vni)'s switches use \(theirs.hasPrefix("[") ? "IPv6" : "IPv4") (\(theirs)); this host's tunnel is \(ours): "
            + "a VIOLIN's switches use one address family"
    }

    private func removePort(_ r: MeshAPI.RemovePort) throws(ProtocolError) -> MeshAPI.RemovePortReply {
        try requirePresent(r.vni)
        var request = SwitchAPI.RemovePort(name: r.name)
        // The VM behind the port migrated to the member `forward_to` (its mesh endpoint): the
        // switch sends late frames for `mac` on to that member's switch for a grace period.
        if let f = r.forward {
            guard let tunnel = lock.withLock({ membership.members[r.vni]?[f.to]?.tunnel }) else {
                throw ProtocolError(.notFound, "forward_to must be the mesh endpoint of a member of VIOLIN \(r.vni)")
            }
            request.forward = .init(mac: f.mac, to: tunnel, graceS: f.graceS)
        }
        let removed = try switchCall(r.vni, request)
        let empty = lock.withLock { () -> Bool in
            presence[r.vni]?.ports[r.name] = nil
            presence[r.vni]?.rates?[r.name] = nil
            return presence[r.vni]?.ports.isEmpty ?? true
        }
        if empty { try leave(r.vni) } else { save() }
        return MeshAPI.RemovePortReply(vni: r.vni, port: removed)
    }

    /// Caps what a VM sends through its port here, and keeps the cap for a restarted switch.
    private func setPortRate(_ r: MeshAPI.SetPortRate) throws(ProtocolError) -> MeshAPI.PortRateReply {
        try requirePresent(r.vni)
        guard lock.withLock({ presence[r.vni]?.ports[r.name] != nil }) else {
            throw ProtocolError(.notFound, "no port \(r.name) in VIOLIN \(r.vni)")
        }
        let reply = try switchCall(r.vni, r.forSwitch)
        lock.withLock {
            var rates = presence[r.vni]?.rates ?? [:]
            rates[r.name] = r.mbitS > 0 ? r.forSwitch.json : nil
            presence[r.vni]?.rates = rates
        }
        save()
        return MeshAPI.PortRateReply(vni: r.vni, name: r.name, mbitS: reply.mbitS, burstKB: reply.burstKB)
    }
}

import Foundation
import Logging
import MeshCore
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// The switch control plane of one host (PROTOCOL.md §8.2): the membership of each VIOLIN's
/// switch mesh, the supervision of each VIOLIN's `violin-switch`, and ports on request.
///
/// Threads: requests are answered on the service's loop thread (joins contact the seed and the
/// members from there); a heartbeat thread checks the members, the switches' processes and the
/// peer sets. Each thread has its own sockets; the shared state is behind one lock.
public final class MeshNode: ServiceNode, @unchecked Sendable {
    public struct Options: Sendable {
        public var me: String                 // our mesh endpoint, as other hosts reach it
        public var hostAddress: String        // our underlay IPv4 address, for the tunnels
        public var basePort: UInt16 = 4789
        public var switchBinary: String
        public var runDirectory: String
        public var interval = 1.0
        public var timeout = 3.0
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
    }

    public let options: Options
    private let logger: Logger
    private let lock = NSLockLite()
    private var membership: Membership
    private var presence: [UInt32: Presence] = [:]
    private var children: [UInt32: ChildProcess] = [:]
    private var restartAt: [UInt32: Double] = [:]
    private var backoff: [UInt32: Double] = [:]
    private var startedAt: [UInt32: Double] = [:]
    private var stopping = false
    private let context = ZMQContext()
    private let worker = WorkerThread()
    public var publish: (String, JSONValue) -> Void = { _, _ in }

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
        membership = Membership(me: options.me, timeout: options.timeout)
        try? FileManager.default.createDirectory(atPath: options.runDirectory, withIntermediateDirectories: true)
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
                    for m in p.members { membership.admit(vni, endpoint: m.endpoint, tunnel: m.tunnel, now: Self.now()) }
                }
                if p.pid > 0, kill(p.pid, 0) == 0, switchAnswers(vni) {
                    logger.info("adopted switch", metadata: ["vni": "\(vni)", "pid": "\(p.pid)"])
                    publish("switch_adopted", ["vni": .number(Double(vni)), "pid": .number(Double(p.pid)), "tunnel": .string(p.tunnel)])
                } else {
                    startSwitch(vni)
                }
            }
        }
        worker.start(name: "mesh-heartbeat") { [self] in self.heartbeatLoop() }
    }

    /// Stops the heartbeats; the switches keep forwarding (they are adopted on the next start).
    public func stop() {
        lock.withLock { stopping = true }
        worker.stop()
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

    /// Starts (or restarts) the VIOLIN's switch and gives it its ports and peers.
    private func startSwitch(_ vni: UInt32) {
        guard let p = lock.withLock({ presence[vni] }) else { return }
        // The switch outlives the mesh: it must not hold the mesh's own output open.
        let log = options.runDirectory + "/switch-\(vni).log"
        let arguments = ["--vni", "\(vni)", "--tunnel", p.tunnel, "--listen", control(vni), "--bus", "none",
                         "--log-level", "warning"]
        // Started under the lock that `switchExited` takes: a switch that dies at once is
        // seen as this VIOLIN's child, and restarted.
        let started: Result<ChildProcess, Error> = lock.withLock {
            do {
                let process = try ChildProcess(options.switchBinary, arguments, stdout: .append(log), stderr: .append(log),
                                               onExit: { [weak self] child in self?.switchExited(vni, child) })
                children[vni] = process
                startedAt[vni] = Self.now()
                presence[vni]?.pid = process.pid
                return .success(process)
            } catch {
                restartAt[vni] = Self.now() + 1
                return .failure(error)
            }
        }
        let process: ChildProcess
        switch started {
        case .success(let child): process = child
        case .failure(let error):
            logger.error("cannot start violin-switch", metadata: ["vni": "\(vni)", "error": "\(error)"])
            return
        }
        publish("switch_started", ["vni": .number(Double(vni)), "pid": .number(Double(process.pid)), "tunnel": .string(p.tunnel)])
        // Wait for its control socket, then hand it its ports and peers.
        let deadline = monotonicMillis() + 5000
        while !switchAnswers(vni) && monotonicMillis() < deadline {}
        for (_, body) in p.ports.sorted(by: { $0.key < $1.key }) {
            if let port = try? SwitchAPI.AddPort.decode(body) { _ = try? switchCall(vni, port) }
        }
        pushPeers(vni)
        save()
    }

    private func switchExited(_ vni: UInt32, _ process: ChildProcess) {
        let restart: Bool = lock.withLock {
            guard children[vni] === process else { return false }
            children[vni] = nil
            guard !stopping, presence[vni] != nil else { return false }
            let b = RestartBackoff.next(previous: backoff[vni], ranSeconds: Self.now() - (startedAt[vni] ?? 0))
            backoff[vni] = b
            restartAt[vni] = Self.now() + b
            return true
        }
        publish("switch_exited", ["vni": .number(Double(vni)), "status": .number(Double(process.exitStatus ?? -1))])
        if restart { worker.waker.wake() }
    }

    /// One request to the VIOLIN's switch, from whichever thread calls (a client per call).
    @discardableResult
    func switchCall<R: RequestBody>(_ vni: UInt32, _ request: R, timeoutMs: Int = 2000) throws(ProtocolError) -> JSONValue {
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
        (try? switchCall(vni, AdminAPI.Ping(), timeoutMs: 300)) != nil
    }

    private func pushPeers(_ vni: UInt32) {
        let peers = lock.withLock { membership.peers(vni) }
        _ = try? switchCall(vni, SwitchAPI.SetPeers(peers: peers))
    }

    // MARK: - Talking to other meshes

    private var myKey: String { options.keyPair?.publicKey ?? "" }

    private func meshCall(_ endpoint: String, _ type: String, _ body: JSONValue, key: String? = nil,
                          timeoutMs: Int = 1500) throws(ServiceClient.Failure) -> JSONValue {
        var security: ClientSecurity?
        if let pair = options.keyPair {
            let server = key ?? lock.withLock { membership.key(of: endpoint) }
            if !server.isEmpty { security = ClientSecurity(keyPair: pair, serverPublicKey: server) }
        }
        let client = ServiceClient(context: context, endpoint: endpoint, security: security, sender: options.me,
                                   timeoutMs: timeoutMs)
        defer { client.close() }
        return try client.call(type, body: body)
    }

    private func announce(_ change: MembershipChange?) {
        guard let change else { return }
        switch change {
        case .joined(let vni, let member): publish("member_joined", ["vni": .number(Double(vni)), "member": .string(member)])
        case .left(let vni, let member, let reason):
            publish("member_left", ["vni": .number(Double(vni)), "member": .string(member), "reason": .string(reason)])
        }
    }

    // MARK: - Presence

    /// Makes the VIOLIN present here (switch up) and joins its mesh through `seed`.
    func join(_ vni: UInt32, seed: String?, seedKey: String? = nil) throws(ProtocolError) -> JSONValue {
        let isNew: Bool = lock.withLock {
            if presence[vni] != nil { return false }
            let tunnel = "\(options.hostAddress):\(freePort())"
            presence[vni] = Presence(tunnel: tunnel, ports: [:], members: [])
            membership.present(vni, tunnel: tunnel)
            return true
        }
        if isNew { startSwitch(vni) }
        let tunnel = lock.withLock { presence[vni]!.tunnel }
        if let seed, seed != options.me {
            let reply: JSONValue
            do {
                reply = try meshCall(seed, "member_join_request",
                                     ["vni": .number(Double(vni)), "endpoint": .string(options.me), "tunnel": .string(tunnel),
                                      "key": .string(myKey)], key: seedKey)
            } catch { throw ProtocolError(.unavailable, "seed \(seed): \(error)") }
            var others: [(String, String)] = []
            if case .array(let list)? = reply["members"] {
                for m in list {
                    guard let e = m["endpoint"]?.stringValue, let t = m["tunnel"]?.stringValue else { continue }
                    let k = m["key"]?.stringValue ?? (e == seed ? seedKey ?? "" : "")
                    let change = lock.withLock { membership.admit(vni, endpoint: e, tunnel: t, now: Self.now(), key: k) }
                    announce(change)
                    if e != seed && e != options.me { others.append((e, t)) }
                }
            }
            // Announce ourselves to every member the seed named.
            for (e, _) in others {
                _ = try? meshCall(e, "member_announce_request",
                                  ["vni": .number(Double(vni)), "endpoint": .string(options.me), "tunnel": .string(tunnel),
                                   "key": .string(myKey)])
            }
        }
        pushPeers(vni)
        save()
        return Replies.ok(["vni": .number(Double(vni)), "tunnel": .string(tunnel), "members": membersJSON(vni)])
    }

    func leave(_ vni: UInt32) throws(ProtocolError) {
        let (members, child): ([Member], ChildProcess?) = lock.withLock {
            guard presence.removeValue(forKey: vni) != nil else { return ([], nil) }
            restartAt[vni] = nil
            return (membership.absent(vni), children.removeValue(forKey: vni))
        }
        for m in members {
            _ = try? meshCall(m.endpoint, "member_leave_request", ["vni": .number(Double(vni)), "endpoint": .string(options.me)],
                              timeoutMs: 500)
        }
        if let child, child.isRunning { child.terminate() } else { _ = try? switchCall(vni, AdminAPI.Ping(), timeoutMs: 200) }
        save()
    }

    func membersJSON(_ vni: UInt32) -> JSONValue {
        let (list, all) = lock.withLock { (membership.list(vni, myKey: myKey), membership.members[vni] ?? [:]) }
        var out: [JSONValue] = list.map { ["endpoint": .string($0.endpoint), "tunnel": .string($0.tunnel), "alive": true,
                                           "key": .string($0.key)] }
        for m in all.values.filter({ !$0.alive }).sorted(by: { $0.endpoint < $1.endpoint }) {
            out.append(["endpoint": .string(m.endpoint), "tunnel": .string(m.tunnel), "alive": false])
        }
        return .array(out)
    }

    // MARK: - Heartbeats and supervision

    private func heartbeatLoop() {
        var items = [PollItem(fd: worker.waker.readFD)]
        while !worker.isStopping {
            let contacts = lock.withLock { membership.contacts }
            for endpoint in contacts {
                let ok = (try? meshCall(endpoint, "member_heartbeat_request", ["endpoint": .string(options.me)],
                                        timeoutMs: Int(options.interval * 500))) != nil
                if ok {
                    let changes = lock.withLock { membership.heard(endpoint, now: Self.now()) }
                    changes.forEach(announce)
                    for case .joined(let vni, _) in changes { pushPeers(vni) }
                }
            }
            let expired = lock.withLock { membership.expire(now: Self.now()) }
            expired.forEach(announce)
            for vni in Set(expired.compactMap { if case .left(let v, _, _) = $0 { v } else { nil } }) { pushPeers(vni) }
            if !expired.isEmpty { save() }
            // Switches due for a restart, and adopted ones that died.
            let (due, adoptedDead): ([UInt32], [UInt32]) = lock.withLock {
                let now = Self.now()
                var list = restartAt.filter { $0.value <= now }.map(\.key)
                var dead: [UInt32] = []
                for (vni, p) in presence where children[vni] == nil && restartAt[vni] == nil && p.pid > 0 && kill(p.pid, 0) != 0 {
                    dead.append(vni)
                }
                list += dead
                list.forEach { restartAt[$0] = nil }
                return (list.sorted(), dead.sorted())
            }
            // An adopted switch is not our child: its exit status is not ours to read.
            for vni in adoptedDead { publish("switch_exited", ["vni": .number(Double(vni)), "status": .number(-1)]) }
            for vni in due { startSwitch(vni) }
            _ = try? poll(&items, timeoutMs: Int(options.interval * 1000))
            if items[0].readable { worker.waker.drain() }
        }
    }

    // MARK: - Requests

    public var state: JSONValue {
        lock.withLock {
            ["violins": .array(presence.keys.sorted().map { .number(Double($0)) })]
        }
    }

    private func macField(_ b: JSONValue) throws(ProtocolError) -> MACAddress {
        guard let mac = b["mac"]?.stringValue.flatMap(MACAddress.init), mac.isUnicast else {
            throw ProtocolError(.invalidBody, "mac must be a unicast MAC address like 02:00:00:00:00:01")
        }
        return mac
    }

    private func vniField(_ b: JSONValue) throws(ProtocolError) -> UInt32 {
        guard let n = b["vni"]?.intValue, (1...0xFF_FFFF).contains(n) else {
            throw ProtocolError(.invalidBody, "vni (1-16777215) is required")
        }
        return UInt32(n)
    }

    private func text(_ b: JSONValue, _ key: String) throws(ProtocolError) -> String {
        guard let v = b[key]?.stringValue, !v.isEmpty else { throw ProtocolError(.invalidBody, "\(key) (a string) is required") }
        return v
    }

    private func endpointField(_ b: JSONValue, _ key: String) throws(ProtocolError) -> String {
        let e = try text(b, key)
        guard e.hasPrefix("tcp://") || e.hasPrefix("ipc://") else {
            throw ProtocolError(.invalidBody, "\(key) must be a ZeroMQ endpoint (tcp:// or ipc://)")
        }
        return e
    }

    private func keyField(_ b: JSONValue, _ key: String) throws(ProtocolError) -> String? {
        guard let v = b[key] else { return nil }
        guard let k = v.stringValue, k.isEmpty || CurveKeyPair.isValidKey(k) else {
            throw ProtocolError(.invalidBody, "\(key) must be a CURVE public key (40 Z85 characters)")
        }
        return k.isEmpty ? nil : k
    }

    private func requirePresent(_ vni: UInt32) throws(ProtocolError) {
        guard lock.withLock({ presence[vni] != nil }) else { throw ProtocolError(.notFound, "VIOLIN \(vni) is not present here") }
    }

    public func handle(_ request: Message) throws(ProtocolError) -> JSONValue? {
        let b = request.body
        switch request.header.msgType {
        case "join_violin_request":
            let seed = b["seed"] == nil ? nil : try endpointField(b, "seed")
            return try join(try vniField(b), seed: seed, seedKey: try keyField(b, "seed_key"))
        case "leave_violin_request":
            let vni = try vniField(b)
            try requirePresent(vni)
            try leave(vni)
            return Replies.ok(["vni": .number(Double(vni))])
        case "add_port_request":
            let vni = try vniField(b)
            let name = try text(b, "name")
            if lock.withLock({ presence[vni] == nil }) {
                _ = try join(vni, seed: b["seed"] == nil ? nil : try endpointField(b, "seed"), seedKey: try keyField(b, "seed_key"))
            }
            var body = b.objectValue ?? [:]
            body["vni"] = nil
            body["seed"] = nil
            body["seed_key"] = nil
            let port = try SwitchAPI.AddPort.decode(.object(body))
            let reply = try switchCall(vni, port)
            lock.withLock { presence[vni]?.ports[name] = port.json }
            save()
            return Replies.ok(["vni": .number(Double(vni)), "port": reply["port"] ?? .null])
        case "remove_port_request":
            let vni = try vniField(b)
            let name = try text(b, "name")
            try requirePresent(vni)
            var request = SwitchAPI.RemovePort(name: name)
            // The VM behind the port migrated to the member `forward_to` (its mesh endpoint): the
            // switch sends late frames for `mac` on to that member's switch for a grace period.
            if let to = b["forward_to"] {
                guard let endpoint = to.stringValue,
                      let tunnel = lock.withLock({ membership.members[vni]?[endpoint]?.tunnel }) else {
                    throw ProtocolError(.notFound, "forward_to must be the mesh endpoint of a member of VIOLIN \(vni)")
                }
                let grace = b["grace_s"]?.numberValue ?? 10
                guard (0...3600).contains(grace) else { throw ProtocolError(.invalidBody, "grace_s must be 0-3600") }
                request.forward = .init(mac: try macField(b), to: tunnel, graceS: grace)
            }
            let removed = try switchCall(vni, request)
            let empty = lock.withLock { () -> Bool in
                presence[vni]?.ports[name] = nil
                return presence[vni]?.ports.isEmpty ?? true
            }
            if empty { try leave(vni) } else { save() }
            var reply = removed.objectValue ?? [:]
            reply["status"] = nil
            reply["vni"] = .number(Double(vni))
            return Replies.ok(reply)
        case "announce_request":
            let vni = try vniField(b)
            try requirePresent(vni)
            let reply = try switchCall(vni, SwitchAPI.Announce(port: try text(b, "name"), mac: try macField(b)))
            return Replies.ok(["vni": .number(Double(vni)), "announced": reply["announced"] ?? .null])
        case "port_stats_request":
            let vni = try vniField(b)
            let name = try text(b, "name")
            try requirePresent(vni)
            let stats = try switchCall(vni, SwitchAPI.Stats())
            guard case .object(var port)? = stats["ports"]?[name] else { throw ProtocolError(.notFound, "no port \(name) in VIOLIN \(vni)") }
            port["vni"] = .number(Double(vni))
            port["name"] = .string(name)
            return Replies.ok(port)
        case "members_request":
            let vni = try vniField(b)
            try requirePresent(vni)
            let peers = lock.withLock { membership.peers(vni) }
            return Replies.ok(["vni": .number(Double(vni)), "members": membersJSON(vni), "peers": .array(peers.map { .string($0) })])
        case "ports_request":
            let list: [JSONValue] = lock.withLock {
                presence.keys.sorted().map { vni in
                    let p = presence[vni]!
                    return ["vni": .number(Double(vni)), "tunnel": .string(p.tunnel), "switch": .string(control(vni)),
                            "pid": .number(Double(p.pid)), "ports": .array(p.ports.keys.sorted().map { .string($0) })]
                }
            }
            return Replies.ok(["violins": .array(list)])
        case "member_join_request", "member_announce_request":
            let vni = try vniField(b)
            let endpoint = try endpointField(b, "endpoint")
            let tunnel = try text(b, "tunnel")
            let key = try keyField(b, "key") ?? ""
            try requirePresent(vni)
            let change = lock.withLock { membership.admit(vni, endpoint: endpoint, tunnel: tunnel, now: Self.now(), key: key) }
            announce(change)
            pushPeers(vni)
            save()
            if request.header.msgType == "member_join_request" {
                let list = lock.withLock { membership.list(vni, myKey: myKey) }.filter { $0.endpoint != endpoint }
                return Replies.ok(["members": .array(list.map {
                    ["endpoint": .string($0.endpoint), "tunnel": .string($0.tunnel), "key": .string($0.key)] })])
            }
            return Replies.ok()
        case "member_leave_request":
            let vni = try vniField(b)
            let endpoint = try endpointField(b, "endpoint")
            let change = lock.withLock { membership.remove(vni, endpoint: endpoint) }
            announce(change)
            if change != nil { pushPeers(vni); save() }
            return Replies.ok()
        case "member_heartbeat_request":
            let endpoint = try endpointField(b, "endpoint")
            let (changes, vnis) = lock.withLock { (membership.heard(endpoint, now: Self.now()), membership.violins) }
            changes.forEach(announce)
            for case .joined(let vni, _) in changes { pushPeers(vni) }
            return Replies.ok(["violins": .array(vnis.map { .number(Double($0)) })])
        default:
            return nil
        }
    }
}

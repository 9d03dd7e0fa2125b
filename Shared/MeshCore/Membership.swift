/// Membership of one host in the switch meshes of its VIOLINs (paper §2.1.2), as pure state:
/// who the members of each VIOLIN are, where their switches' tunnels are, and who is alive.
/// The I/O (requests between hosts, heartbeats) lives in the service; this decides.
public struct Member: Equatable, Sendable, Codable {
    /// The member's mesh control endpoint, e.g. tcp://10.0.0.2:7701: its identity.
    public var endpoint: String
    /// Its switch's tunnel address for this VIOLIN, "a.b.c.d:port".
    public var tunnel: String
    public var lastHeard: Double
    public var alive: Bool
    /// Its mesh's CURVE public key, when meshes talk over CURVE ("" otherwise).
    public var key: String

    public init(endpoint: String, tunnel: String, lastHeard: Double, alive: Bool = true, key: String = "") {
        self.endpoint = endpoint; self.tunnel = tunnel; self.lastHeard = lastHeard; self.alive = alive; self.key = key
    }
}

public enum MembershipChange: Equatable, Sendable {
    case joined(vni: UInt32, member: String)
    case left(vni: UInt32, member: String, reason: String)
}

public struct Membership: Sendable {
    public let me: String
    public let timeout: Double
    /// Per VIOLIN: our own tunnel, and the other members.
    public private(set) var local: [UInt32: String] = [:]
    public private(set) var members: [UInt32: [String: Member]] = [:]

    /// Members one VIOLIN may have here; a newcomer beyond it is refused (`admit` → nil,
    /// `isFull`).
    public let maxMembers: Int
    /// A member silent this long (seconds) is forgotten, not only out of the peer sets: a flood of
    /// fake members does not stay in the heartbeat rounds for ever.
    public let evictAfter: Double

    public init(me: String, timeout: Double = 3, maxMembers: Int = 256, evictAfter: Double? = nil) {
        self.me = me
        self.timeout = timeout
        self.maxMembers = maxMembers
        self.evictAfter = evictAfter ?? max(60, timeout * 20)
    }

    /// Whether `endpoint` would be one member too many in VIOLIN `vni`.
    public func isFull(_ vni: UInt32, adding endpoint: String) -> Bool {
        guard let m = members[vni], m[endpoint] == nil else { return false }
        return m.count >= maxMembers
    }

    public var violins: [UInt32] { local.keys.sorted() }

    /// This host takes part in VIOLIN `vni`, its switch at `tunnel`.
    public mutating func present(_ vni: UInt32, tunnel: String) {
        local[vni] = tunnel
        if members[vni] == nil { members[vni] = [:] }
    }

    /// This host leaves VIOLIN `vni`; returns the members to tell.
    public mutating func absent(_ vni: UInt32) -> [Member] {
        local[vni] = nil
        return (members.removeValue(forKey: vni) ?? [:]).values.sorted { $0.endpoint < $1.endpoint }
    }

    /// A member joined or announced itself (or answered again): it is in, and alive.
    @discardableResult
    public mutating func admit(_ vni: UInt32, endpoint: String, tunnel: String, now: Double, key: String = "") -> MembershipChange? {
        guard endpoint != me, local[vni] != nil, !isFull(vni, adding: endpoint) else { return nil }
        let before = members[vni]?[endpoint]
        members[vni]![endpoint] = Member(endpoint: endpoint, tunnel: tunnel, lastHeard: now, key: key.isEmpty ? (before?.key ?? "") : key)
        if before == nil || before?.alive == false || before?.tunnel != tunnel { return .joined(vni: vni, member: endpoint) }
        return nil
    }

    /// A member left on purpose.
    @discardableResult
    public mutating func remove(_ vni: UInt32, endpoint: String) -> MembershipChange? {
        guard members[vni]?.removeValue(forKey: endpoint) != nil else { return nil }
        return .left(vni: vni, member: endpoint, reason: "left")
    }

    /// A member answered a heartbeat.
    public mutating func heard(_ endpoint: String, now: Double) -> [MembershipChange] {
        var changes: [MembershipChange] = []
        for vni in members.keys.sorted() where members[vni]?[endpoint] != nil {
            let wasAlive = members[vni]![endpoint]!.alive
            members[vni]![endpoint]!.lastHeard = now
            members[vni]![endpoint]!.alive = true
            if !wasAlive { changes.append(.joined(vni: vni, member: endpoint)) }
        }
        return changes
    }

    /// Members silent for longer than the timeout leave every peer set (they stay known, so a
    /// member that answers again is re-admitted).
    public mutating func expire(now: Double) -> [MembershipChange] {
        var changes: [MembershipChange] = []
        for vni in members.keys.sorted() {
            for endpoint in members[vni]!.keys.sorted() {
                let silent = now - members[vni]![endpoint]!.lastHeard
                if members[vni]![endpoint]!.alive && silent > timeout {
                    members[vni]![endpoint]!.alive = false
                    changes.append(.left(vni: vni, member: endpoint, reason: "timeout"))
                }
            }
            // The long silent are forgotten (no longer heartbeated) only while the VIOLIN has a
            // member alive here: a host that hears none of them (its link down, or all the others
            // lost a while) keeps them, so whichever comes back first hears from it and takes it
            // back — forgetting them all would leave it an island no one knows.
            guard members[vni]!.values.contains(where: \.alive) else { continue }
            for endpoint in members[vni]!.keys.sorted() where !members[vni]![endpoint]!.alive
                && now - members[vni]![endpoint]!.lastHeard > evictAfter {
                members[vni]![endpoint] = nil    // already out of the peer sets: forgotten
            }
        }
        return changes
    }

    /// The tunnels our switch for `vni` should peer with: every alive member's.
    public func peers(_ vni: UInt32) -> [String] {
        (members[vni] ?? [:]).values.filter(\.alive).map(\.tunnel).sorted()
    }

    /// The member list handed to a newcomer: us (with `myKey`) and every alive member.
    public func list(_ vni: UInt32, myKey: String = "") -> [Member] {
        var all = (members[vni] ?? [:]).values.filter(\.alive).sorted { $0.endpoint < $1.endpoint }
        if let t = local[vni] { all.insert(Member(endpoint: me, tunnel: t, lastHeard: 0, key: myKey), at: 0) }
        return all
    }

    /// The CURVE key of a member's mesh, if one is known.
    public func key(of endpoint: String) -> String {
        for vni in members.keys.sorted() { if let k = members[vni]?[endpoint]?.key, !k.isEmpty { return k } }
        return ""
    }

    /// The members a restarted mesh saved, taken back with their tunnels and keys, heard now
    /// (they get a member timeout to answer before they leave the peer sets).
    public mutating func restore(_ vni: UInt32, _ saved: [Member], now: Double) {
        for m in saved where m.endpoint != me {
            _ = admit(vni, endpoint: m.endpoint, tunnel: m.tunnel, now: now, key: m.key)
        }
    }

    /// Every member endpoint we should heartbeat, across VIOLINs (alive or not: the silent
    /// ones are how we notice they came back).
    public var contacts: [String] {
        Array(Set(members.values.flatMap(\.keys))).sorted()
    }
}

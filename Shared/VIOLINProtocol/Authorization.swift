/// Who may send what (PROTOCOL.md §7.1). Every key a service accepts has a role; every request
/// type and every event topic lists the roles that may send it. A service checks each
/// request's key (its ZAP `User-Id`) against this table before it reads the body any further;
/// the bus checks each event the same way before it forwards it.

/// The role of a key.
public enum Role: Hashable, Sendable, CustomStringConvertible {
    /// A person running `violin`: everything.
    case `operator`
    /// The policy (the control node's services).
    case control
    /// Administers one domain: its hosts' keys, drains and limits.
    case domainAdmin(String)
    /// One host's mesh, monitor and executor.
    case host(String)

    /// "operator", "control", "domain-admin:<d>" or "host:<id>"; nil for anything else.
    public init?(_ text: String) {
        switch text {
        case "operator": self = .operator
        case "control": self = .control
        default:
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, Role.validName(String(parts[1])) else { return nil }
            switch parts[0] {
            case "domain-admin": self = .domainAdmin(String(parts[1]))
            case "host": self = .host(String(parts[1]))
            default: return nil
            }
        }
    }

    /// A host or domain id as roles name them: 1-64 letters, digits, '.', '_' or '-'.
    public static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }

    public var description: String {
        switch self {
        case .operator: "operator"
        case .control: "control"
        case .domainAdmin(let d): "domain-admin:\(d)"
        case .host(let h): "host:\(h)"
        }
    }

    public var hostID: String? { if case .host(let h) = self { h } else { nil } }
    public var domain: String? { if case .domainAdmin(let d) = self { d } else { nil } }
}

/// Who sent a request or an event, as a service sees it.
public struct Caller: Sendable, Equatable {
    /// The client's CURVE public key; "" when the request came without CURVE (an ipc
    /// endpoint, or a service that runs open).
    public let key: String
    /// The key's roles: one, or every role for the node's own key and for a caller without
    /// CURVE (`trusted`).
    public let roles: [Role]
    /// The node's own key, or no CURVE at all: a caller the service cannot tell apart from itself.
    public let trusted: Bool

    public init(key: String, roles: [Role], trusted: Bool = false) { self.key = key; self.roles = roles; self.trusted = trusted }

    public static let local = Caller(key: "", roles: [], trusted: true)

    /// What the ledger records as who asked: the role (and a prefix of the key).
    public var audit: String {
        if trusted && key.isEmpty { return "local" }
        let who = trusted ? "node" : roles.map(\.description).joined(separator: ",")
        return key.isEmpty ? who : "\(who) (\(key.prefix(8))…)"
    }

    public var isOperator: Bool { trusted || roles.contains(.operator) }
    public var isControl: Bool { trusted || roles.contains(.control) }
    /// The domains this caller administers (empty for anyone else).
    public var adminDomains: [String] { roles.compactMap(\.domain) }
    /// The hosts this caller speaks for.
    public var hostIDs: [String] { roles.compactMap(\.hostID) }
}

/// One entry of a request's or a topic's list of who may send it.
public enum Grant: String, Sendable, CaseIterable {
    /// Any accepted key.
    case anyone = "any"
    case `operator`
    case control
    /// A `domain-admin:<d>`; the service then checks that the request concerns domain `d`.
    case domainAdmin = "domain-admin"
    /// `host:<id>` where `<id>` is the host the service runs on (for an event: the host the
    /// event's sender runs on).
    case hostSelf = "host:self"
    /// Any `host:<id>`; the service then checks what it concerns (e.g. a mesh: only a member).
    case anyHost = "host:*"
}

public enum Authorization {
    /// Requests by service (`violin-switch` is not here: its socket is ipc, local to its mesh).
    public static let requests: [String: [String: Set<Grant>]] = [
        "admin": [
            "ping_request": [.anyone], "status_request": [.anyone], "metrics_request": [.anyone],
        ],
        "executor": [
            "create_vm_request": [.operator, .control], "destroy_vm_request": [.operator, .control],
            "stop_vm_request": [.operator, .control], "start_vm_request": [.operator, .control],
            "migrate_request": [.operator, .control], "migrate_violin_request": [.operator, .control],
            "cancel_request": [.operator, .control],
            "vms_request": [.operator, .control, .domainAdmin, .hostSelf],
            "host_info_request": [.operator, .control, .domainAdmin, .anyHost],
            "job_request": [.operator, .control, .domainAdmin, .hostSelf],
            "jobs_request": [.operator, .control, .domainAdmin, .hostSelf],
            "images_request": [.operator, .control, .domainAdmin],
            "console_open_request": [.operator], "console_input_request": [.operator], "console_close_request": [.operator],
        ],
        "mesh": [
            "join_violin_request": [.operator, .hostSelf], "leave_violin_request": [.operator, .hostSelf],
            // From another host: only a member of that VIOLIN (the migration's source).
            "add_port_request": [.operator, .hostSelf, .anyHost], "remove_port_request": [.operator, .hostSelf, .anyHost],
            "announce_request": [.operator, .hostSelf, .anyHost],
            "port_stats_request": [.operator, .control, .domainAdmin, .hostSelf, .anyHost],
            "set_port_rate_request": [.operator, .control],
            "members_request": [.operator, .control, .domainAdmin, .hostSelf],
            "ports_request": [.operator, .control, .domainAdmin, .hostSelf],
            // Only from the member named in the request (or the host it concerns).
            "member_join_request": [.anyHost], "member_announce_request": [.anyHost],
            "member_leave_request": [.anyHost], "member_heartbeat_request": [.anyHost],
        ],
        "monitor": [
            "samples_request": [.operator, .control, .domainAdmin, .hostSelf],
            "set_balloon_request": [.operator, .control], "set_cpu_weight_request": [.operator, .control],
        ],
        "policy": [
            "register_domain_request": [.operator, .domainAdmin, .anyHost],
            // A host registers itself only; a domain admin only into its domain.
            "register_host_request": [.operator, .domainAdmin, .anyHost],
            "remove_host_request": [.operator, .domainAdmin],
            "drain_host_request": [.operator, .domainAdmin],
            "host_request": [.operator, .control, .anyHost],
            "create_violin_request": [.operator], "destroy_violin_request": [.operator],
            "create_environment_request": [.operator], "destroy_environment_request": [.operator],
            "apply_environment_request": [.operator],
            "set_mode_request": [.operator], "evaluate_request": [.operator],
            "explain_request": [.operator, .domainAdmin], "traffic_request": [.operator, .domainAdmin], "demand_hint_request": [.operator, .domainAdmin], "decisions_request": [.operator, .domainAdmin],
            "inventory_request": [.operator, .domainAdmin],
            // A domain admin: only keys of its own domain's hosts.
            "keys_request": [.operator, .domainAdmin],
            "host_keys_request": [.operator, .control, .anyHost],
            "accept_key_request": [.operator, .domainAdmin], "reject_key_request": [.operator, .domainAdmin],
            "revoke_key_request": [.operator, .domainAdmin],
        ],
    ]

    /// Events by the service that publishes them (the topic's first part): a host's services
    /// publish only as that host (the header's `sender` is `<service>@<host>`), the control
    /// node's only as control.
    public static let events: [String: Set<Grant>] = [
        "executor": [.hostSelf], "monitor": [.hostSelf], "mesh": [.hostSelf],
        "policy": [.control], "bus": [.control],
    ]

    /// The grants of `msgType` at `service`: the admin table's, then the service's; nil for a
    /// request the table does not list (refused).
    public static func grants(service: String, msgType: String) -> Set<Grant>? {
        requests["admin"]![msgType] ?? requests[service]?[msgType]
    }

    /// Whether `caller` may send something granted to `grants`, at a service on host `host`
    /// ("" on the control node).
    public static func allows(_ caller: Caller, _ grants: Set<Grant>, host: String) -> Bool {
        if caller.trusted { return true }
        return caller.roles.contains { role in
            grants.contains { grant in
                switch (grant, role) {
                case (.anyone, _), (.operator, .operator), (.control, .control), (.domainAdmin, .domainAdmin), (.anyHost, .host): true
                case (.hostSelf, .host(let h)): !host.isEmpty && h == host
                default: false
                }
            }
        }
    }

    /// Whether `caller` may publish `topic` with header `sender` (`<service>@<node>`): the
    /// topic's service must be in `events`, and a host's key may publish only as itself.
    public static func allowsEvent(_ caller: Caller, topic: String, sender: String) -> Bool {
        if caller.trusted { return true }
        let service = topic.split(separator: ".", maxSplits: 1).first.map(String.init) ?? ""
        guard let grants = events[service], sender.hasPrefix(service + "@") else { return false }
        let node = String(sender.dropFirst(service.count + 1))
        return allows(caller, grants, host: node)
    }
}

/// Where a migration may go (PROTOCOL.md §8.4 `register_host_request`): a host's libvirt URI
/// and mesh endpoint are on its executor's address, the URI's transport is TLS, TCP or SSH
/// (never `qemu+ext`, `qemu+unix` or anything that runs a program), with no query (libvirt's
/// `?command=`, `?socket=`, `?keyfile=` name local programs and files).
public enum Destinations {
    /// The host part of `tcp://HOST:PORT` (nil for anything else).
    public static func host(ofEndpoint e: String) -> String? {
        guard e.hasPrefix("tcp://") else { return nil }
        let rest = e.dropFirst(6)
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let h = String(rest[..<colon])
        return h.isEmpty || h.contains("/") || h.contains("@") ? nil : h
    }

    /// nil when `uri` is an allowed migration URI to `address`; else why not.
    public static func checkMigrationURI(_ uri: String, address: String) -> String? {
        let schemes = ["qemu+tls://", "qemu+tcp://", "qemu+ssh://"]
        guard let scheme = schemes.first(where: { uri.hasPrefix($0) }) else {
            return "migration_uri must be qemu+tls://, qemu+tcp:// or qemu+ssh:// (got \(uri.prefix(40)))"
        }
        guard !uri.contains("?"), !uri.contains("#") else { return "migration_uri may not carry a query or fragment" }
        var authority = uri.dropFirst(scheme.count)
        guard authority.hasSuffix("/system") else { return "migration_uri must end in /system" }
        authority = authority.dropLast("/system".count)
        if scheme == "qemu+ssh://", let at = authority.firstIndex(of: "@") {
            let user = authority[..<at]
            guard !user.isEmpty, user.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else { return "migration_uri has a bad user name" }
            authority = authority[authority.index(after: at)...]
        }
        var host = Substring(authority)
        if let colon = authority.lastIndex(of: ":") {
            guard let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port) else { return "migration_uri has a bad port" }
            host = authority[..<colon]
        }
        guard host == address else { return "migration_uri names \(host), not the host's address \(address)" }
        return nil
    }

    /// nil when a host's registered links hang together; else why not.
    public static func check(executor: String, mesh: String, migrationURI: String) -> String? {
        guard let address = host(ofEndpoint: executor) else { return "executor must be tcp://ADDRESS:PORT" }
        guard host(ofEndpoint: mesh) == address else { return "mesh must be tcp://\(address):PORT, on the executor's address" }
        return checkMigrationURI(migrationURI, address: address)
    }
}

/// The control node's key table and host records (PROTOCOL.md §7.1, §8.4): enrolment
/// (`violin keys`) and where a migration may go.
extension PolicyAPI {
    static let keyRequests: [any RequestBody.Type] = [HostRecord.self, Keys.self, AcceptKey.self, RejectKey.self, RevokeKey.self, HostKeys.self]

    /// The accepted keys and their roles, as a host node keeps its own key table from them:
    /// hosts learn each other's (and the operators') keys from the control node, never from a peer.
    public struct HostKeys: EmptyRequest {
        public static let msgType = "host_keys_request"
        public typealias Reply = HostKeysReply
        public static let idempotent = true
        public init() {}
    }

    public struct HostKeysReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("accepted", .list(.object))]
        public var accepted: [KeysReply.Accepted]
        public init(accepted: [KeysReply.Accepted]) { self.accepted = accepted }
    }

    /// One host's record in the inventory: where its executor, mesh and libvirt are, and its
    /// key. An executor takes a migration's destination from here, never from the request.
    public struct HostRecord: RequestBody {
        public static let msgType = "host_request"
        public static let fields: [FieldSpec] = [.required("id", .text)]
        public typealias Reply = HostRecordReply
        public static let idempotent = true
        public static let example = HostRecord(id: "h2")
        public var id: String
        public init(id: String) { self.id = id }
        public init(_ b: Body) { id = b.text("id")! }
        public var json: JSONValue { ["id": .string(id)] }
    }

    public struct HostRecordReply: ReplyBody {
        public static let fields: [FieldSpec] = [
            .required("id", .text), .required("domain", .text), .required("executor", .string), .required("mesh", .string),
            .required("migration_uri", .string), .required("key", .string), .required("usable", .flag), .optional("why", .string),
        ]
        public var id: String, domain: String
        public var executor: String, mesh: String, migrationURI: String, key: String
        /// False while the host drains, or once its key is revoked (with CURVE): no migration goes there.
        public var usable: Bool
        public var why: String?
        public init(id: String, domain: String, executor: String, mesh: String, migrationURI: String, key: String, usable: Bool, why: String? = nil) {
            self.id = id; self.domain = domain; self.executor = executor; self.mesh = mesh; self.migrationURI = migrationURI
            self.key = key; self.usable = usable; self.why = why
        }
        enum CodingKeys: String, CodingKey { case id, domain, executor, mesh, migrationURI = "migration_uri", key, usable, why }
    }

    /// The key table (accepted keys and their roles) and the keys waiting: pending (refused at
    /// their first contact) and rejected.
    public struct Keys: EmptyRequest {
        public static let msgType = "keys_request"
        public typealias Reply = KeysReply
        public static let idempotent = true
        public init() {}
    }

    public struct KeysReply: ReplyBody {
        public struct Accepted: Codable, Sendable, Equatable {
            public var key: String, roles: [String]
            public init(key: String, roles: [String]) { self.key = key; self.roles = roles }
        }
        public struct Waiting: Codable, Sendable, Equatable {
            public var key: String, address: String, firstSeen: String, attempts: Int
            public init(key: String, address: String, firstSeen: String, attempts: Int) {
                self.key = key; self.address = address; self.firstSeen = firstSeen; self.attempts = attempts
            }
            enum CodingKeys: String, CodingKey { case key, address, firstSeen = "first_seen", attempts }
        }
        public static let fields: [FieldSpec] = [
            .required("accepted", .list(.object)), .required("pending", .list(.object)), .required("rejected", .list(.object)),
        ]
        public var accepted: [Accepted], pending: [Waiting], rejected: [Waiting]
        public init(accepted: [Accepted], pending: [Waiting], rejected: [Waiting]) {
            self.accepted = accepted; self.pending = pending; self.rejected = rejected
        }
    }

    /// Accepts a key (pending or not) with a role: written to the control node's key table,
    /// served from the next message on.
    public struct AcceptKey: RequestBody {
        public static let msgType = "accept_key_request"
        public static let fields: [FieldSpec] = [.required("key", .curveKey), .required("role", .text)]
        public typealias Reply = KeyReply
        public static let idempotent = true
        public static let example = AcceptKey(key: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", role: "host:h4")
        public var key: String, role: String
        public init(key: String, role: String) { self.key = key; self.role = role }
        public init(_ b: Body) throws(ProtocolError) {
            key = b.text("key") ?? ""; role = b.text("role")!
            guard !key.isEmpty else { throw ProtocolError(.invalidBody, "key must be a CURVE public key (40 Z85 characters)") }
            guard Role(role) != nil else { throw ProtocolError(.invalidBody, "role must be operator, control, domain-admin:<d> or host:<id>") }
        }
        public var json: JSONValue { ["key": .string(key), "role": .string(role)] }
    }

    /// A pending key refused for good: it is not listed as pending again.
    public struct RejectKey: KeyRequest {
        public static let msgType = "reject_key_request"
        public var key: String
        public init(key: String) { self.key = key }
    }

    /// An accepted key removed from the table: refused at its next message; a host whose key
    /// it was gets no more migrations.
    public struct RevokeKey: KeyRequest {
        public static let msgType = "revoke_key_request"
        public var key: String
        public init(key: String) { self.key = key }
    }

    public struct KeyReply: ReplyBody {
        public static let fields: [FieldSpec] = [.required("key", .text), .required("state", .choice(["accepted", "rejected", "revoked"]))]
        public var key: String, state: String
        public init(key: String, state: String) { self.key = key; self.state = state }
    }
}

/// A request whose body is one key (`reject_key_request`, `revoke_key_request`).
public protocol KeyRequest: RequestBody where Reply == PolicyAPI.KeyReply {
    var key: String { get }
    init(key: String)
}

extension KeyRequest {
    public static var fields: [FieldSpec] { [.required("key", .curveKey)] }
    public static var idempotent: Bool { true }
    public static var example: Self { Self(key: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7") }
    public init(_ b: Body) throws(ProtocolError) {
        guard let key = b.text("key"), !key.isEmpty else {
            throw ProtocolError(.invalidBody, "key must be a CURVE public key (40 Z85 characters)")
        }
        self.init(key: key)
    }
    public var json: JSONValue { ["key": .string(key)] }
}

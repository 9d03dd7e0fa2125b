import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// `violin keys ...`: enrolment on the control node (PROTOCOL.md §7.1). A host's first contact
/// leaves its key pending; an operator (or its domain's admin) accepts it with a role.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "The control node's keys: list them, accept a pending one with a role, reject or revoke one.",
        subcommands: [List.self, Accept.self, Reject.self, Revoke.self])

    struct Target: ParsableArguments {
        @Option(help: "The control node's address.") var control = "127.0.0.1"
        @OptionGroup var connection: ConnectionOptions
        var endpoint: String { "tcp://\(control):\(ServicePorts.policy)" }
    }

    /// A key given as its 40 characters, or as a `.pub` / key-pair file.
    static func key(_ text: String) throws -> String {
        if CurveKeyPair.isValidKey(text) { return text }
        if let k = try? KeyFiles.readPublicKey(text) { return k }
        throw fail("\(text) is neither a CURVE public key nor a file holding one", code: Exit.usage)
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accepted keys with their roles; pending and rejected keys with where they came from.")
        @OptionGroup var target: Target
        @Flag(help: "Print the reply as JSON.") var json = false
        func run() throws {
            try request(target.connection, to: target.endpoint, PolicyAPI.Keys()) { body in
                if json { printJSON(body); return }
                guard let reply = try? PolicyAPI.KeysReply.decode(body) else { printJSON(body); return }
                print("STATE     KEY                                       ROLE / FROM")
                for a in reply.accepted { print("accepted  \(a.key)  \(a.roles.joined(separator: ","))") }
                for p in reply.pending { print("pending   \(p.key)  \(p.address) since \(p.firstSeen), \(p.attempts) attempt(s)") }
                for r in reply.rejected { print("rejected  \(r.key)  \(r.address)") }
            }
        }
    }

    struct Accept: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept a key with a role: operator, control, domain-admin:<d> or host:<id>.")
        @Argument(help: "The public key (40 characters) or a .pub file.") var key: String
        @Option(help: "Its role.") var role: String
        @OptionGroup var target: Target
        func validate() throws {
            guard Role(role) != nil else { throw ValidationError("--role: operator, control, domain-admin:<d> or host:<id>") }
        }
        func run() throws {
            let k = try KeysCommand.key(key)
            try request(target.connection, to: target.endpoint, PolicyAPI.AcceptKey(key: k, role: role)) { _ in print("accepted \(k) as \(role)") }
        }
    }

    /// The key a command acts on, and where the control node is.
    struct KeyTarget: ParsableArguments {
        @Argument(help: "The public key (40 characters) or a .pub file.") var key: String
        @OptionGroup var target: Target

        /// Sends the key-only request `R` for it and prints "<verb> <key>".
        func send<R: KeyRequest>(_: R.Type, _ verb: String) throws {
            let k = try KeysCommand.key(key)
            try request(target.connection, to: target.endpoint, R(key: k)) { _ in print("\(verb) \(k)") }
        }
    }

    struct Reject: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reject a pending key: it is not listed again.")
        @OptionGroup var key: KeyTarget
        func run() throws { try key.send(PolicyAPI.RejectKey.self, "rejected") }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an accepted key: refused at its next message; no migration goes to or from its host.")
        @OptionGroup var key: KeyTarget
        func run() throws { try key.send(PolicyAPI.RevokeKey.self, "revoked") }
    }
}

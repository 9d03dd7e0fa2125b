import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol

/// `violin policy ...`: what the adaptation manager decided and why.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Inspect violin-policy: its decisions, scores and inventory; set its mode.",
        subcommands: [Decisions.self, Explain.self, Inventory.self, SetMode.self])

    struct Target: ParsableArguments {
        @Option(help: "The policy's endpoint.") var to = "tcp://127.0.0.1:\(ServicePorts.policy)"
        @Flag(help: "Print the reply as JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions
    }

    struct Decisions: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The decision ledger, newest first.")
        @OptionGroup var target: Target
        @Option(help: "How many.") var limit = 20
        @Flag(help: "Also the audit trail: each change of state asked for, and by which key.") var audit = false
        func run() throws {
            try request(target.connection, to: target.to, PolicyAPI.Decisions(limit: limit, audit: audit)) { body in
                if target.json { printJSON(body); return }
                guard case .array(let list)? = body["decisions"] else { return }
                for d in list {
                    let id = d["id"]?.intValue ?? 0
                    print("#\(id) \(d["time"]?.stringValue ?? "") \(d["kind"]?.stringValue ?? "") \(JSONText.string(d["decision"] ?? .null))")
                    print("    mode \(d["mode"]?.stringValue ?? "")  outcome \(d["outcome"]?.stringValue ?? "")")
                    print("    because \(d["reason"]?.stringValue ?? "")")
                    if let who = d["asked_by"]?.stringValue, !who.isEmpty { print("    asked by \(who)") }
                    if let effect = d["effect"]?.stringValue, !effect.isEmpty { print("    effect \(effect)") }
                }
            }
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Scores per host and their deviation, as JSON.")
        @OptionGroup var target: Target
        func run() throws { try request(target.connection, to: target.to, PolicyAPI.Explain()) }
    }

    /// `violin policy mode automatic|recommend`.
    struct SetMode: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mode", abstract: "Let the policy act on its decisions (automatic) or only record them (recommend).")
        @Argument(help: "automatic or recommend.") var mode: PolicyAPI.Mode
        @OptionGroup var target: Target
        func run() throws {
            try request(target.connection, to: target.to, PolicyAPI.SetMode(mode: mode)) { body in
                if target.json { printJSON(body) } else { print("mode: \(body["mode"]?.stringValue ?? "?")") }
            }
        }
    }

    struct Inventory: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Domains, hosts, VIOLINs, VMs, mode, as JSON.")
        @OptionGroup var target: Target
        func run() throws { try request(target.connection, to: target.to, PolicyAPI.Inventory()) }
    }
}

extension PolicyAPI.Mode: ExpressibleByArgument {}

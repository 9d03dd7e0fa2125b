import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol

/// `violin switch ...`: read and change a running violin-switch through its control socket.
struct SwitchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switch", abstract: "Inspect a violin-switch (like ovs-appctl fdb/show).",
        subcommands: [Fdb.self, Stats.self, Ports.self, Rate.self])

    struct Target: ParsableArguments {
        @Option(help: "The switch's control endpoint (default: ipc:///run/violin/switch-<vni>.sock).") var to: String?
        @Option(help: "The VIOLIN's id, to find the default control endpoint.") var vni: Int?
        @Flag(help: "Print the reply as JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func endpoint() throws -> String {
            if let to { return to }
            guard let vni else { throw fail("give --to ENDPOINT or --vni N", code: Exit.usage) }
            return "ipc://\(PrivateDirectory.root)/switch-\(vni).sock"
        }
    }

    struct Fdb: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The MAC table: address, where, age.")
        @OptionGroup var target: Target
        func run() throws {
            try request(target.connection, to: try target.endpoint(), SwitchAPI.FDB()) { body in
                if target.json { printJSON(body); return }
                print(" where                  MAC                age  static")
                var entries: [JSONValue] = []
                if case .array(let list)? = body["entries"] { entries = list }
                for e in entries {
                    let place = e["port"]?.stringValue.map { "port \($0)" } ?? "peer \(e["peer"]?.stringValue ?? "?")"
                    let age = e["age_s"]?.numberValue ?? 0
                    print(" \(place.padding(toLength: 22, withPad: " ", startingAt: 0)) \(e["mac"]?.stringValue ?? "?")  \(String(format: "%5.1f", age))  \(e["static"] == .bool(true) ? "yes" : "")")
                }
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Frame, drop and MAC table counters, as JSON.")
        @OptionGroup var target: Target
        func run() throws { try request(target.connection, to: try target.endpoint(), SwitchAPI.Stats()) }
    }

    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The switch's ports, as JSON.")
        @OptionGroup var target: Target
        func run() throws { try request(target.connection, to: try target.endpoint(), SwitchAPI.Ports()) }
    }

    struct Rate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cap what a port's VM sends (Mbit/s; 0 lifts the cap). Through the mesh, with `violin mesh rate`, the cap outlives a switch restart.")
        @Argument(help: "The port's name.") var port: String
        @Argument(help: "Mbit/s, 0-100000 (0: no cap).") var mbit: Double
        @Option(help: "The bucket's size in KiB, 16-65536 (default: 20 ms at the rate, at least 64).") var burstKb: Int?
        @OptionGroup var target: Target
        func run() throws {
            try request(target.connection, to: try target.endpoint(), SwitchAPI.SetPortRate(port: port, mbitS: mbit, burstKB: burstKb))
        }
    }
}

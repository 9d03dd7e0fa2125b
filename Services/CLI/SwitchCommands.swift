import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol

/// `violin switch ...`: read and change a running violin-switch through its control socket.
struct SwitchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switch", abstract: "Inspect a violin-switch (like ovs-appctl fdb/show).",
        subcommands: [Fdb.self, Stats.self, Ports.self, Rate.self, TraceFrame.self])

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
        static let configuration = CommandConfiguration(abstract: "Frame, drop and MAC table counters, as JSON (--json is the same).")
        @OptionGroup var target: Target
        func run() throws { try request(target.connection, to: try target.endpoint(), SwitchAPI.Stats()) }
    }

    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The switch's ports, as JSON (--json is the same).")
        @OptionGroup var target: Target
        func run() throws { try request(target.connection, to: try target.endpoint(), SwitchAPI.Ports()) }
    }

    /// `violin switch trace`: what the switch would do with a frame, and why (like `ovs-appctl ofproto/trace`).
    struct TraceFrame: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "trace", abstract: "What the switch would do with a frame, and why: where it learned the destination, the flood rule, the peer chosen, or the drop reason. Nothing is sent or learned.")
        @Option(name: .customLong("in"), help: "Where the frame comes in: a port's name, or a peer's address (a.b.c.d:port).") var entry: String
        @Option(help: "The frame's source MAC.") var src: String
        @Option(help: "The frame's destination MAC (ff:ff:ff:ff:ff:ff: broadcast).") var dst: String
        @Option(help: "For a frame from a peer: the VNI of its VXLAN header (default: the switch's).") var frameVni: Int?
        @Option(help: "The frame's ethertype, e.g. 0x0800 (shown; no rule reads it).") var ethertype: String?
        @OptionGroup var target: Target
        func run() throws {
            var type: Int?
            if let ethertype {
                let digits = ethertype.hasPrefix("0x") ? String(ethertype.dropFirst(2)) : ethertype
                guard let t = Int(digits, radix: ethertype.hasPrefix("0x") ? 16 : 10), (0...0xFFFF).contains(t) else {
                    throw fail("--ethertype must be 0-65535 (0x0000-0xffff)", code: Exit.usage)
                }
                type = t
            }
            if let frameVni, !(1...16_777_215).contains(frameVni) { throw fail("--frame-vni must be 1-16777215", code: Exit.usage) }
            // An address is a peer; anything else names a port.
            let at: SwitchAPI.AddStatic.Location = entry.split(separator: ".").count == 4 ? .peer(entry) : .port(entry)
            let r = SwitchAPI.Trace(at: at, src: src, dst: dst, vni: frameVni.map { UInt32($0) }, ethertype: type)
            try request(target.connection, to: try target.endpoint(), r) { body in
                if target.json { printJSON(body); return }
                for line in body["why"]?.items ?? [] { print("  \(line.stringValue ?? "")") }
                let action = body["action"]?.stringValue ?? "?"
                switch action {
                case "port": print("-> port \(body["port"]?.stringValue ?? "?")")
                case "peer": print("-> peer \(body["peer"]?.stringValue ?? "?")")
                case "grace": print("-> peer \(body["peer"]?.stringValue ?? "?") (grace forwarding)")
                case "flood":
                    let ports = (body["ports"]?.items ?? []).compactMap(\.stringValue), peers = (body["peers"]?.items ?? []).compactMap(\.stringValue)
                    print("-> flood: ports \(ports.isEmpty ? "none" : ports.joined(separator: ", ")); peers \(peers.isEmpty ? "none" : peers.joined(separator: ", "))")
                default: print("-> drop (\(body["reason"]?.stringValue ?? "?"))")
                }
            }
        }
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

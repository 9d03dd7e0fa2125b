import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol

/// `violin mesh ...`: what a host's violin-mesh knows.
struct MeshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh", abstract: "Inspect a host's violin-mesh.", subcommands: [Members.self, Ports.self, Rate.self])

    struct Members: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The members of a VIOLIN's switch mesh, as this host sees them.")
        @Argument(help: "The VIOLIN's id (VNI).") var vni: Int
        @Option(help: "The mesh's endpoint.") var to = "tcp://127.0.0.1:\(ServicePorts.mesh)"
        @Flag(help: "Print the reply as JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            guard let id = UInt32(exactly: vni), (1...0xFF_FFFF).contains(id) else { throw fail("the VNI must be 1-16777215", code: Exit.usage) }
            try request(connection, to: to, MeshAPI.Members(vni: id)) { body in
                if json { printJSON(body); return }
                print(" member                               tunnel                 alive")
                if case .array(let list)? = body["members"] {
                    for m in list {
                        let e = (m["endpoint"]?.stringValue ?? "?").padding(toLength: 36, withPad: " ", startingAt: 0)
                        let t = (m["tunnel"]?.stringValue ?? "?").padding(toLength: 22, withPad: " ", startingAt: 0)
                        print(" \(e) \(t) \(m["alive"] == .bool(true) ? "yes" : "no")")
                    }
                }
            }
        }
    }

    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The VIOLINs present on the host, their switches and ports, as JSON.")
        @Option(help: "The mesh's endpoint.") var to = "tcp://127.0.0.1:\(ServicePorts.mesh)"
        @OptionGroup var connection: ConnectionOptions
        func run() throws { try request(connection, to: to, MeshAPI.Ports()) }
    }

    struct Rate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cap what a VM sends through its port (Mbit/s; 0 lifts the cap).")
        @Argument(help: "The VIOLIN's id (VNI).") var vni: Int
        @Argument(help: "The port's name.") var port: String
        @Argument(help: "Mbit/s, 0-100000 (0: no cap).") var mbit: Double
        @Option(help: "The bucket's size in KiB, 16-65536 (default: 20 ms at the rate, at least 64).") var burstKb: Int?
        @Option(help: "The mesh's endpoint.") var to = "tcp://127.0.0.1:\(ServicePorts.mesh)"
        @OptionGroup var connection: ConnectionOptions
        func run() throws {
            guard let id = UInt32(exactly: vni), (1...0xFF_FFFF).contains(id) else { throw fail("the VNI must be 1-16777215", code: Exit.usage) }
            try request(connection, to: to, MeshAPI.SetPortRate(vni: id, name: port, mbitS: mbit, burstKB: burstKb))
        }
    }
}

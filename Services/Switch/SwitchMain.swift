import ArgumentParser
import Foundation
import ServiceKit
import SwitchCore
import SwitchDataPlane
import ServiceLifecycle
import VIOLINProtocol

/// violin-switch: the data plane of one VIOLIN on one host. Forwards Ethernet frames between
/// its local ports (TAP devices, QEMU UDP sockets) and the same VIOLIN's switches on other
/// hosts (VXLAN over UDP). Stays in the foreground; its control socket speaks PROTOCOL.md §8.1.
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-switch", abstract: "VIOLIN data plane: one per VIOLIN per host.",
        discussion: """
            Standalone: violin-switch --vni 42 --tunnel 10.0.0.1:4789 --peer 10.0.0.2:4789 --tap vtap0
            The control socket (--listen, default ipc:///tmp/violin-switch-<vni>.sock) changes ports,
            peers and static entries at run time; `violin switch fdb|stats|ports --to ENDPOINT` reads it.
            """)

    @Option(help: "The VIOLIN's id: the VXLAN network identifier (1-16777215).") var vni: UInt32
    @Option(help: "Underlay address:port of the tunnel socket.") var tunnel = "0.0.0.0:4789"
    @Option(help: "A peer switch's address:port (repeatable).") var peer: [String] = []
    @Option(help: "Create a TAP port with this name (repeatable).") var tap: [String] = []
    @Option(help: "A QEMU UDP port: NAME=LOCAL_ADDR:PORT,REMOTE_ADDR:PORT (repeatable).") var udpPort: [String] = []
    @Option(help: "A static MAC entry: MAC=PORTNAME or MAC=PEER_ADDR:PORT (repeatable).") var `static`: [String] = []
    @Option(help: "MTU of the TAP ports.") var mtu = 1450
    @Option(help: "Most MAC addresses learned.") var maxMacs = 8192
    @Option(help: "Seconds an idle MAC entry lives.") var ageing = 300.0
    @Option(help: "Frames per batch.") var batch = 64
    @Option(help: "Microseconds to keep polling after traffic before sleeping (0: never spin).") var spinUs = 0
    @Option(help: "Scheduling policy of the forwarding thread: batch (SCHED_BATCH: more TCP throughput here, fewer small packets per second) or normal.")
    var sched = "batch"
    @Option(help: "Nice value of the forwarding thread, 0-19: above 0 the host's own work wins the CPU when it is short, and a flood is dropped at the port instead of at the receiver.")
    var nice: Int32 = 10
    @Option(help: "Time slice of the forwarding thread in microseconds, 100-100000 (0: the kernel's). On a host whose cores are busy, '--sched normal --nice 0 --slice-us 100' keeps round trips short (Linux 6.12+).")
    var sliceUs: UInt32 = 0
    @Flag(help: "Turn off the offloads (TAP TSO with virtio_net_hdr, UDP GSO and GRO with coalescing).")
    var noOffload = false
    @OptionGroup var options: ServiceOptions

    func validate() throws {
        guard (1...VXLAN.maxVNI).contains(vni) else { throw ValidationError("--vni must be 1-16777215") }
        guard PeerAddress(tunnel, allowAnyPort: true) != nil else { throw ValidationError("--tunnel must be a.b.c.d:port") }
        for p in peer where PeerAddress(p) == nil { throw ValidationError("--peer \(p) must be a.b.c.d[:port]") }
        guard (68...65_535).contains(mtu) else { throw ValidationError("--mtu must be 68-65535") }
        guard sched == "batch" || sched == "normal" else { throw ValidationError("--sched must be batch or normal") }
        guard (0...19).contains(nice) else { throw ValidationError("--nice must be 0-19, not \(nice)") }
        guard sliceUs == 0 || (100...100_000).contains(sliceUs) else {
            throw ValidationError("--slice-us must be 0 or 100-100000, not \(sliceUs)")
        }
        guard maxMacs > 0, ageing > 0, (1...1024).contains(batch) else {
            throw ValidationError("--max-macs, --ageing must be positive and --batch 1-1024")
        }
    }

    func run() async throws {
        let description = ServiceDescription(name: "switch", defaultListen: "ipc:///tmp/violin-switch-\(vni).sock")
        var opts = options
        if opts.bus == nil && ProcessInfo.processInfo.environment["VIOLIN_BUS"] == nil { opts.bus = "none" }
        let settings = ServiceMain.settings(description, opts)
        let logger = ServiceMain.logger(settings)
        let socket: TunnelSocket
        do { socket = try TunnelSocket(bind: PeerAddress(tunnel, allowAnyPort: true)!, gro: !noOffload) } catch {
            FileHandle.standardError.write(Data("violin-switch: \(error)\n".utf8))
            throw ExitCode(1)
        }
        var fo = Forwarder.Options(vni: vni)
        fo.batch = batch
        fo.maxMACs = maxMacs
        fo.ageingMs = UInt64(ageing * 1000)
        fo.offload = !noOffload
        fo.spinMicros = max(0, spinUs)
        fo.batchScheduling = sched == "batch"
        fo.niceness = nice
        fo.sliceMicros = sliceUs
        let forwarder = Forwarder(options: fo, tunnel: socket)
        let controller = SwitchController(forwarder: forwarder, defaultMTU: mtu)
        do {
            try configure(controller)
        } catch {
            FileHandle.standardError.write(Data("violin-switch: \(error)\n".utf8))
            throw ExitCode(1)
        }
        forwarder.start()
        if let error = forwarder.schedulingError() {
            logger.warning("forwarding thread runs without its scheduling", metadata: ["sched": "\(sched)", "nice": "\(nice)", "slice-us": "\(sliceUs)", "error": "\(error)"])
        }
        let handler = SwitchHandler(controller: controller)
        let runtime = try ServiceRuntime(settings: settings, logger: logger, handler: handler)
        controller.emit = { [weak runtime] event in runtime?.publish(type(of: event).event, event.json) }
        logger.info("switch up", metadata: ["vni": "\(vni)", "tunnel": "\(socket.local)",
                                            "ports": "\(controller.portList.map(\.name))", "peers": "\(controller.peerList)"])
        await ServiceMain.run(runtime, also: [ShutdownHook { forwarder.stop() }])
    }

    func configure(_ c: SwitchController) throws {
        c.setPeers(peer.compactMap { PeerAddress($0) })
        for name in tap { _ = try c.addTAP(name) }
        for spec in udpPort {
            let parts = spec.split(separator: "=", maxSplits: 1)
            let ends = parts.count == 2 ? parts[1].split(separator: ",") : []
            guard ends.count == 2, let local = PeerAddress(String(ends[0]), defaultPort: 0, allowAnyPort: true),
                  let remote = PeerAddress(String(ends[1])) else {
                throw ValidationError("--udp-port \(spec): expected NAME=LOCAL:PORT,REMOTE:PORT")
            }
            _ = try c.addUDP(String(parts[0]), local: local, remote: remote)
        }
        for spec in `static` {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--static \(spec): expected MAC=PORT or MAC=ADDR:PORT") }
            guard let mac = MACAddress(parts[0]), mac.isUnicast else { throw ValidationError("--static \(spec): \(parts[0]) is not a unicast MAC") }
            let at: SwitchAPI.AddStatic.Location = PeerAddress(parts[1]) != nil && parts[1].contains(".") ? .peer(parts[1]) : .port(parts[1])
            _ = try c.requests.call(SwitchAPI.AddStatic(mac: mac, at: at))
        }
    }
}

final class SwitchHandler: RequestHandler {
    let controller: SwitchController
    init(controller: SwitchController) { self.controller = controller }
    func handle(_ request: Message) throws(ProtocolError) -> JSONValue? { try controller.handle(request) }
    var state: JSONValue {
        ["vni": .number(Double(controller.forwarder.options.vni)),
         "tunnel": .string(controller.forwarder.tunnelAddress.description),
         "ports": .array(controller.portList.map { .string($0.name) }),
         "peers": .array(controller.peerList.map { .string($0.description) })]
    }
}


import ArgumentParser
import Foundation
import ServiceKit
import SwitchService
import ServiceLifecycle

/// violin-switch: the data plane of one VIOLIN on one host. Forwards Ethernet frames between
/// its local ports (TAP devices, QEMU UDP sockets) and the same VIOLIN's switches on other
/// hosts (VXLAN over UDP). Stays in the foreground; its control socket speaks PROTOCOL.md §8.1.
@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin-switch", abstract: "VIOLIN data plane: one per VIOLIN per host.",
        discussion: """
            Standalone: violin-switch --vni 42 --tunnel 10.0.0.1:4789 --peer 10.0.0.2:4789 --tap vtap0
            The control socket (--listen, default ipc:///run/violin/switch-<vni>.sock) changes ports,
            peers and static entries at run time; `violin switch fdb|stats|ports --to ENDPOINT` reads it.
            """)

    @Option(help: "The VIOLIN's id: the VXLAN network identifier (1-16777215).") var vni: UInt32
    @Option(help: "Underlay address:port of the tunnel socket.") var tunnel = "0.0.0.0:4789"
    @Option(help: "A peer switch's address:port (repeatable).") var peer: [String] = []
    @Option(help: "Create a TAP port with this name (repeatable).") var tap: [String] = []
    @Option(help: "A QEMU UDP port: NAME=LOCAL_ADDR:PORT,REMOTE_ADDR:PORT (repeatable).") var udpPort: [String] = []
    @Option(help: "An existing network device as a port, through a packet socket (repeatable): a VM's TAP NIC that QEMU holds (libvirt <interface type='ethernet'>, vhost-net), a veth.")
    var packetPort: [String] = []
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
    @Option(help: "Real-time forwarding: 'busy' (SCHED_FIFO while every core of the host is busy and the thread's wake-ups wait, within --realtime-budget of a core; the scheduling above otherwise) or 'off'.")
    var realtime = "busy"
    @Option(help: "Most of a core the forwarding thread may use in a 100 ms window while real-time, 0.05-1: above it, back to the fair class for 1 s or more.")
    var realtimeBudget = 0.3
    @Option(help: "Forwarding threads, 1-16: each reads one queue of every TAP port (multi-queue) and one of as many tunnel sockets (SO_REUSEPORT), and a flow's frames stay on one thread both ways. Other ports are read by the first thread.")
    var queues = 1
    @Flag(help: "Turn off the offloads (TAP TSO with virtio_net_hdr, UDP GSO and GRO with coalescing).")
    var noOffload = false
    @OptionGroup var options: ServiceOptions

    var settings: SwitchServer.Settings {
        var s = SwitchServer.Settings(vni: vni)
        s.tunnel = tunnel; s.peers = peer; s.taps = tap; s.udpPorts = udpPort; s.packetPorts = packetPort; s.statics = `static`; s.mtu = mtu
        s.forwarding.batch = batch
        s.forwarding.maxMACs = maxMacs
        s.forwarding.ageingMs = UInt64(max(0, ageing) * 1000)
        s.forwarding.offload = !noOffload
        s.forwarding.spinMicros = max(0, spinUs)
        s.forwarding.batchScheduling = sched == "batch"
        s.forwarding.niceness = nice
        s.forwarding.sliceMicros = sliceUs
        s.forwarding.realtimeWhenBusy = realtime == "busy"
        s.forwarding.realtimeBudget = realtimeBudget
        s.forwarding.queues = queues
        return s
    }

    func validate() throws {
        guard sched == "batch" || sched == "normal" else { throw ValidationError("--sched must be batch or normal") }
        guard realtime == "busy" || realtime == "off" else { throw ValidationError("--realtime must be busy or off") }
        guard realtimeBudget >= 0.05, realtimeBudget <= 1 else { throw ValidationError("--realtime-budget must be 0.05-1 (a share of one core)") }
        guard ageing > 0, ageing < 1e9 else { throw ValidationError("--ageing must be a positive number of seconds") }
        if let problem = settings.problem { throw ValidationError(problem) }
    }

    func run() async throws {
        let description = ServiceDescription(name: "switch", defaultListen: "ipc://\(PrivateDirectory.root)/switch-\(vni).sock")
        var opts = options
        if opts.bus == nil && ProcessInfo.processInfo.environment["VIOLIN_BUS"] == nil { opts.bus = "none" }
        let serviceSettings = ServiceMain.settings(description, opts)
        if serviceSettings.listen.contains(where: { $0.hasPrefix("ipc://\(PrivateDirectory.root)/") }) {
            // The default socket's directory: this user's alone (no /tmp, where anyone may plant one).
            do { try PrivateDirectory.prepare(PrivateDirectory.root) } catch {
                FileHandle.standardError.write(Data("violin-switch: \(error)\n".utf8))
                throw ExitCode(78)
            }
        }
        let logger = ServiceMain.logger(serviceSettings)
        let server: SwitchServer
        do { server = try SwitchServer(settings) } catch {
            FileHandle.standardError.write(Data("violin-switch: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if let error = server.start() {
            logger.warning("forwarding thread runs without its scheduling", metadata: ["sched": "\(sched)", "nice": "\(nice)", "slice-us": "\(sliceUs)", "error": "\(error)"])
        }
        let runtime = try ServiceRuntime(settings: serviceSettings, logger: logger, handler: server)
        server.controller.emit = { [weak runtime] event in runtime?.publish(type(of: event).event, event.json) }
        logger.info("switch up", metadata: ["vni": "\(vni)", "tunnel": "\(server.tunnel)",
                                            "ports": "\(server.controller.portList.map(\.name))", "peers": "\(server.controller.peerList)"])
        await ServiceMain.run(runtime, also: [ShutdownHook { server.stop() }])
    }
}

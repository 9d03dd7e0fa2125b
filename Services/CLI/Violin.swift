import ArgumentParser
import Foundation
import Hypervisor
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// violin: the command-line tool. Sends requests to any service and watches the bus.
@main
struct Violin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "violin",
        abstract: "Talk to VIOLIN services over ZeroMQ.",
        version: violinVersion,
        subcommands: [Ping.self, Status.self, Metrics.self, Call.self, Watch.self, SwitchCommand.self, MeshCommand.self, PolicyCommand.self,
                      NodeCommand.self, ClusterCommand.self, Create.self, Apply.self, Destroy.self, List.self, Show.self, Migrate.self, Jobs.self, Cancel.self, Console.self, StopStart.Stop.self, StopStart.Start.self, Images.self, ImageCommand.self, Simulate.self, Keygen.self, KeysCommand.self, Bench.self, TopCommand.self,
                      Version.self])
}

/// Exit codes: 0 ok, 1 error reply, 2 no reply (timeout), 64 bad usage, 78 a bad
/// configuration or spec file.
enum Exit {
    static let errorReply: Int32 = 1
    static let noReply: Int32 = 2
    static let usage: Int32 = 64
    static let config: Int32 = 78
}

func fail(_ message: String, code: Int32) -> ExitCode {
    FileHandle.standardError.write(Data("violin: \(message)\n".utf8))
    return ExitCode(code)
}

struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("timeout"), help: "Seconds to wait for a reply, all attempts together (default 3; 120 for commands that make, change or destroy VMs).")
    var given: Double?
    /// For the commands that do work on hosts (create, apply, destroy, stop, start): a longer wait.
    var work = false
    var timeout: Double { given ?? (work ? 120 : 3) }
    /// The same options, for a command that makes, changes or destroys VMs.
    var forWork: ConnectionOptions { var c = self; c.work = true; return c }
    @Option(help: "Retries after a timeout (each with a fresh socket: Lazy Pirate).") var retries: Int = 0
    @Option(help: "Our key-pair file (violin keygen), for CURVE endpoints.") var curveKey: String?
    @Option(help: "The server's public-key file, for CURVE endpoints.") var serverKey: String?

    func security() throws -> ClientSecurity? {
        switch (curveKey, serverKey) {
        case (nil, nil): return nil
        case (let k?, let s?):
            do {
                return ClientSecurity(keyPair: try KeyFiles.readKeyPair(k), serverPublicKey: try KeyFiles.readPublicKey(s))
            } catch { throw fail("\(error)", code: Exit.usage) }
        default: throw fail("--curve-key and --server-key go together", code: Exit.usage)
        }
    }

    /// Runs `body` with a client, tearing the context down on every path.
    func with<T>(_ endpoint: String, _ body: (ServiceClient) throws -> T) throws -> T {
        guard timeout > 0, retries >= 0 else { throw fail("--timeout must be > 0 and --retries >= 0", code: Exit.usage) }
        let ctx = ZMQContext()
        let perAttempt = max(1, Int(timeout * 1000) / (retries + 1))
        let client = ServiceClient(context: ctx, endpoint: endpoint, security: try security(),
                                   timeoutMs: perAttempt, retries: retries)
        defer {
            client.close()
            ctx.shutdown()
            ctx.terminate()
        }
        return try body(client)
    }
}

func printJSON(_ value: JSONValue, pretty: Bool = true) {
    print(JSONText.string(value, pretty: pretty))
}

/// Sends one typed request and prints the reply body; maps failures to exit codes. Resends
/// only as `--retries` says (within `--timeout` in all).
func request<R: RequestBody>(_ options: ConnectionOptions, to endpoint: String, _ r: R,
                             show: (JSONValue) -> Void = { printJSON($0) }) throws {
    try options.with(endpoint) { client in
        do {
            show(try client.exchange(r, retries: options.retries).body)
        } catch let error as ServiceClient.Failure {
            switch error {
            case .noReply: throw fail(error.description, code: Exit.noReply)
            case .badReply: throw fail(error.description, code: Exit.errorReply)
            case .error(let e): throw fail("\(e.code.rawValue): \(e.message)", code: Exit.errorReply)
            }
        }
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ping a service; prints its name and the round trip.")
    @Option(help: "The service's endpoint, e.g. tcp://127.0.0.1:\(ServicePorts.mesh).") var to: String
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let start = monotonicMillis()
        try request(connection, to: to, AdminAPI.Ping()) { body in
            let rtt = monotonicMillis() - start
            print("\(body["service"]?.stringValue ?? "?") \(body["instance"]?.stringValue ?? "?") replied in \(rtt) ms")
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a service's status as JSON.")
    @Option(help: "The service's endpoint.") var to: String
    @OptionGroup var connection: ConnectionOptions
    func run() throws { try request(connection, to: to, AdminAPI.Status()) }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a service's counters as JSON.")
    @Option(help: "The service's endpoint.") var to: String
    @OptionGroup var connection: ConnectionOptions
    func run() throws { try request(connection, to: to, AdminAPI.Metrics()) }
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send any request and print the reply body as JSON.",
        discussion: "MSG_TYPE may omit the _request suffix. The exit code is 0 for an ok reply, 1 for an error reply, 2 when no reply came.")
    @Argument(help: "The service's endpoint.") var address: String
    @Argument(help: "The request type, e.g. ping_request.") var msgType: String
    @Argument(help: "The request body, a JSON object.") var body: String = "{}"
    @Flag(help: "Print the whole reply (header and body), not only the body.") var full = false
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let parsed: JSONValue
        do { parsed = try JSONText.parse(Array(body.utf8)) } catch {
            throw fail("the body is not valid JSON: \(body)", code: Exit.usage)
        }
        guard case .object = parsed else { throw fail("the body must be a JSON object", code: Exit.usage) }
        let type = MessageKind.requestType(msgType)
        try connection.with(address) { client in
            let reply: Message
            do { reply = try client.send(type, body: parsed) } catch let error as ServiceClient.Failure {
                if case .noReply = error { throw fail(error.description, code: Exit.noReply) }
                throw fail(error.description, code: Exit.errorReply)
            }
            printJSON(full ? ["header": JSONText.value(of: reply.header), "body": reply.body] : reply.body)
            if case .failure(let e) = Replies.result(of: reply.body) {
                throw fail("\(e.code.rawValue): \(e.message)", code: Exit.errorReply)
            }
        }
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print events from the bus as JSON lines: {topic, header, body}.",
        discussion: "TOPIC is a prefix: 'mesh.' gives every event of the mesh services. Missed events (a jump in a publisher's seq) are reported on stderr.")
    @Option(help: "The bus's subscriber endpoint.") var bus = "tcp://127.0.0.1:\(ServicePorts.busSubscribers)"
    @Argument(help: "Topic prefixes; none means every event.") var topics: [String] = []
    @Option(help: "Exit after this many events.") var count: Int?
    @Option(help: "Exit with status 2 if no event came for this many seconds.") var timeout: Double?
    @Option(help: "Our key-pair file, for a CURVE bus.") var curveKey: String?
    @Option(help: "The bus's public-key file, for a CURVE bus.") var serverKey: String?

    func run() throws {
        let options = try ConnectionOptions.parse(
            (curveKey.map { ["--curve-key", $0] } ?? []) + (serverKey.map { ["--server-key", $0] } ?? []))
        let ctx = ZMQContext()
        let sub: EventSubscriber
        do { sub = try EventSubscriber(context: ctx, endpoint: bus, topics: topics, security: try options.security()) }
        catch let e as ExitCode { throw e }
        catch { ctx.shutdown(); ctx.terminate(); throw fail("cannot watch \(bus): \(error)", code: Exit.usage) }
        defer { sub.close(); ctx.shutdown(); ctx.terminate() }
        setvbuf(stdout, nil, _IOLBF, 0)
        var seen = 0
        let timeoutMs = timeout.map { Int($0 * 1000) } ?? -1
        while count.map({ seen < $0 }) ?? true {
            switch try sub.next(timeoutMs: timeoutMs) {
            case .timeout:
                throw fail("no event within \(timeout ?? 0) s", code: Exit.noReply)
            case .malformed(let e):
                FileHandle.standardError.write(Data("violin: dropped a malformed event: \(e)\n".utf8))
            case .event(let m, let missed):
                if missed > 0 {
                    FileHandle.standardError.write(Data("violin: missed \(missed) event(s) from \(m.header.sender)\n".utf8))
                }
                print(JSONText.string(["topic": .string(m.topic ?? ""), "header": JSONText.value(of: m.header), "body": m.body] as JSONValue))
                seen += 1
            }
        }
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a CURVE key pair: PATH.key (secret, mode 0600) and PATH.pub (public).")
    @Option(help: "Path without extension, e.g. keys/host1.") var out: String
    @Flag(help: "Overwrite existing files.") var force = false
    @Option(help: "The key's role, written into PATH.pub (a key table directory needs it): operator, control, domain-admin:<d> or host:<id>.")
    var role: String?

    func run() throws {
        guard ZMQContext.hasCurve else { throw fail("this libzmq has no CURVE support", code: 1) }
        let parsed = try role.map { text throws in
            guard let r = Role(text) else { throw fail("--role: '\(text)' is not operator, control, domain-admin:<d> or host:<id>", code: Exit.usage) }
            return r
        }
        if !force && (FileManager.default.fileExists(atPath: out + ".key") || FileManager.default.fileExists(atPath: out + ".pub")) {
            throw fail("\(out).key or \(out).pub exists (use --force to overwrite)", code: Exit.usage)
        }
        let pair = try CurveKeyPair.generate()
        do { try KeyFiles.write(pair, base: out, role: parsed) } catch { throw fail("\(error)", code: 1) }
        print(pair.publicKey)
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the versions of violin, libzmq and libvirt.")
    func run() {
        print("violin \(violinVersion), libzmq \(ZMQContext.version) (curve: \(ZMQContext.hasCurve)), libvirt \(Libvirt.libraryVersion)")
    }
}

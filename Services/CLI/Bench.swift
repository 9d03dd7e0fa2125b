import ArgumentParser
import Foundation
import ServiceKit
import VIOLINProtocol
import ZeroMQ

/// Benchmarks: print figures, never assert. Tests/Benchmarks/bus-bench.sh runs them beside
/// a pyzmq reference in the same run and prints the ratios.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure request/reply round trips and bus event throughput.",
        subcommands: [Rpc.self, Events.self, Policy.self, PolicyServiceBench.self, Mesh.self, Forward.self, PlacementBench.self, CreateBench.self])

    struct Rpc: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Round trips per second of ping_request against a service (full protocol: encode, send, decode).")
        @Option(help: "The service's endpoint.") var to: String
        @Option(help: "Seconds to measure.") var seconds: Double = 3

        func run() throws {
            let ctx = ZMQContext()
            let client = ServiceClient(context: ctx, endpoint: to, timeoutMs: 2000)
            defer { client.close(); ctx.shutdown(); ctx.terminate() }
            for _ in 0..<200 { _ = try? client.call(AdminAPI.Ping(), retries: 0) }   // warm up
            var n = 0
            let start = monotonicMillis()
            let end = start + Int64(seconds * 1000)
            while monotonicMillis() < end {
                do { _ = try client.call(AdminAPI.Ping(), retries: 0) } catch {
                    throw fail("bench stopped: \(error)", code: Exit.noReply)
                }
                n += 1
            }
            let elapsed = Double(monotonicMillis() - start) / 1000
            print(String(format: "rpc_round_trips_per_s %.0f (n=%d, %.2f s)", Double(n) / elapsed, n, elapsed))
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Events per second published through the bus to one subscriber (full protocol on both ends).")
        @Option(help: "The bus's publisher endpoint.") var publishers = "tcp://127.0.0.1:\(ServicePorts.busPublishers)"
        @Option(help: "The bus's subscriber endpoint.") var subscribers = "tcp://127.0.0.1:\(ServicePorts.busSubscribers)"
        @Option(help: "Events to send.") var count = 200_000

        func run() throws {
            let ctx = ZMQContext()
            defer { ctx.shutdown(); ctx.terminate() }
            let topic = "bench.ticked"
            let sub = try EventSubscriber(context: ctx, endpoint: subscribers, topics: [topic])
            defer { sub.close() }
            try sub.socket.setHighWaterMarks(receive: 0)
            let pub = try ZMQSocket(ctx, .pub)
            defer { pub.close() }
            try pub.setHighWaterMarks(send: 0)
            try pub.connect(publishers)
            var factory = MessageFactory(sender: "bench")
            // Wait until the subscription has reached the publisher through the bus.
            var warmed = false
            let warmDeadline = monotonicMillis() + 5000
            while !warmed && monotonicMillis() < warmDeadline {
                try pub.send(Codec.encode(factory.event(topic, body: ["warm": true])))
                if case .event = try sub.next(timeoutMs: 50) { warmed = true }
            }
            guard warmed else { throw fail("no event came back through the bus within 5 s", code: Exit.noReply) }
            while case .event = try sub.next(timeoutMs: 100) {}
            let body: JSONValue = ["n": 0, "host": "bench"]
            // The publishing socket moves to the sender thread and is closed there.
            let sent = DispatchSemaphore(value: 0)
            let sender = Thread { [factory] in
                var f = factory
                for _ in 0..<count { _ = try? pub.send(Codec.encode(f.event(topic, body: body))) }
                sent.signal()
            }
            let start = monotonicMillis()
            sender.start()
            var received = 0
            var idleSince = monotonicMillis()
            while received < count && monotonicMillis() - idleSince < 2000 {
                if case .event = try sub.next(timeoutMs: 200) {
                    received += 1
                    idleSince = monotonicMillis()
                }
            }
            sent.wait()
            let elapsed = Double(max(1, (received == count ? monotonicMillis() : idleSince) - start)) / 1000
            print(String(format: "bus_events_per_s %.0f (received %d of %d, %.2f s)",
                         Double(received) / elapsed, received, count, elapsed))
        }
    }
}

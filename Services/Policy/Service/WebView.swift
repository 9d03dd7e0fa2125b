import Foundation
import Primitives
import ServiceKit
import VIOLINProtocol

/// The control node's live web view (read-only): `/` the page, `/api/state` the federation as
/// JSON — domains, hosts with score and load, VIOLINs and their VMs where they run, migrations
/// in progress, the latest decisions with their reasons, each host's score over time — and
/// `/events`, the bus's events as they come (server-sent events), which the page applies.
public final class WebView: HTTPStreamSource, @unchecked Sendable {
    private let lock = NSLockLite()
    private var senders: [Int: @Sendable (Data) -> Bool] = [:]
    private var nextToken = 0
    /// Migrations under way, by VM: from, to, job, phase and the latest figures.
    private var migrations: [String: [String: JSONValue]] = [:]
    /// Each host's score, sampled at most every `sampleEvery` seconds: (time, host -> score).
    private var history: [(Double, [String: Double])] = []
    private var lastSample = 0.0
    static let sampleEvery = 3.0, historyLength = 200
    private weak var policy: PolicyServer?
    private let sampling = DispatchQueue(label: "web-samples")

    public init(policy: PolicyServer) { self.policy = policy }

    /// The routes the endpoint serves.
    public var routes: [String: HTTPEndpoint.Route] {
        [
            "/": { _ in .body(status: 200, contentType: "text/html; charset=utf-8", Data(WebPage.html.utf8)) },
            "/api/state": { [weak self] _ in
                guard let self else { return .text("stopping\n", status: 503) }
                return .body(status: 200, contentType: "application/json", Data(JSONText.string(self.state()).utf8))
            },
            "/events": { [weak self] _ in
                guard let self else { return .text("stopping\n", status: 503) }
                // The stream opens with a comment, so the browser sees it open at once.
                return .stream(contentType: "text/event-stream", first: Data(": violin events\nretry: 2000\n\n".utf8), self)
            },
        ]
    }

    // MARK: - Events in, events out

    /// Every event the policy sees on the bus or emits itself.
    public func feed(_ topic: String, _ body: JSONValue) {
        let now = Date().timeIntervalSince1970
        var sample = false
        lock.withLock {
            let vm = body["vm"]?.stringValue ?? ""
            switch topic {
            case ExecutorAPI.MigrationStarted.topic:
                migrations[vm] = ["vm": .string(vm), "from": body["from"] ?? .null, "to": body["to"] ?? .null, "job": body["job"] ?? .null,
                                  "phase": "preparing", "started": .number(now)]
            case ExecutorAPI.MigrationProgress.topic:
                guard var m = migrations[vm] else { break }
                for key in ["phase", "processed_bytes", "remaining_bytes", "total_bytes", "rate_bps", "elapsed_ms"] { m[key] = body[key] ?? .null }
                migrations[vm] = m
            case ExecutorAPI.MigrationCompleted.topic, ExecutorAPI.MigrationFailed.topic:
                migrations[vm] = nil
            case MonitorAPI.Sampled.topic:
                if now - lastSample >= Self.sampleEvery { lastSample = now; sample = true }
            default: break
            }
        }
        if sample { sampling.async { [weak self] in self?.sampleScores(at: now) } }
        // The page does not need every sample of every host: those are summed into the state.
        guard topic != MonitorAPI.Sampled.topic else { return }
        broadcast(Data("event: \(topic)\ndata: \(JSONText.string(body))\n\n".utf8))
    }

    private func broadcast(_ data: Data) {
        let all = lock.withLock { senders }
        var gone: [Int] = []
        for (token, send) in all where !send(data) { gone.append(token) }
        if !gone.isEmpty { lock.withLock { gone.forEach { senders[$0] = nil } } }
    }

    public func attach(_ send: @escaping @Sendable (Data) -> Bool) -> Int {
        lock.withLock {
            nextToken += 1
            senders[nextToken] = send
            return nextToken
        }
    }

    public func detach(_ token: Int) { lock.withLock { senders[token] = nil } }

    private func sampleScores(at t: Double) {
        guard let explained = try? policy?.explain() else { return }
        let scores = Dictionary(explained.hosts.map { ($0.id, $0.score) }, uniquingKeysWith: { a, _ in a })
        lock.withLock {
            history.append((t, scores))
            if history.count > Self.historyLength { history.removeFirst(history.count - Self.historyLength) }
        }
        broadcast(Data("event: web.scores\ndata: \(JSONText.string(["time": .number(t), "scores": .object(scores.mapValues { .number($0) })]))\n\n".utf8))
    }

    // MARK: - The state

    /// The federation now, as the page draws it.
    public func state() -> JSONValue {
        guard let policy, let inv = try? policy.store.inventory() else { return ["error": "the inventory cannot be read"] }
        let explained = try? policy.explain()
        let scoreOf = Dictionary((explained?.hosts ?? []).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let violinOf = Dictionary(inv.vms.map { ($0.id, $0.violin) }, uniquingKeysWith: { a, _ in a })
        let (moving, points) = lock.withLock { (migrations, history) }
        var hosts: [JSONValue] = []
        for h in inv.hosts {
            let vms = inv.placement.filter { $0.value == h.id }.keys.sorted()
            let s = scoreOf[h.id]
            hosts.append(["id": .string(h.id), "domain": .string(h.domain), "cores": .number(Double(h.cores)),
                          "memory_mb": .number(Double(h.memoryMB)), "draining": .bool(inv.draining.contains(h.id)),
                          "score": .number(s?.score ?? 0), "load": .number(s?.load ?? 0),
                          "vms": .array(vms.map { ["name": .string($0), "violin": .string(violinOf[$0] ?? "")] })])
        }
        let decisions = ((try? policy.decisions(limit: 15))?.decisions ?? []).map { d -> JSONValue in
            ["id": d["id"] ?? .null, "time": d["time"] ?? .null, "kind": d["kind"] ?? .null, "reason": d["reason"] ?? .null,
             "outcome": d["outcome"] ?? .null, "effect": d["effect"] ?? .null]
        }
        return [
            "domains": .array(inv.domains.map { .string($0) }),
            "hosts": .array(hosts),
            "violins": .array(inv.violins.map { v in
                ["name": .string(v.id), "home_domain": .string(v.homeDomain), "head": .string(v.head),
                 "vms": .array(inv.vms.filter { $0.violin == v.id }.map { .string($0.id) })]
            }),
            "migrations": .array(moving.keys.sorted().map { .object(moving[$0]!) }),
            "decisions": .array(decisions),
            "deviation": .number(explained?.deviation ?? 0),
            "scores": .array(points.map { t, s in ["time": .number(t), "scores": .object(s.mapValues { .number($0) })] }),
        ]
    }
}

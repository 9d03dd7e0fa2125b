import ArgumentParser
import Foundation
import PolicyService
import ServiceKit

/// violin-policy: the adaptation manager (PROTOCOL.md §8.4).
@main
struct Main: AsyncParsableCommand {
    static let configuration = description.command(abstract: "VIOLIN adaptation manager (one per infrastructure).")
    static let description = ServiceDescription(name: "policy", defaultListen: "tcp://127.0.0.1:\(ServicePorts.policy)", extraKeys: [
        ConfigKey("database", default: "violin-policy.sqlite", help: "SQLite file of the inventory and the decision ledger."),
        ConfigKey("subscribe", default: "tcp://127.0.0.1:\(ServicePorts.busSubscribers)", help: "The bus's subscriber endpoint (samples), or 'none'."),
        ConfigKey("evaluate_interval", default: "30", help: "Seconds between two policy rounds.", validate: Validate.positiveNumber),
        ConfigKey("host_lost_after", default: "30", help: "Seconds a host may not answer before its VMs count as lost (restart: always makes them again elsewhere).",
                  validate: Validate.positiveNumber),
        ConfigKey("reconcile_interval", default: "10", help: "Seconds between two comparisons of the inventory with every executor's VMs (0: never).",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("policy", default: "paper", help: "paper or cost-benefit.",
                  validate: { ["paper", "cost-benefit"].contains($0) ? nil : "paper or cost-benefit" }),
        ConfigKey("levers", default: "false", help: "true: fine-grain levers first (CPU weight, memory balloon, network cap), migrations only where they do not do (PROTOCOL.md §8.4).",
                  validate: { ["true", "false"].contains($0) ? nil : "true or false" }),
        ConfigKey("lever_settle", default: "60", help: "Seconds a lever's effect is awaited: then it is measured into the ledger, and only then may the same VM get another lever or its host a migration.",
                  validate: Validate.positiveNumber),
        ConfigKey("high_demand_percent", default: "75", help: "A VM whose smoothed CPU use is above this share of its vCPU (1-100 %) is high-demand: what the policy evens out over the cores.",
                  validate: { v in Double(v).map { (1...100).contains($0) } == true ? nil : "a number 1-100" }),
        ConfigKey("link_mbit_s", default: "0", help: "Each host's link to the others, Mbit/s, for the network lever (0: unknown, no caps).",
                  validate: Validate.nonNegativeNumber),
        ConfigKey("web_listen", default: "", help: "HOST:PORT of the live web view (read-only; empty: none). Beyond loopback it needs metrics_token_file, whose token it then asks of every request.",
                  validate: Validate.httpAddress),
        ConfigKey("retention_days", default: "90", help: "Days the decision ledger keeps what is finished (pruned at start and hourly; never a row about a VIOLIN or VM that exists).", validate: Validate.positiveNumber),
    ])

    @OptionGroup var options: ServiceOptions

    func run() async throws {
        let settings = ServiceMain.settings(Self.description, options)
        let r = settings.resolved
        var po = PolicyServer.Options(database: r["database"])
        po.subscribe = r["subscribe"] == "none" || r["subscribe"].isEmpty ? nil : r["subscribe"]
        po.interval = r.double("evaluate_interval")
        po.policy = r["policy"]
        po.reconcileInterval = r.double("reconcile_interval")
        po.hostLostAfter = r.double("host_lost_after")
        po.busSecurity = settings.busSecurity
        po.keyPair = settings.server?.keyPair
        po.keyTable = settings.keys
        po.retentionDays = r.double("retention_days")
        po.levers = r["levers"] == "true"
        po.linkMbps = r.double("link_mbit_s")
        po.leverSettle = r.double("lever_settle")
        po.highDemandPercent = r.double("high_demand_percent")
        let logger = ServiceMain.logger(settings)
        let web: HTTPAddress?
        do { (web, _) = try ServiceSettings.httpServing(r, listenKey: "web_listen", tokenKey: "metrics_token_file") } catch {
            FileHandle.standardError.write(Data("violin-policy: \(error)\n".utf8))
            throw ExitCode(78)
        }
        try await ServiceMain.run(settings, logger: logger, server: { try PolicyServer(options: po, logger: logger) },
                                  afterStart: { server in
                                      if let web { try server.serveWeb(web, token: settings.metricsToken) }
                                      try server.start()
                                  })
    }
}

import Foundation

/// A hypervisor that lives in memory: hosts, their domains, and live migrations between them
/// that a test drives step by step (progress, post-copy, the end, a failure). The executor's
/// orchestration runs against it in unit tests, without libvirt or QEMU.
public final class InMemoryHypervisor: MigratingHypervisor, @unchecked Sendable {
    /// Every host of one test, by URI; migrations move domains between them.
    public final class World: @unchecked Sendable {
        struct Domain {
            var uuid: String, xml: String, state: DomainState, memoryKiB: UInt64, vcpus: Int, weight: UInt64 = 100
        }
        final class Host {
            var domains: [String: Domain] = [:]
            var volumes: Set<String> = []
            let memoryMiB: UInt64, cpus: Int
            init(memoryMiB: UInt64, cpus: Int) { self.memoryMiB = memoryMiB; self.cpus = cpus }
        }
        struct Migration {
            var from: String, to: String
            var stats = JobStats()
            var postcopy = false
            /// Set when it ends: nil for success.
            var outcome: Result<Void, HypervisorError>?
        }
        private let changed = NSCondition()
        private var hosts: [String: Host] = [:]
        private var running: [String: Migration] = [:]
        private var completed: [String: JobStats] = [:]   // by "uri/vm": the destination's figures

        public init() {}

        func locked<T>(_ body: () throws(HypervisorError) -> T) throws(HypervisorError) -> T {
            changed.lock()
            defer { changed.unlock() }
            return try body()
        }

        func host(_ uri: String) throws(HypervisorError) -> Host {
            guard let h = hosts[uri] else { throw HypervisorError(kind: .failed, message: "cannot open \(uri): no such host") }
            return h
        }

        public func addHost(_ uri: String, memoryMiB: UInt64 = 4096, cpus: Int = 2) {
            changed.lock(); hosts[uri] = Host(memoryMiB: memoryMiB, cpus: cpus); changed.unlock()
        }

        /// The domain's state on the host at `uri` (`absent` when it is not there).
        public func state(_ uri: String, _ vm: String) -> DomainState {
            (try? locked { () throws(HypervisorError) in try host(uri).domains[vm]?.state ?? .absent }) ?? .absent
        }

        public func volumes(_ uri: String) -> Set<String> { (try? locked { () throws(HypervisorError) in try host(uri).volumes }) ?? [] }

        /// Whether `vm` is being migrated now, and whether it switched to post-copy.
        public func migration(_ vm: String) -> (running: Bool, postcopy: Bool) {
            changed.lock(); defer { changed.unlock() }
            guard let m = running[vm], m.outcome == nil else { return (false, false) }
            return (true, m.postcopy)
        }

        /// What the running migration of `vm` reports next.
        public func progress(_ vm: String, iteration: UInt64, processed: UInt64, remaining: UInt64) {
            changed.lock(); defer { changed.unlock() }
            running[vm]?.stats.iteration = iteration
            running[vm]?.stats.processed = processed
            running[vm]?.stats.remaining = remaining
            running[vm]?.stats.total = processed + remaining
        }

        /// Ends the running migration of `vm`: the domain moves (nil), or stays where it was.
        public func finish(_ vm: String, error: String? = nil, downtimeMs: UInt64 = 30) {
            changed.lock(); defer { changed.unlock() }
            guard running[vm] != nil, running[vm]?.outcome == nil else { return }
            running[vm]?.outcome = error.map { .failure(HypervisorError(kind: .failed, message: $0)) } ?? .success(())
            running[vm]?.stats.downtimeMs = downtimeMs
            changed.broadcast()
        }

        /// Waits (up to `timeout` seconds) until `vm` is being migrated; whether it is.
        public func waitForMigration(_ vm: String, timeout: Double) -> Bool {
            changed.lock(); defer { changed.unlock() }
            let end = Date().addingTimeInterval(timeout)
            while running[vm] == nil || running[vm]?.outcome != nil { if !changed.wait(until: end) { break } }
            return running[vm] != nil && running[vm]?.outcome == nil
        }

        /// The source's side of `migrate`: blocks until `finish` (or an abort) ends it.
        func migrate(_ vm: String, from: String, to: String, postcopyAllowed: Bool) throws(HypervisorError) {
            try locked { () throws(HypervisorError) in
                guard var d = try host(from).domains[vm] else { throw HypervisorError(kind: .notFound, message: "no domain \(vm)") }
                let dest = try host(to)
                d.state = .paused
                dest.domains[vm] = d
                var m = Migration(from: from, to: to)
                m.stats.active = true
                m.stats.iteration = 1
                running[vm] = m
                changed.broadcast()
            }
            changed.lock()
            while running[vm]?.outcome == nil { changed.wait() }
            let m = running.removeValue(forKey: vm)!
            defer { changed.broadcast(); changed.unlock() }
            switch m.outcome! {
            case .success:
                hosts[to]?.domains[vm]?.state = .running
                hosts[from]?.domains[vm] = nil
                var figures = m.stats
                figures.active = false
                figures.elapsedMs = 1000
                completed["\(to)/\(vm)"] = figures
            case .failure(let e):
                if m.postcopy {
                    // The memory is split: the domain stays paused on both sides.
                    throw e
                }
                hosts[to]?.domains[vm] = nil
                hosts[from]?.domains[vm]?.state = .running
                throw e
            }
        }

        func jobStats(_ uri: String, _ vm: String, completed wantCompleted: Bool) -> JobStats {
            changed.lock(); defer { changed.unlock() }
            if wantCompleted { return completed["\(uri)/\(vm)"] ?? JobStats() }
            guard let m = running[vm], m.from == uri, m.outcome == nil else { return JobStats() }
            return m.stats
        }

        func control(_ vm: String, abort: Bool) throws(HypervisorError) {
            changed.lock(); defer { changed.unlock() }
            guard let m = running[vm], m.outcome == nil else { throw HypervisorError(kind: .invalid, message: "no migration of \(vm) runs") }
            if abort {
                guard !m.postcopy else { throw HypervisorError(kind: .invalid, message: "a post-copy migration cannot be aborted") }
                running[vm]?.outcome = .failure(HypervisorError(kind: .failed, message: "operation aborted"))
            } else {
                running[vm]?.postcopy = true
            }
            changed.broadcast()
        }
    }

    public let uri: String
    private let world: World

    public init(world: World, uri: String) throws(HypervisorError) {
        _ = try world.locked { () throws(HypervisorError) in try world.host(uri) }
        self.world = world
        self.uri = uri
    }

    /// Connections into `world`, as the executor opens them.
    public static func connector(_ world: World) -> HypervisorConnector {
        { uri throws(HypervisorError) in try InMemoryHypervisor(world: world, uri: uri) }
    }

    private func onHost<T>(_ body: (World.Host) throws(HypervisorError) -> T) throws(HypervisorError) -> T {
        try world.locked { () throws(HypervisorError) in try body(try world.host(uri)) }
    }

    public func host() throws(HypervisorError) -> HostInfo {
        try onHost { h in HostInfo(cpus: h.cpus, memoryKiB: h.memoryMiB * 1024, model: "in-memory") }
    }

    public func domains() throws(HypervisorError) -> [DomainStats] {
        try onHost { h in
            h.domains.sorted { $0.key < $1.key }.map { name, d in
                DomainStats(name: name, uuid: d.uuid, running: d.state == .running, vcpus: d.vcpus, cpuTimeNs: 0,
                            memoryKiB: d.memoryKiB, maxMemoryKiB: d.memoryKiB)
            }
        }
    }

    public func setMemory(_ domain: String, kib: UInt64) throws(HypervisorError) -> UInt64 {
        try onHost { h throws(HypervisorError) in
            guard h.domains[domain] != nil else { throw HypervisorError(kind: .notFound, message: "no domain \(domain)") }
            h.domains[domain]!.memoryKiB = kib
            return kib
        }
    }

    public func setCPUWeight(_ domain: String, _ weight: UInt64) throws(HypervisorError) -> UInt64 {
        try onHost { h throws(HypervisorError) in
            guard h.domains[domain] != nil else { throw HypervisorError(kind: .notFound, message: "no domain \(domain)") }
            h.domains[domain]!.weight = weight
            return weight
        }
    }

    public func cpuWeight(_ domain: String) throws(HypervisorError) -> UInt64 {
        try onHost { h throws(HypervisorError) in
            guard let d = h.domains[domain] else { throw HypervisorError(kind: .notFound, message: "no domain \(domain)") }
            return d.weight
        }
    }

    public func create(xml: String) throws(HypervisorError) -> String {
        guard let name = Self.element("name", in: xml) else { throw HypervisorError(kind: .invalid, message: "no <name> in the XML") }
        let memoryKiB = Self.element("memory", in: xml).flatMap { UInt64($0) } ?? 131_072
        let uuid = UUID().uuidString.lowercased()
        try onHost { h throws(HypervisorError) in
            guard h.domains[name] == nil else { throw HypervisorError(kind: .invalid, message: "domain \(name) exists") }
            h.domains[name] = World.Domain(uuid: uuid, xml: xml, state: .running, memoryKiB: memoryKiB, vcpus: 1)
        }
        return uuid
    }

    public func destroy(_ name: String) throws(HypervisorError) {
        try onHost { h throws(HypervisorError) in
            guard h.domains.removeValue(forKey: name) != nil else { throw HypervisorError(kind: .notFound, message: "no domain \(name)") }
        }
    }

    public func resume(_ name: String) throws(HypervisorError) {
        try onHost { h throws(HypervisorError) in
            guard h.domains[name] != nil else { throw HypervisorError(kind: .notFound, message: "no domain \(name)") }
            h.domains[name]!.state = .running
        }
    }

    public func state(_ name: String) -> DomainState { world.state(uri, name) }

    public func xml(_ name: String) throws(HypervisorError) -> String {
        try onHost { h throws(HypervisorError) in
            guard let d = h.domains[name] else { throw HypervisorError(kind: .notFound, message: "no domain \(name)") }
            return d.xml
        }
    }

    public func definition(_ name: String) throws(HypervisorError) -> String { try xml(name) }

    public func freeMemoryMiB() -> UInt64 {
        (try? onHost { h in h.memoryMiB - min(h.memoryMiB, h.domains.values.reduce(0) { $0 + $1.memoryKiB / 1024 }) }) ?? 0
    }

    public func migrate(_ name: String, to destination: String, options: MigrationOptions) throws(HypervisorError) {
        try world.migrate(name, from: uri, to: destination, postcopyAllowed: options.postcopy)
    }

    public func startPostCopy(_ name: String) throws(HypervisorError) { try world.control(name, abort: false) }

    public func abortJob(_ name: String) throws(HypervisorError) { try world.control(name, abort: true) }

    public func jobStats(_ name: String, completed: Bool) throws(HypervisorError) -> JobStats {
        world.jobStats(uri, name, completed: completed)
    }

    public func createVolume(pool: String, name: String, capacityMiB: UInt64) throws(HypervisorError) -> String {
        try onHost { h in h.volumes.insert(name) }
        return "/\(pool)/\(name)"
    }

    public func deleteVolume(pool: String, name: String) { _ = try? onHost { h in h.volumes.remove(name) } }

    public func ensurePool(name: String, path: String) throws(HypervisorError) {}

    /// The text of the first `<tag>` element (enough for the domain XML VMSpec writes).
    static func element(_ tag: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(tag)"), let close = xml.range(of: "</\(tag)>", range: open.upperBound..<xml.endIndex),
              let gt = xml.range(of: ">", range: open.upperBound..<close.lowerBound) else { return nil }
        return String(xml[gt.upperBound..<close.lowerBound])
    }
}

/// The console of an in-memory domain: a terminal that echoes what is typed, and ends when the
/// domain leaves its host (destroyed or migrated) or when closed.
final class InMemoryConsole: ConsoleStream, @unchecked Sendable {
    private let world: InMemoryHypervisor.World
    private let uri: String, vm: String
    private let ready = NSCondition()
    private var pending: [UInt8] = []
    private var closed = false

    init(world: InMemoryHypervisor.World, uri: String, vm: String) {
        self.world = world; self.uri = uri; self.vm = vm
    }

    func read(max: Int) throws(HypervisorError) -> [UInt8] {
        ready.lock(); defer { ready.unlock() }
        while pending.isEmpty && !closed {
            if world.state(uri, vm) == .absent { return [] }
            _ = ready.wait(until: Date().addingTimeInterval(0.05))
        }
        let out = Array(pending.prefix(max))
        pending.removeFirst(out.count)
        return out
    }

    func write(_ bytes: [UInt8]) throws(HypervisorError) {
        guard world.state(uri, vm) != .absent else { throw HypervisorError(kind: .notFound, message: "no domain \(vm)") }
        ready.lock(); pending += bytes; ready.signal(); ready.unlock()
    }

    func close() { ready.lock(); closed = true; ready.signal(); ready.unlock() }
}

extension InMemoryHypervisor {
    public func openConsole(_ name: String) throws(HypervisorError) -> any ConsoleStream {
        guard state(name) != .absent else { throw HypervisorError(kind: .notFound, message: "no domain \(name)") }
        return InMemoryConsole(world: world, uri: uri, vm: name)
    }
}

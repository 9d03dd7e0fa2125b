/// Where a new VIOLIN's VMs go, and what it is given: a VNI unique in the infrastructure, a MAC
/// per VM (unique within the VIOLIN; two VIOLINs may reuse MACs), a NIC port per VM unique in the
/// infrastructure (a VM keeps its ports wherever it migrates, so they must be free on every
/// host). Pure and deterministic: the same inputs give the same plan.
///
/// Rules: a host never takes more than it has free (as its executor reports it) less a per-VM
/// overhead, counting the VMs this plan already put there; only hosts that have the VM's image;
/// never a draining host; the head node in the home domain; a VM's host or domain pin holds;
/// no two VMs of an anti-affinity group share a host. `pack` (the default) fills the fewest
/// hosts, home domain first; `spread` keeps unpinned VMs in the home domain and spreads them
/// over its hosts. Each choice carries its reason; a VM that fits nowhere is refused in numbers.
public enum Placement {
    public struct Host: Sendable, Equatable {
        public var id: String, domain: String
        public var freeMB: Int
        /// The images the host has; nil when not known (any image is assumed present).
        public var images: Set<String>?
        public var draining = false
        /// NIC ports its VMs already use.
        public var usedPorts: Set<Int> = []
        public init(id: String, domain: String, freeMB: Int, images: Set<String>? = nil) {
            self.id = id; self.domain = domain; self.freeMB = freeMB; self.images = images
        }
    }

    public struct Placed: Sendable, Equatable {
        public var vm: ViolinSpec.VM
        public var host: String, domain: String
        public var mac: String
        public var nicPort: Int
        public var reason: String
    }

    public struct Plan: Sendable, Equatable {
        public var vni: UInt32
        public var vms: [Placed]
    }

    public struct Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        public let vm: String
        public let reason: String
        public var description: String { "\(vm): \(reason)" }
    }

    public static let defaultOverheadMB = 64
    /// 20,000 pairs: as many VMs in the infrastructure.
    public static let nicPorts = 20_000...59_999

    /// A running VIOLIN's VMs, for placing the ones added to it (`violin apply`): its VNI, and
    /// where each VM runs with the MAC it has.
    public struct Existing: Sendable, Equatable {
        public struct VM: Sendable, Equatable {
            public var host: String, mac: String
            public init(host: String, mac: String) { self.host = host; self.mac = mac }
        }
        public var vni: UInt32
        public var vms: [String: VM]
        public init(vni: UInt32, vms: [String: VM]) { self.vni = vni; self.vms = vms }
    }

    /// With `existing`, only the spec's VMs it does not hold are placed (the plan lists those),
    /// in its VNI, with MACs none of its VMs has, counting where its VMs run for `pack`,
    /// `spread` and anti-affinity. `heldPorts` are NIC ports bound on hosts that may not answer
    /// now (the inventory's VMs and their old copies): never given either.
    public static func place(_ spec: ViolinSpec, hosts: [Host], usedVNIs: Set<UInt32>, heldPorts: Set<Int> = [],
                             overheadMB: Int = defaultOverheadMB, existing: Existing? = nil) -> Result<Plan, Refusal> {
        guard let vni = existing?.vni ?? (1...UInt32(0xFF_FFFF)).lazy.first(where: { !usedVNIs.contains($0) }) else {
            return .failure(Refusal(vm: spec.name, reason: "every VNI is in use"))
        }
        var free = Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, $0.freeMB) })
        let domainOf = Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, $0.domain) })
        // A VM's NIC takes two UDP ports, nic_port (the switch's end) and nic_port + 1 (the guest's),
        // on whichever host it runs: none in use on any host is given again.
        var taken = [Bool](repeating: false, count: 65_537)
        for p in hosts.flatMap(\.usedPorts) + heldPorts where (0...65_535).contains(p) { taken[p] = true; taken[p + 1] = true }
        var nextPort = nicPorts.lowerBound
        var here: [String: [String]] = [:]   // host -> this VIOLIN's VMs placed there
        for (name, e) in existing?.vms ?? [:] { here[e.host, default: []].append(name) }
        var placed: [String: Placed] = [:]
        let index = Dictionary(uniqueKeysWithValues: spec.vms.enumerated().map { ($1.name, $0) })
        var macs = Set(existing?.vms.values.map(\.mac) ?? [])
        for vm in order(spec) where existing?.vms[vm.name] == nil {
            let need = vm.memoryMB + overheadMB
            let allowed = hosts.filter { admits($0, vm, spec) }
            let fitting = allowed.filter { free[$0.id]! >= need && !clashes(vm.name, on: $0.id, spec, here) }
            guard let h = choose(fitting, spec, vm: vm, here: here, free: free, domainOf: domainOf) else {
                return .failure(refusal(vm, need: need, spec, allowed: allowed, free: free))
            }
            free[h.id]! -= need
            guard let port = (nextPort..<nicPorts.upperBound).first(where: { !taken[$0] && !taken[$0 + 1] }) else {
                return .failure(Refusal(vm: vm.name, reason: "no free NIC port pair left in \(nicPorts)"))
            }
            taken[port] = true; taken[port + 1] = true
            nextPort = port + 2
            here[h.id, default: []].append(vm.name)
            var n = index[vm.name]! + 1
            while macs.contains(mac(n)) { n += 1 }
            macs.insert(mac(n))
            placed[vm.name] = Placed(vm: vm, host: h.id, domain: h.domain, mac: mac(n), nicPort: port,
                                     reason: reason(vm, h, spec, freeAfter: free[h.id]!, already: here[h.id]!.count - 1))
        }
        return .success(Plan(vni: vni, vms: spec.vms.compactMap { placed[$0.name] }))
    }

    /// The head first (it has the fewest choices), then pinned VMs, then the largest.
    static func order(_ spec: ViolinSpec) -> [ViolinSpec.VM] {
        spec.vms.enumerated().sorted { a, b in
            func rank(_ v: ViolinSpec.VM) -> Int { v.name == spec.head ? 0 : (v.host != nil || v.domain != nil) ? 1 : 2 }
            let (ra, rb) = (rank(a.element), rank(b.element))
            if ra != rb { return ra < rb }
            if a.element.memoryMB != b.element.memoryMB { return a.element.memoryMB > b.element.memoryMB }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// Whether the host may hold the VM at all (memory aside).
    static func admits(_ h: Host, _ vm: ViolinSpec.VM, _ spec: ViolinSpec) -> Bool {
        if h.draining { return false }
        if let images = h.images, !images.contains(vm.image) { return false }
        if let pin = vm.host, pin != h.id { return false }
        if let pin = vm.domain, pin != h.domain { return false }
        if vm.name == spec.head, h.domain != spec.homeDomain { return false }
        if spec.placement == .spread, vm.host == nil, vm.domain == nil, h.domain != spec.homeDomain { return false }
        return true
    }

    static func clashes(_ vm: String, on host: String, _ spec: ViolinSpec, _ here: [String: [String]]) -> Bool {
        let there = Set(here[host] ?? [])
        return spec.antiAffinity.contains { g in g.contains(vm) && g.contains { $0 != vm && there.contains($0) } }
    }

    /// How many of `vm`'s traffic-group mates are on `host` already.
    static func mates(_ vm: String, on host: String, _ spec: ViolinSpec, _ here: [String: [String]]) -> Int {
        let group = Set(spec.traffic.filter { $0.contains(vm) }.flatMap { $0 }).subtracting([vm])
        return (here[host] ?? []).filter { group.contains($0) }.count
    }

    static func choose(_ hosts: [Host], _ spec: ViolinSpec, vm: ViolinSpec.VM, here: [String: [String]], free: [String: Int],
                       domainOf: [String: String] = [:]) -> Host? {
        // VMs that talk: where their mates are (a host, else a domain) before anything else.
        let mateDomains = Set(here.keys.filter { mates(vm.name, on: $0, spec, here) > 0 }.compactMap { domainOf[$0] })
        return hosts.min { a, b in
            let (ma, mb) = (mates(vm.name, on: a.id, spec, here), mates(vm.name, on: b.id, spec, here))
            if ma != mb { return ma > mb }
            let near = (mateDomains.contains(a.domain), mateDomains.contains(b.domain))
            if near.0 != near.1 { return near.0 }
            let home = (a.domain == spec.homeDomain, b.domain == spec.homeDomain)
            if home.0 != home.1 { return home.0 }
            let (na, nb) = (here[a.id]?.count ?? 0, here[b.id]?.count ?? 0)
            switch spec.placement {
            case .pack:
                // Hosts already holding the VIOLIN first, then the tightest fit.
                if (na > 0) != (nb > 0) { return na > 0 }
                if free[a.id]! != free[b.id]! { return free[a.id]! < free[b.id]! }
            case .spread:
                if na != nb { return na < nb }
                if free[a.id]! != free[b.id]! { return free[a.id]! > free[b.id]! }
            }
            return a.id < b.id
        }
    }

    /// 52:54:00:00:hi:lo — the VM's number in its spec (MACs are unique within a VIOLIN only).
    static func mac(_ n: Int) -> String {
        func hex(_ b: Int) -> String { let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s }
        return "52:54:00:00:\(hex(n >> 8 & 0xFF)):\(hex(n & 0xFF))"
    }

    static func reason(_ vm: ViolinSpec.VM, _ h: Host, _ spec: ViolinSpec, freeAfter: Int, already: Int) -> String {
        var why = [spec.placement == .pack ? "pack" : "spread"]
        if vm.name == spec.head { why.append("head node: home domain \(spec.homeDomain)") }
        if let p = vm.host { why.append("pinned to \(p)") }
        if let p = vm.domain { why.append("pinned to domain \(p)") }
        why.append(already > 0 ? "\(already) of its VMs already there" : "first of its VMs there")
        if let g = spec.traffic.first(where: { $0.contains(vm.name) }) { why.append("talks with \(g.filter { $0 != vm.name }.joined(separator: ","))") }
        why.append("\(freeAfter) MiB left free")
        return "\(h.id) (\(why.joined(separator: "; ")))"
    }

    /// Why nothing fits, in numbers where memory is the cause.
    static func refusal(_ vm: ViolinSpec.VM, need: Int, _ spec: ViolinSpec, allowed: [Host], free: [String: Int]) -> Refusal {
        var scope = "any domain"
        if let p = vm.host { scope = "host \(p)" } else if let p = vm.domain { scope = "domain \(p)" }
        else if vm.name == spec.head || spec.placement == .spread { scope = spec.homeDomain }
        guard let best = allowed.max(by: { (free[$0.id]!, $1.id) < (free[$1.id]!, $0.id) }) else {
            return Refusal(vm: vm.name, reason: "no host in \(scope) can take it (image \(vm.image), not draining)")
        }
        if free[best.id]! >= need {
            return Refusal(vm: vm.name, reason: "every host in \(scope) with room already holds a VM of its anti-affinity group")
        }
        return Refusal(vm: vm.name, reason: "needs \(need) MiB in \(scope) (\(vm.memoryMB) + \(need - vm.memoryMB) overhead); the most free is \(free[best.id]!) MiB on \(best.id)")
    }
}

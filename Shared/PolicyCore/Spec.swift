/// A VIOLIN declared in a file (compose/violin-spec.yaml documents every field): its name,
/// home domain and head node, its VMs (listed, or N alike workers), and placement hints. Pure:
/// the YAML reader hands in a `SpecNode` tree with the line of every key, and every refusal
/// names the key and its line.

/// A document as the spec reader sees it.
public indirect enum SpecNode: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let key: String
        public let line: Int
        public let value: SpecNode
        public init(key: String, line: Int, value: SpecNode) { self.key = key; self.line = line; self.value = value }
    }
    case scalar(String, line: Int)
    case mapping([Entry], line: Int)
    case list([SpecNode], line: Int)

    public var line: Int {
        switch self {
        case .scalar(_, let l), .mapping(_, let l), .list(_, let l): l
        }
    }
}

/// A refusal: the key (as a path: `vms[2].memory_mb`), its line, and what is wrong.
public struct SpecError: Error, Equatable, Sendable, CustomStringConvertible {
    public let key: String
    public let line: Int
    public let reason: String
    public init(_ key: String, line: Int, _ reason: String) { self.key = key; self.line = line; self.reason = reason }
    public var description: String { "\(key) (line \(line)): \(reason)" }
}

public struct ViolinSpec: Sendable, Equatable {
    public enum Spreading: String, Sendable, CaseIterable { case pack, spread }

    public struct VM: Sendable, Equatable {
        public var name: String
        public var memoryMB: Int
        public var vcpus: Int
        public var image: String
        /// The address handed to the guest, if any.
        public var ip: String?
        /// Pins: a host, or a domain (not both).
        public var host: String?
        public var domain: String?
        public init(name: String, memoryMB: Int, vcpus: Int, image: String, ip: String? = nil, host: String? = nil, domain: String? = nil) {
            self.name = name; self.memoryMB = memoryMB; self.vcpus = vcpus; self.image = image; self.ip = ip
            self.host = host; self.domain = domain
        }
    }

    public var name: String
    public var homeDomain: String
    /// The head node: never leaves the home domain.
    public var head: String
    public var vms: [VM]
    public var placement: Spreading = .pack
    /// Groups of VMs no two of which share a host.
    public var antiAffinity: [[String]] = []
    /// Groups of VMs that talk to each other (a hint: placed on one host where they fit, else
    /// in one domain — the link wait the traffic-aware policy weighs, avoided from the start).
    public var traffic: [[String]] = []
    /// `always`: a VM lost with its host is made again on another host from its image.
    public var restart: Restart = .never
    public enum Restart: String, Sendable, CaseIterable { case never, always }
    /// `nat`: the head node gets a second NIC on its host's NAT network, to reach out.
    public var uplink: Uplink = .none
    public enum Uplink: String, Sendable, CaseIterable { case none, nat }
    /// How its VMs' NICs reach the switches: QEMU's UDP socket, or a TAP device (vhost-net
    /// where the host has it) that the switch makes on each host the VM runs on.
    public var nic: NIC = .udp
    public enum NIC: String, Sendable, CaseIterable { case udp, tap }

    public init(name: String, homeDomain: String, head: String, vms: [VM]) {
        self.name = name; self.homeDomain = homeDomain; self.head = head; self.vms = vms
    }

    public static let memoryRange = 16...65_536
    public static let vcpuRange = 1...64
    public static let workerRange = 1...1000
    static let topKeys = ["name", "home_domain", "head", "image", "memory_mb", "vcpus", "vms", "workers", "placement", "anti_affinity", "traffic", "restart", "uplink", "nic"]
    static let vmKeys = ["name", "memory_mb", "vcpus", "image", "ip", "host", "domain"]
    static let workerKeys = ["count", "name", "memory_mb", "vcpus", "image"]
}

extension ViolinSpec {
    /// Reads and checks a whole spec.
    public static func parse(_ root: SpecNode) throws(SpecError) -> ViolinSpec {
        let top = try Fields(root, path: "", allowed: topKeys)
        let name = try top.name("name", required: true)!
        let defaults = VM(name: "", memoryMB: try top.int("memory_mb", memoryRange) ?? 128,
                          vcpus: try top.int("vcpus", vcpuRange) ?? 1, image: try top.text("image") ?? "")
        var vms: [VM] = []
        var vmLines: [String: Int] = [:]
        if let list = top.node("vms") {
            guard case .list(let items, _) = list else { throw SpecError("vms", line: list.line, "must be a list of VMs") }
            for (i, item) in items.enumerated() {
                let vm = try Self.vm(item, path: "vms[\(i)]", defaults: defaults)
                guard vmLines[vm.name] == nil else { throw SpecError("vms[\(i)].name", line: item.line, "\(vm.name) is listed twice") }
                vmLines[vm.name] = item.line
                vms.append(vm)
            }
        }
        if let w = top.node("workers") {
            for vm in try Self.workers(w, defaults: defaults) {
                guard vmLines[vm.name] == nil else { throw SpecError("workers.name", line: w.line, "\(vm.name) is also listed in vms") }
                vmLines[vm.name] = w.line
                vms.append(vm)
            }
        }
        guard !vms.isEmpty else { throw SpecError("vms", line: root.line, "a VIOLIN needs at least one VM (vms or workers)") }
        var spec = ViolinSpec(name: name, homeDomain: try top.name("home_domain", required: true)!,
                              head: try top.name("head") ?? vms[0].name, vms: vms)
        if vmLines[spec.head] == nil { throw SpecError("head", line: top.line("head"), "\(spec.head) is not one of the VMs") }
        if let p = try top.text("placement") {
            guard let s = Spreading(rawValue: p) else { throw SpecError("placement", line: top.line("placement"), "must be pack or spread") }
            spec.placement = s
        }
        spec.antiAffinity = try Self.groups(top.node("anti_affinity"), known: vmLines)
        spec.traffic = try Self.groups(top.node("traffic"), known: vmLines, key: "traffic")
        for (i, g) in spec.traffic.enumerated() {
            if let clash = spec.antiAffinity.first(where: { Set($0).intersection(g).count >= 2 }) {
                throw SpecError("traffic[\(i)]", line: top.line("traffic"), "\(g) and the anti-affinity group \(clash) want two of the same VMs apart and together")
            }
        }
        if let r = try top.text("restart") {
            guard let restart = Restart(rawValue: r) else { throw SpecError("restart", line: top.line("restart"), "must be never or always") }
            spec.restart = restart
        }
        if let u = try top.text("uplink") {
            guard let uplink = Uplink(rawValue: u) else { throw SpecError("uplink", line: top.line("uplink"), "must be none or nat") }
            spec.uplink = uplink
        }
        if let n = try top.text("nic") {
            guard let nic = NIC(rawValue: n) else { throw SpecError("nic", line: top.line("nic"), "must be udp or tap") }
            // A TAP NIC's device is vm-NAME, a network device name of at most 15 characters.
            if nic == .tap, let long = vms.first(where: { $0.name.utf8.count > 12 }) {
                throw SpecError("nic", line: top.line("nic"), "tap needs VM names of at most 12 characters (\(long.name) is longer)")
            }
            spec.nic = nic
        }
        return spec
    }

    static func vm(_ node: SpecNode, path: String, defaults: VM) throws(SpecError) -> VM {
        let f = try Fields(node, path: path, allowed: vmKeys)
        var vm = defaults
        vm.name = try f.name("name", required: true)!
        vm.memoryMB = try f.int("memory_mb", memoryRange) ?? defaults.memoryMB
        vm.vcpus = try f.int("vcpus", vcpuRange) ?? defaults.vcpus
        vm.image = try f.text("image") ?? defaults.image
        if vm.image.isEmpty { throw SpecError(path + ".image", line: node.line, "\(vm.name) has no image (give image for the VIOLIN or the VM)") }
        vm.ip = try f.text("ip")
        if let ip = vm.ip, !Self.isIPv4(ip) { throw SpecError(path + ".ip", line: f.line("ip"), "must be an IPv4 address like 10.0.0.2") }
        vm.host = try f.name("host")
        vm.domain = try f.name("domain")
        if vm.host != nil && vm.domain != nil { throw SpecError(path + ".domain", line: f.line("domain"), "give host or domain, not both") }
        return vm
    }

    /// `workers: {count: 8, name: w, memory_mb: 128}`: w-1 ... w-8.
    static func workers(_ node: SpecNode, defaults: VM) throws(SpecError) -> [VM] {
        let f = try Fields(node, path: "workers", allowed: workerKeys)
        guard let count = try f.int("count", workerRange) else { throw SpecError("workers.count", line: node.line, "is required: 1-1000") }
        let prefix = try f.name("name") ?? "worker"
        var vm = defaults
        vm.memoryMB = try f.int("memory_mb", memoryRange) ?? defaults.memoryMB
        vm.vcpus = try f.int("vcpus", vcpuRange) ?? defaults.vcpus
        vm.image = try f.text("image") ?? defaults.image
        if vm.image.isEmpty { throw SpecError("workers.image", line: node.line, "the workers have no image (give image for the VIOLIN or the workers)") }
        return (1...count).map { i in var w = vm; w.name = "\(prefix)-\(i)"; return w }
    }

    static func groups(_ node: SpecNode?, known: [String: Int], key: String = "anti_affinity") throws(SpecError) -> [[String]] {
        guard let node else { return [] }
        guard case .list(let groups, _) = node else { throw SpecError(key, line: node.line, "must be a list of lists of VM names") }
        var out: [[String]] = []
        for (i, g) in groups.enumerated() {
            guard case .list(let names, _) = g else { throw SpecError("\(key)[\(i)]", line: g.line, "must be a list of VM names") }
            var group: [String] = []
            for n in names {
                guard case .scalar(let name, _) = n, known[name] != nil else {
                    throw SpecError("\(key)[\(i)]", line: n.line, "names a VM that is not in the spec")
                }
                group.append(name)
            }
            guard Set(group).count == group.count, group.count >= 2 else {
                throw SpecError("\(key)[\(i)]", line: g.line, "needs two or more different VMs")
            }
            out.append(group)
        }
        return out
    }

    static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { $0.count <= 3 && UInt8($0) != nil }
    }

    /// A name: 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit.
    static func isName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 32 && s.first != "-" && s.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
    }
}

/// One mapping's fields, checked against the keys it may have.
struct Fields {
    let path: String
    let mappingLine: Int
    let entries: [String: SpecNode.Entry]

    init(_ node: SpecNode, path: String, allowed: [String]) throws(SpecError) {
        guard case .mapping(let list, let line) = node else {
            throw SpecError(path.isEmpty ? "(document)" : path, line: node.line, "must be a mapping of keys to values")
        }
        self.path = path
        mappingLine = line
        var seen: [String: SpecNode.Entry] = [:]
        for e in list {
            let key = path.isEmpty ? e.key : path + "." + e.key
            guard allowed.contains(e.key) else { throw SpecError(key, line: e.line, "is not a key here (known: \(allowed.joined(separator: ", ")))") }
            guard seen[e.key] == nil else { throw SpecError(key, line: e.line, "is given twice") }
            seen[e.key] = e
        }
        entries = seen
    }

    func key(_ k: String) -> String { path.isEmpty ? k : path + "." + k }
    func node(_ k: String) -> SpecNode? { entries[k]?.value }
    func line(_ k: String) -> Int { entries[k]?.line ?? mappingLine }

    func text(_ k: String) throws(SpecError) -> String? {
        guard let e = entries[k] else { return nil }
        guard case .scalar(let s, _) = e.value, !s.isEmpty else { throw SpecError(key(k), line: e.line, "must be a non-empty text") }
        return s
    }

    func name(_ k: String, required: Bool = false) throws(SpecError) -> String? {
        guard let s = try text(k) else {
            if required { throw SpecError(key(k), line: mappingLine, "is required") }
            return nil
        }
        guard ViolinSpec.isName(s) else { throw SpecError(key(k), line: line(k), "must be 1-32 characters of a-z, 0-9 and '-'") }
        return s
    }

    func int(_ k: String, _ range: ClosedRange<Int>) throws(SpecError) -> Int? {
        guard let e = entries[k] else { return nil }
        guard case .scalar(let s, _) = e.value, let n = Int(s), range.contains(n) else {
            throw SpecError(key(k), line: e.line, "must be a whole number \(range.lowerBound)-\(range.upperBound)")
        }
        return n
    }
}

extension ViolinSpec {
    /// What `violin apply` does to a running VIOLIN: the VMs to add and to remove. Anything
    /// else that differs cannot change in place, and the refusal says what and how.
    public struct Change: Equatable, Sendable {
        public var added: [VM]
        public var removed: [String]
    }

    public static func change(from old: ViolinSpec, to new: ViolinSpec) -> Result<Change, SpecError> {
        func refuse(_ key: String, _ a: String, _ b: String, _ how: String = "") -> Result<Change, SpecError> {
            .failure(SpecError(key, line: 0, "cannot change in place (\(a) -> \(b))" + (how.isEmpty ? "" : "; \(how)")))
        }
        guard old.name == new.name else { return refuse("name", old.name, new.name, "a new name is a new VIOLIN: violin create") }
        guard old.homeDomain == new.homeDomain else { return refuse("home_domain", old.homeDomain, new.homeDomain, "move it with violin migrate NAME --to-domain") }
        guard old.head == new.head else { return refuse("head", old.head, new.head) }
        guard old.placement == new.placement else { return refuse("placement", old.placement.rawValue, new.placement.rawValue) }
        guard old.uplink == new.uplink else { return refuse("uplink", old.uplink.rawValue, new.uplink.rawValue) }
        guard old.nic == new.nic else { return refuse("nic", old.nic.rawValue, new.nic.rawValue) }
        guard old.traffic.map(Set.init) == new.traffic.map(Set.init) else { return refuse("traffic", "\(old.traffic)", "\(new.traffic)") }
        guard old.antiAffinity.map(Set.init) == new.antiAffinity.map(Set.init) else {
            return refuse("anti_affinity", "\(old.antiAffinity)", "\(new.antiAffinity)")
        }
        let before = Dictionary(uniqueKeysWithValues: old.vms.map { ($0.name, $0) })
        for vm in new.vms {
            guard let was = before[vm.name] else { continue }
            let fields: [(String, String, String)] = [
                ("memory_mb", "\(was.memoryMB)", "\(vm.memoryMB)"), ("vcpus", "\(was.vcpus)", "\(vm.vcpus)"), ("image", was.image, vm.image),
                ("ip", was.ip ?? "none", vm.ip ?? "none"), ("host", was.host ?? "none", vm.host ?? "none"),
                ("domain", was.domain ?? "none", vm.domain ?? "none"),
            ]
            if let (key, a, b) = fields.first(where: { $0.1 != $0.2 }) {
                return refuse("\(vm.name).\(key)", a, b, "remove \(vm.name) and add it under another name, or keep it as it is")
            }
        }
        let names = Set(new.vms.map(\.name))
        return .success(Change(added: new.vms.filter { before[$0.name] == nil }, removed: old.vms.map(\.name).filter { !names.contains($0) }))
    }
}

import CLibvirt
import Foundation

/// What the monitor needs of a hypervisor. `LibvirtHypervisor` is the real one; tests may
/// use a fake.
public protocol Hypervisor: AnyObject {
    func host() throws(HypervisorError) -> HostInfo
    func domains() throws(HypervisorError) -> [DomainStats]
    /// Sets the balloon target; returns the memory now in force, KiB.
    func setMemory(_ domain: String, kib: UInt64) throws(HypervisorError) -> UInt64
    /// Sets the CPU weight; returns the weight now in force.
    func setCPUWeight(_ domain: String, _ weight: UInt64) throws(HypervisorError) -> UInt64
    func cpuWeight(_ domain: String) throws(HypervisorError) -> UInt64
}

public struct HostInfo: Equatable, Sendable {
    public let cpus: Int
    public let memoryKiB: UInt64
    public let model: String
    /// Memory the host has free now (nil where the driver does not say).
    public var freeKiB: UInt64? = nil
    public init(cpus: Int, memoryKiB: UInt64, model: String, freeKiB: UInt64? = nil) {
        self.cpus = cpus; self.memoryKiB = memoryKiB; self.model = model; self.freeKiB = freeKiB
    }
}

/// A guest's memory as its balloon driver reports it (nil fields: not reported). The swap and
/// fault figures count from the guest's boot.
public struct GuestMemoryStats: Equatable, Sendable {
    /// Memory the guest leaves entirely unused (its MemFree), and what it could use without
    /// swapping (MemAvailable), KiB.
    public var unusedKiB: UInt64?
    public var availableKiB: UInt64?
    public var swapInKiB: UInt64?
    public var swapOutKiB: UInt64?
    public var majorFaults: UInt64?
    public init(unusedKiB: UInt64? = nil, availableKiB: UInt64? = nil, swapInKiB: UInt64? = nil, swapOutKiB: UInt64? = nil,
                majorFaults: UInt64? = nil) {
        self.unusedKiB = unusedKiB; self.availableKiB = availableKiB; self.swapInKiB = swapInKiB; self.swapOutKiB = swapOutKiB
        self.majorFaults = majorFaults
    }
}

public struct DomainStats: Equatable, Sendable {
    public let name: String
    public let uuid: String
    public let running: Bool
    public let vcpus: Int
    /// Total CPU time used, nanoseconds.
    public let cpuTimeNs: UInt64
    /// Current memory (the balloon's size) and the maximum, KiB.
    public let memoryKiB: UInt64
    public let maxMemoryKiB: UInt64
    /// The balloon driver's statistics, for a running guest that has one.
    public var guest: GuestMemoryStats? = nil
    /// Time its vCPU threads waited in the host's run queue since it started, nanoseconds (nil
    /// where unknown: filled in by the monitor from `VCPUWaitReader`, not by libvirt).
    public var vcpuWaitNs: UInt64? = nil
    /// Time its vCPU threads ran since it started, nanoseconds (the same reader's; nil where
    /// unknown). Demand counts this rather than the whole process's CPU time, which includes
    /// QEMU's I/O threads.
    public var vcpuRunNs: UInt64? = nil
}

public struct HypervisorError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable { case notFound = "not_found", unsupported, invalid, failed }
    public let kind: Kind
    public let message: String
    public var description: String { message }
    public init(kind: Kind, message: String) { self.kind = kind; self.message = message }
}

/// The hypervisor through libvirt: `test:///default` for fast tests, `qemu:///system` for real.
/// One connection, used from one thread at a time per object.
public final class LibvirtHypervisor: Hypervisor, @unchecked Sendable {
    public let uri: String
    let conn: virConnectPtr

    /// libvirt prints every error on stderr unless told otherwise; ours are reported as values.
    private static let quiet: Void = { virSetErrorFunc(nil) { _, _ in } }()

    public init(uri: String) throws(HypervisorError) {
        _ = Self.quiet
        self.uri = uri
        guard let c = virConnectOpen(uri) else {
            throw HypervisorError(kind: .failed, message: "cannot open \(uri): \(String(cString: violin_vir_last_error()))")
        }
        conn = c
    }

    deinit { virConnectClose(conn) }

    static func failure(_ what: String) -> HypervisorError {
        let code = violin_vir_last_error_code()
        let kind: HypervisorError.Kind = code == Int32(VIR_ERR_NO_DOMAIN.rawValue) ? .notFound
            : code == Int32(VIR_ERR_NO_SUPPORT.rawValue) || code == Int32(VIR_ERR_OPERATION_UNSUPPORTED.rawValue) ? .unsupported
            : code == Int32(VIR_ERR_INVALID_ARG.rawValue) ? .invalid : .failed
        return HypervisorError(kind: kind, message: "\(what): \(String(cString: violin_vir_last_error()))")
    }

    public func host() throws(HypervisorError) -> HostInfo {
        var info = virNodeInfo()
        guard virNodeGetInfo(conn, &info) == 0 else { throw Self.failure("node info") }
        let model = withUnsafeBytes(of: info.model) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let free = virNodeGetFreeMemory(conn)
        return HostInfo(cpus: Int(info.cpus), memoryKiB: UInt64(info.memory), model: model, freeKiB: free > 0 ? free / 1024 : nil)
    }

    public func domains() throws(HypervisorError) -> [DomainStats] {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let n = virConnectListAllDomains(conn, &list, 0)
        guard n >= 0, let list else { throw Self.failure("list domains") }
        defer { free(list) }
        var out: [DomainStats] = []
        for i in 0..<Int(n) {
            guard let d = list[i] else { continue }
            defer { virDomainFree(d) }
            var info = virDomainInfo()
            guard virDomainGetInfo(d, &info) == 0 else { continue }
            var uuid = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
            _ = virDomainGetUUIDString(d, &uuid)
            let running = Int32(info.state) == Int32(VIR_DOMAIN_RUNNING.rawValue)
            let id = String(cString: uuid)
            out.append(DomainStats(name: String(cString: virDomainGetName(d)), uuid: id, running: running,
                                   vcpus: Int(info.nrVirtCpu), cpuTimeNs: UInt64(info.cpuTime),
                                   memoryKiB: UInt64(info.memory), maxMemoryKiB: UInt64(info.maxMem),
                                   guest: running && readsGuestMemory ? guestMemory(d) : nil))
        }
        return out.sorted { $0.name < $1.name }
    }

    /// Whether `domains()` reads each running guest's balloon statistics (the monitor's
    /// connection does; the executor's need not).
    public var readsGuestMemory = false
    /// The balloon driver's statistics, as the guest last reported them (nil without them). The
    /// reporting period is the domain's own (`<memballoon><stats period='2'/>` in the executor's
    /// definitions): never changed on a running guest here — a period set at run time, just after
    /// a live migration, was followed by the guest's kernel finding its page lists corrupt in a
    /// chaos soak; and setting it waits for a migration's job to end.
    func guestMemory(_ d: virDomainPtr) -> GuestMemoryStats? {
        var stats = [virDomainMemoryStatStruct](repeating: virDomainMemoryStatStruct(), count: Int(VIR_DOMAIN_MEMORY_STAT_NR.rawValue))
        let n = virDomainMemoryStats(d, &stats, UInt32(stats.count), 0)
        guard n > 0 else { return nil }
        var g = GuestMemoryStats()
        for s in stats.prefix(Int(n)) {
            switch Int(s.tag) {
            case Int(VIR_DOMAIN_MEMORY_STAT_UNUSED.rawValue): g.unusedKiB = s.val
            case Int(VIR_DOMAIN_MEMORY_STAT_USABLE.rawValue): g.availableKiB = s.val
            case Int(VIR_DOMAIN_MEMORY_STAT_SWAP_IN.rawValue): g.swapInKiB = s.val
            case Int(VIR_DOMAIN_MEMORY_STAT_SWAP_OUT.rawValue): g.swapOutKiB = s.val
            case Int(VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT.rawValue): g.majorFaults = s.val
            default: break
            }
        }
        // Only the balloon's own figure (and RSS) without a driver in the guest: nothing to say.
        return g.unusedKiB == nil && g.availableKiB == nil ? nil : g
    }

    func lookup(_ name: String) throws(HypervisorError) -> virDomainPtr {
        guard let d = virDomainLookupByName(conn, name) else {
            throw HypervisorError(kind: .notFound, message: "no domain named \(name)")
        }
        return d
    }

    public func setMemory(_ domain: String, kib: UInt64) throws(HypervisorError) -> UInt64 {
        let d = try lookup(domain)
        defer { virDomainFree(d) }
        var info = virDomainInfo()
        guard virDomainGetInfo(d, &info) == 0 else { throw Self.failure("domain info") }
        guard kib > 0, kib <= UInt64(info.maxMem) else {
            throw HypervisorError(kind: .invalid, message: "balloon target \(kib) KiB is outside 1..\(info.maxMem) KiB")
        }
        guard virDomainSetMemory(d, UInt(kib)) == 0 else { throw Self.failure("set memory") }
        guard virDomainGetInfo(d, &info) == 0 else { throw Self.failure("domain info") }
        return UInt64(info.memory)
    }

    public func setCPUWeight(_ domain: String, _ weight: UInt64) throws(HypervisorError) -> UInt64 {
        let d = try lookup(domain)
        defer { virDomainFree(d) }
        guard violin_vir_set_cpu_weight(d, weight) == 0 else { throw Self.failure("set CPU weight") }
        return try cpuWeight(domain)
    }

    public func cpuWeight(_ domain: String) throws(HypervisorError) -> UInt64 {
        let d = try lookup(domain)
        defer { virDomainFree(d) }
        var value: UInt64 = 0
        var field = [CChar](repeating: 0, count: Int(VIR_TYPED_PARAM_FIELD_LENGTH))
        guard violin_vir_cpu_weight(d, &value, &field) == 0 else { throw Self.failure("CPU weight") }
        return value
    }
}

/// What the executor needs of a hypervisor: domains created from XML, destroyed, resumed and
/// inspected, live-migrated with their job's figures, and disks in a storage pool. The
/// executor reaches libvirt only through this (and `HypervisorConnector`), so its
/// orchestration runs against `InMemoryHypervisor` in unit tests.
public protocol MigratingHypervisor: Hypervisor {
    func create(xml: String) throws(HypervisorError) -> String
    func destroy(_ name: String) throws(HypervisorError)
    func resume(_ name: String) throws(HypervisorError)
    func state(_ name: String) -> DomainState
    func xml(_ name: String) throws(HypervisorError) -> String
    /// The domain's definition without what only a running domain has (ids, pty paths): what
    /// creates it again.
    func definition(_ name: String) throws(HypervisorError) -> String
    func freeMemoryMiB() -> UInt64
    /// Blocks until the migration ends.
    func migrate(_ name: String, to destination: String, options: MigrationOptions) throws(HypervisorError)
    func startPostCopy(_ name: String) throws(HypervisorError)
    func abortJob(_ name: String) throws(HypervisorError)
    func jobStats(_ name: String, completed: Bool) throws(HypervisorError) -> JobStats
    func createVolume(pool: String, name: String, capacityMiB: UInt64) throws(HypervisorError) -> String
    func deleteVolume(pool: String, name: String)
    /// Makes sure a directory-backed storage pool exists (and runs).
    func ensurePool(name: String, path: String) throws(HypervisorError)
    /// The VM's serial console (`ConsoleStream`); open it on a connection of its own.
    func openConsole(_ name: String) throws(HypervisorError) -> any ConsoleStream
}

/// Opens a connection to the hypervisor at a URI (each thread that blocks in libvirt opens its own).
public typealias HypervisorConnector = @Sendable (String) throws(HypervisorError) -> any MigratingHypervisor

public enum Hypervisors {
    /// libvirt, for real.
    public static let libvirt: HypervisorConnector = { uri throws(HypervisorError) in try LibvirtHypervisor(uri: uri) }
}

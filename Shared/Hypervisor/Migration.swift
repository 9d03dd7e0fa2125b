import CLibvirt
import Foundation

/// What the executor needs of a hypervisor beyond the monitor's reads: domains created from
/// XML, destroyed, inspected, and live-migrated peer-to-peer with their job's statistics.
public enum DomainState: String, Sendable, Equatable {
    /// `absent`: libvirt says it has no such domain; `unreachable`: libvirt did not answer (a
    /// broken connection, a restarting daemon) — the domain may well exist.
    case running, paused, shutoff, other, absent, unreachable
}

/// One migration's options (PROTOCOL.md §8.5).
public struct MigrationOptions: Sendable, Equatable {
    public var bandwidthMiBps: UInt64 = 0          // 0: no limit
    public var autoConverge = false
    public var postcopy = false
    public var copyStorage = false
    /// The memory (and disk) stream over TLS too, not only libvirt's own link: QEMU's TLS with
    /// the certificates in qemu.conf's `migrate_tls_x509_cert_dir` (`migrate_tls_force` makes
    /// libvirt refuse a migration without it). Set for every `qemu+tls` destination.
    public var tls = false
    public init() {}
}

/// A job's figures as libvirt reports them (bytes, milliseconds).
public struct JobStats: Sendable, Equatable {
    public var active = false
    public var elapsedMs: UInt64 = 0
    public var processed: UInt64 = 0
    public var remaining: UInt64 = 0
    public var total: UInt64 = 0
    public var bytesPerSecond: UInt64 = 0
    public var downtimeMs: UInt64?
    /// Pre-copy pass over memory (1 during the first full pass).
    public var iteration: UInt64 = 0
    /// How fast the guest dirties its memory, bytes per second (0 until QEMU measured it).
    public var dirtyBytesPerSecond: UInt64 = 0
    public init() {}
}

extension LibvirtHypervisor {
    /// Starts a transient domain from its XML; returns its UUID.
    public func create(xml: String) throws(HypervisorError) -> String {
        guard let d = virDomainCreateXML(conn, xml, 0) else { throw Self.failure("create domain") }
        defer { virDomainFree(d) }
        return Self.uuid(d)
    }

    public func destroy(_ name: String) throws(HypervisorError) {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        guard virDomainDestroy(d) == 0 else { throw Self.failure("destroy \(name)") }
    }

    public func resume(_ name: String) throws(HypervisorError) {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        guard virDomainResume(d) == 0 else { throw Self.failure("resume \(name)") }
    }

    public func state(_ name: String) -> DomainState {
        guard let d = virDomainLookupByName(conn, name) else { return Self.missingOrUnreachable() }
        defer { virDomainFree(d) }
        var state: Int32 = 0, reason: Int32 = 0
        guard virDomainGetState(d, &state, &reason, 0) == 0 else { return Self.missingOrUnreachable() }
        switch UInt32(state) {
        case VIR_DOMAIN_RUNNING.rawValue: return .running
        case VIR_DOMAIN_PAUSED.rawValue: return .paused
        case VIR_DOMAIN_SHUTOFF.rawValue: return .shutoff
        default: return .other
        }
    }

    /// After a failed lookup: libvirt said "no such domain", or it did not answer at all.
    static func missingOrUnreachable() -> DomainState {
        violin_vir_last_error_code() == Int32(VIR_ERR_NO_DOMAIN.rawValue) ? .absent : .unreachable
    }

    public func xml(_ name: String) throws(HypervisorError) -> String { try xml(name, flags: 0) }

    public func definition(_ name: String) throws(HypervisorError) -> String {
        try xml(name, flags: UInt32(VIR_DOMAIN_XML_MIGRATABLE.rawValue))
    }

    func xml(_ name: String, flags: UInt32) throws(HypervisorError) -> String {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        guard let p = virDomainGetXMLDesc(d, flags) else { throw Self.failure("XML of \(name)") }
        defer { free(p) }
        return String(cString: p)
    }

    /// Free memory of this host, MiB.
    public func freeMemoryMiB() -> UInt64 { virNodeGetFreeMemory(conn) / 1_048_576 }

    /// Live-migrates `name` peer-to-peer to the libvirt at `destination` (e.g.
    /// qemu+tcp://10.0.0.2/system). Blocks until it ends; libvirt rolls a failed one back.
    public func migrate(_ name: String, to destination: String, options: MigrationOptions) throws(HypervisorError) {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        var flags = VIR_MIGRATE_LIVE.rawValue | VIR_MIGRATE_PEER2PEER.rawValue
        if options.autoConverge { flags |= VIR_MIGRATE_AUTO_CONVERGE.rawValue }
        if options.postcopy { flags |= VIR_MIGRATE_POSTCOPY.rawValue }
        if options.copyStorage { flags |= VIR_MIGRATE_NON_SHARED_DISK.rawValue }
        if options.tls { flags |= VIR_MIGRATE_TLS.rawValue }
        var params: virTypedParameterPtr?
        var n: Int32 = 0, cap: Int32 = 0
        defer { virTypedParamsFree(params, n) }
        if options.bandwidthMiBps > 0 {
            _ = virTypedParamsAddULLong(&params, &n, &cap, VIR_MIGRATE_PARAM_BANDWIDTH, options.bandwidthMiBps)
        }
        guard virDomainMigrateToURI3(d, destination, params, UInt32(n), flags) == 0 else {
            throw Self.failure("migrate \(name) to \(destination)")
        }
    }

    /// Switches a running post-copy-enabled migration to post-copy.
    public func startPostCopy(_ name: String) throws(HypervisorError) {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        guard virDomainMigrateStartPostCopy(d, 0) == 0 else { throw Self.failure("post-copy \(name)") }
    }

    public func abortJob(_ name: String) throws(HypervisorError) {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        guard virDomainAbortJob(d) == 0 else { throw Self.failure("abort job of \(name)") }
    }

    /// The running job's figures, or with `completed` the last finished job's (kept by libvirt).
    public func jobStats(_ name: String, completed: Bool = false) throws(HypervisorError) -> JobStats {
        let d = try lookup(name)
        defer { virDomainFree(d) }
        var type: Int32 = 0
        var params: virTypedParameterPtr?
        var n: Int32 = 0
        let flags = completed ? VIR_DOMAIN_JOB_STATS_COMPLETED.rawValue : 0
        guard virDomainGetJobStats(d, &type, &params, &n, flags) == 0 else { throw Self.failure("job stats of \(name)") }
        defer { virTypedParamsFree(params, n) }
        func value(_ key: String) -> UInt64? {
            var v: UInt64 = 0
            return virTypedParamsGetULLong(params, n, key, &v) == 1 ? v : nil
        }
        var s = JobStats()
        s.active = UInt32(type) != VIR_DOMAIN_JOB_NONE.rawValue && UInt32(type) != VIR_DOMAIN_JOB_COMPLETED.rawValue
            && UInt32(type) != VIR_DOMAIN_JOB_FAILED.rawValue && UInt32(type) != VIR_DOMAIN_JOB_CANCELLED.rawValue
        s.elapsedMs = value(VIR_DOMAIN_JOB_TIME_ELAPSED) ?? 0
        s.processed = value(VIR_DOMAIN_JOB_DATA_PROCESSED) ?? 0
        s.remaining = value(VIR_DOMAIN_JOB_DATA_REMAINING) ?? 0
        s.total = value(VIR_DOMAIN_JOB_DATA_TOTAL) ?? 0
        s.bytesPerSecond = value(VIR_DOMAIN_JOB_MEMORY_BPS) ?? 0
        s.downtimeMs = value(VIR_DOMAIN_JOB_DOWNTIME)
        s.iteration = value(VIR_DOMAIN_JOB_MEMORY_ITERATION) ?? 0
        // Pages per second times the page size; a product past UInt64 is clamped, never trapped.
        let (dirty, over) = (value(VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE) ?? 0).multipliedReportingOverflow(by: value(VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE) ?? 4096)
        s.dirtyBytesPerSecond = over ? .max : dirty
        return s
    }

    static func uuid(_ d: virDomainPtr) -> String {
        var uuid = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        _ = virDomainGetUUIDString(d, &uuid)
        return String(cString: uuid)
    }
}

/// Disks in a libvirt storage pool of type `dir`: a live migration that copies storage finds
/// the same pool on the destination, and libvirt creates the disk there before copying it.
extension LibvirtHypervisor {
    /// Makes sure the pool exists and runs (creating its directory when needed).
    public func ensurePool(name: String, path: String) throws(HypervisorError) {
        if let p = virStoragePoolLookupByName(conn, name) {
            defer { virStoragePoolFree(p) }
            if virStoragePoolIsActive(p) != 1, virStoragePoolCreate(p, 0) != 0 { throw Self.failure("start pool \(name)") }
            return
        }
        let xml = "<pool type='dir'><name>\(name)</name><target><path>\(path)</path></target></pool>"
        guard let p = virStoragePoolCreateXML(conn, xml, VIR_STORAGE_POOL_CREATE_WITH_BUILD.rawValue) else {
            throw Self.failure("create pool \(name)")
        }
        virStoragePoolFree(p)
    }

    /// A sparse raw volume; returns its path.
    public func createVolume(pool: String, name: String, capacityMiB: UInt64) throws(HypervisorError) -> String {
        guard let p = virStoragePoolLookupByName(conn, pool) else { throw Self.failure("pool \(pool)") }
        defer { virStoragePoolFree(p) }
        let xml = "<volume><name>\(name)</name><capacity unit='MiB'>\(capacityMiB)</capacity><allocation>0</allocation>"
            + "<target><format type='raw'/></target></volume>"
        guard let v = virStorageVolCreateXML(p, xml, 0) else { throw Self.failure("create volume \(name)") }
        defer { virStorageVolFree(v) }
        guard let path = virStorageVolGetPath(v) else { throw Self.failure("path of volume \(name)") }
        defer { free(path) }
        return String(cString: path)
    }

    /// Deletes a volume of the pool; a missing one is not an error.
    public func deleteVolume(pool: String, name: String) {
        guard let p = virStoragePoolLookupByName(conn, pool) else { return }
        defer { virStoragePoolFree(p) }
        _ = virStoragePoolRefresh(p, 0)
        guard let v = virStorageVolLookupByName(p, name) else { return }
        defer { virStorageVolFree(v) }
        _ = virStorageVolDelete(v, 0)
    }

    /// The names of the pool's volumes.
    public func volumes(pool: String) -> [String] {
        guard let p = virStoragePoolLookupByName(conn, pool) else { return [] }
        defer { virStoragePoolFree(p) }
        _ = virStoragePoolRefresh(p, 0)
        var list: UnsafeMutablePointer<virStorageVolPtr?>?
        let n = virStoragePoolListAllVolumes(p, &list, 0)
        guard n >= 0, let list else { return [] }
        defer { free(list) }
        var out: [String] = []
        for i in 0..<Int(n) {
            guard let v = list[i] else { continue }
            out.append(String(cString: virStorageVolGetName(v)))
            virStorageVolFree(v)
        }
        return out.sorted()
    }
}

extension LibvirtHypervisor: MigratingHypervisor {}

extension MigratingHypervisor {
    /// The running job's figures (the completed job's with `completed`).
    public func jobStats(_ name: String) throws(HypervisorError) -> JobStats { try jobStats(name, completed: false) }
}

/// Migration jobs: their states, and what a restarted executor does with one it finds
/// unfinished in its journal. Pure: the executor feeds in what libvirt says.
public enum JobState: String, Sendable, Equatable, CaseIterable {
    /// `postcopy`: the guest runs at the destination and pulls the rest of its memory from the
    /// source; from here on the source is never resumed.
    case queued, preparing, migrating, postcopy, completed, failed, cancelled
    case rolledBack = "rolled_back"

    public var isFinal: Bool { self == .completed || self == .failed || self == .cancelled || self == .rolledBack }
}

/// Where a VM is, seen on one host.
public enum Presence: Sendable, Equatable {
    case running, paused, absent, unknown      // unknown: that host's libvirt does not answer
}

/// What to do about an unfinished job after a restart.
public struct Recovery: Equatable, Sendable {
    public enum Outcome: String, Sendable { case completed, rolledBack = "rolled_back", wait, lost }
    public var outcome: Outcome
    public var destroySource = false
    public var destroyDestination = false
    public var resumeSource = false
    public var resumeDestination = false
    public var why: String

    /// The VM must end running in exactly one place. `migrationActive`: libvirt on the source
    /// still runs the migration job (libvirtd drives a peer-to-peer migration itself, so it can
    /// outlive the executor that asked for it).
    public static func decide(source: Presence, destination: Presence, migrationActive: Bool, state: JobState = .migrating) -> Recovery {
        if migrationActive { return Recovery(outcome: .wait, why: "the migration is still running in libvirt") }
        if state == .postcopy { return afterPostCopy(source: source, destination: destination) }
        switch (source, destination) {
        case (.running, .absent):
            return Recovery(outcome: .rolledBack, why: "the VM runs on the source only")
        case (.paused, .absent):
            return Recovery(outcome: .rolledBack, resumeSource: true, why: "the VM is paused on the source only: resumed")
        case (.absent, .running):
            return Recovery(outcome: .completed, why: "the VM runs on the destination only")
        case (.paused, .running):
            return Recovery(outcome: .completed, destroySource: true,
                            why: "the destination runs the VM; the paused source copy is destroyed")
        case (.running, .paused), (.running, .running):
            return Recovery(outcome: .rolledBack, destroyDestination: true,
                            why: "the source still runs the VM; the destination's copy is destroyed")
        case (.absent, .paused):
            // libvirt no longer migrates: nothing will resume it but us.
            return Recovery(outcome: .completed, resumeDestination: true,
                            why: "only the destination holds the VM (paused): resumed there")
        case (.paused, .paused):
            return Recovery(outcome: .rolledBack, destroyDestination: true, resumeSource: true,
                            why: "both copies paused: the destination's destroyed, the source resumed")
        case (.absent, .absent):
            return Recovery(outcome: .lost, why: "the VM is on neither host")
        case (.running, .unknown):
            // Before post-copy the destination resumes the guest only after the source has
            // stopped it: a source that runs the VM was never replaced.
            return Recovery(outcome: .rolledBack, why: "the VM runs on the source; the destination's libvirt does not answer")
        case (.unknown, _), (_, .unknown):
            return Recovery(outcome: .wait, why: "a host's libvirt does not answer")
        }
    }

    /// What the executor does once recovery has decided, in order — what a migration that had
    /// run to the same end would have done. A completed job cuts the network over (the MAC
    /// announced at the destination, the source port retired with its grace forwarding),
    /// deletes the source volume of a `copy_storage` migration and publishes
    /// `executor.migration_completed` (the policy's inventory follows it); a rolled-back one
    /// removes the destination's port. Every outcome is journaled and published.
    public func effects(copyStorage: Bool) -> [MigrationEffect] {
        switch outcome {
        case .completed: [.cutOver] + (copyStorage ? [.deleteSourceDisk] : []) + [.journal, .publishCompleted]
        case .rolledBack: [.removeDestinationPort, .journal, .publishFailed]
        case .lost: [.journal, .publishFailed]
        case .wait: []
        }
    }

    /// A job whose hosts' libvirt has not answered for this long (with no migration seen
    /// running) ends `failed`, the VM left as it is; one libvirt still migrates is waited for.
    public static let unreachableLimitS = 600.0

    /// The job after a host's libvirt stayed silent for `seconds`: failed, the VM untouched.
    public static func gaveUp(after seconds: Double) -> Recovery {
        Recovery(outcome: .lost, why: "a host's libvirt has not answered for \(Int(seconds)) s: the VM is left as it is")
    }
}

extension Recovery {
    /// The executor died during post-copy: the destination holds the only current copy of the
    /// guest's memory (with what it had not yet pulled lost with the source's process, if that
    /// died too). The source's copy is stale: it is destroyed, never resumed.
    static func afterPostCopy(source: Presence, destination: Presence) -> Recovery {
        let destroy = source == .running || source == .paused
        switch destination {
        case .running:
            return Recovery(outcome: .completed, destroySource: destroy, why: "post-copy: the destination runs the VM; the stale source copy is destroyed")
        case .paused:
            return Recovery(outcome: .completed, destroySource: destroy, resumeDestination: true,
                            why: "post-copy: the destination holds the VM (paused): resumed there; the stale source copy is destroyed")
        case .absent:
            return Recovery(outcome: .lost, why: "post-copy: the destination lost the VM; the source's copy is stale and is not resumed")
        case .unknown:
            return Recovery(outcome: .wait, why: "post-copy: the destination's libvirt does not answer")
        }
    }
}

/// A host back from a crash or a power cut: its mesh restores the ports of the VMs it had, but
/// the VMs are gone (made again elsewhere, or migrated away while it was out). Such a port keeps
/// the host in the VIOLIN's mesh for nothing. Pure: the executor looks twice, a while apart (an
/// incoming migration's domain appears within seconds of its port), and removes what both
/// looks found stale.
public enum StalePorts {
    /// The VM ports (`vm-<name>`) whose VM this host neither runs nor keeps stopped, nor is
    /// migrating: `ports` as (vni, port name).
    public static func find(ports: [(vni: UInt32, name: String)], present: Set<String>, busy: Set<String>) -> [(vni: UInt32, name: String)] {
        ports.filter { p in
            guard p.name.hasPrefix("vm-") else { return false }
            let vm = String(p.name.dropFirst(3))
            return !present.contains(vm) && !busy.contains(vm)
        }
    }

    /// What both looks found stale.
    public static func confirmed(_ first: [(vni: UInt32, name: String)], _ second: [(vni: UInt32, name: String)]) -> [(vni: UInt32, name: String)] {
        second.filter { s in first.contains { $0.vni == s.vni && $0.name == s.name } }
    }
}

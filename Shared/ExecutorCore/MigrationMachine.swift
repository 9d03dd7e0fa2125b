/// One migration job as a state machine: an event in, the job's new state and the effects to
/// carry out. Pure — the executor's runner does the I/O each effect names (the journal, the
/// meshes, libvirt, the bus) and feeds back what came of it as the next event.
///
///     queued ──begin──▶ preparing ──destinationReady──▶ migrating ──postCopyStarted──▶ postcopy
///        │                  │                              │                            │
///        └─cancelled        └─failed                       ├─finished(error)─▶ failed / cancelled
///                                                          └─finished(nil)──┬───────────┘
///                                                                           ▼
///                                     (figures, cutOver) ──────────────▶ completed
///
/// Once the destination runs post-copy the guest's memory is split between the hosts: the job
/// is never aborted, and the source is never resumed (recovery agrees: `Recovery.decide`).
public struct MigrationJob: Sendable, Equatable {
    public struct Options: Sendable, Equatable {
        public var postcopy = false
        public var copyStorage = false
        public var timeoutS = 120.0
        public init() {}
    }

    public var state: JobState = .queued
    public var options: Options
    /// Why it is being aborted (cancelled, or past its timeout), once it is.
    public var aborting: String?
    public var error = ""
    public var processed: Int?, remaining: Int?, rate: Int?
    public var elapsedMs: Int?, downtimeMs: Int?, blackoutMs: Int?
    /// libvirt's migrate call has returned without error; the cut-over is under way.
    public var transferred = false

    public init(options: Options) { self.options = options }
}

/// libvirt's figures for a running migration.
public struct MigrationProgress: Sendable, Equatable {
    public var processed: Int, remaining: Int, total: Int, rate: Int, elapsedMs: Int
    /// The pass over memory (1 during the first full pass).
    public var iteration: Int
    /// Bytes per second the guest dirties.
    public var dirtyRate: Int
    public init(processed: Int, remaining: Int, total: Int, rate: Int, elapsedMs: Int, iteration: Int, dirtyRate: Int = 0) {
        self.processed = processed; self.remaining = remaining; self.total = total; self.rate = rate
        self.elapsedMs = elapsedMs; self.iteration = iteration; self.dirtyRate = dirtyRate
    }
}

public enum MigrationEvent: Sendable, Equatable {
    /// A migration slot is free and the job's thread runs; `cancelled`: it was cancelled while queued.
    case begin(cancelled: Bool)
    case destinationReady
    case destinationFailed(String)
    /// The runner's periodic look at a running migration.
    case tick(elapsedS: Double, cancelled: Bool, progress: MigrationProgress?)
    case postCopyStarted
    /// libvirt's migrate call returned (nil: it succeeded).
    case finished(error: String?)
    /// The destination's own figures for the finished job.
    case figures(elapsedMs: Int?, downtimeMs: Int?, processed: Int?)
    case cutOver(blackoutMs: Int?)
}

public enum MigrationEffect: Sendable, Equatable {
    public enum Phase: String, Sendable { case precopy, postcopy, aborting }
    /// Write the job to the journal.
    case journal
    case publishStarted
    /// Ask the destination's mesh for the VM's port (answers `destinationReady`/`destinationFailed`).
    case prepareDestination
    /// Start libvirt's migrate (it answers `finished` when it returns).
    case startMigration
    case abortMigration
    /// Switch to post-copy (answers `postCopyStarted` if libvirt agrees).
    case startPostCopy
    case publishProgress(Phase, MigrationProgress)
    case removeDestinationPort
    /// Let the next queued migration start.
    case releaseSlot
    /// Wait for the other migrations of the same VIOLIN (one network cut-over for all). A job
    /// that fails arrives too, when its runner ends, so the others never wait for it in vain.
    case joinCutOver
    /// Read the destination's figures (answers `figures`).
    case readFigures
    /// Announce the MAC at the destination, retire the source port (answers `cutOver`).
    case cutOver
    case deleteSourceDisk
    case publishCompleted
    case publishFailed
}

public enum MigrationMachine {
    /// The job after `event`, and what to do, in order.
    public static func step(_ job: MigrationJob, _ event: MigrationEvent) -> (MigrationJob, [MigrationEffect]) {
        var j = job
        switch (job.state, event) {
        case (.queued, .begin(let cancelled)):
            if cancelled { return fail(j, .cancelled, "cancelled before it started") }
            j.state = .preparing
            return (j, [.journal, .publishStarted, .prepareDestination])
        case (.preparing, .destinationFailed(let why)):
            return fail(j, .failed, "the destination's mesh could not prepare the port: \(why)")
        case (.preparing, .destinationReady):
            j.state = .migrating
            return (j, [.journal, .startMigration])
        case (.migrating, .tick), (.postcopy, .tick):
            return tick(j, event)
        case (.migrating, .postCopyStarted):
            j.state = .postcopy
            return (j, [.journal])
        case (.migrating, .finished(let error)), (.postcopy, .finished(let error)):
            return finished(j, error)
        case (.migrating, .figures(let e, let d, let p)), (.postcopy, .figures(let e, let d, let p)):
            guard j.transferred else { return (j, []) }
            if let e, e > 0 { j.elapsedMs = e }
            j.downtimeMs = d ?? j.downtimeMs
            j.processed = p ?? j.processed
            j.remaining = 0
            return (j, [.cutOver])
        case (.migrating, .cutOver(let blackout)), (.postcopy, .cutOver(let blackout)):
            guard j.transferred else { return (j, []) }
            j.blackoutMs = blackout
            j.state = .completed
            return (j, (j.options.copyStorage ? [.deleteSourceDisk] : []) + [.journal, .publishCompleted])
        default:
            // An event that does not apply in this state (a late tick, a second answer): nothing.
            return (j, [])
        }
    }

    private static func fail(_ job: MigrationJob, _ state: JobState, _ error: String) -> (MigrationJob, [MigrationEffect]) {
        var j = job
        j.state = state
        j.error = error
        return (j, [.journal, .publishFailed])
    }

    /// A look at the running migration: abort when cancelled or late (never in post-copy),
    /// switch to post-copy after the first pass (with that option), record and publish progress.
    private static func tick(_ job: MigrationJob, _ event: MigrationEvent) -> (MigrationJob, [MigrationEffect]) {
        guard case .tick(let elapsed, let cancelled, let progress) = event, !job.transferred else { return (job, []) }
        var j = job
        var effects: [MigrationEffect] = []
        if j.state == .migrating, j.aborting == nil {
            if cancelled {
                j.aborting = "cancelled"
            } else if elapsed > j.options.timeoutS {
                j.aborting = "did not converge within \(j.options.timeoutS) s: aborted"
            }
            if j.aborting != nil { effects.append(.abortMigration) }
        }
        guard let p = progress else { return (j, effects) }
        if j.options.postcopy, j.state == .migrating, j.aborting == nil, p.iteration >= 2 { effects.append(.startPostCopy) }
        j.processed = p.processed; j.remaining = p.remaining; j.rate = p.rate
        let phase: MigrationEffect.Phase = j.aborting != nil ? .aborting : j.state == .postcopy ? .postcopy : .precopy
        return (j, effects + [.journal, .publishProgress(phase, p)])
    }

    private static func finished(_ job: MigrationJob, _ error: String?) -> (MigrationJob, [MigrationEffect]) {
        guard !job.transferred else { return (job, []) }
        var j = job
        guard let error else {
            // The whole VIOLIN moves before the network cuts over; the next migration may start.
            j.transferred = true
            return (j, [.releaseSlot, .joinCutOver, .readFigures])
        }
        if j.state == .postcopy {
            // The destination holds part of the memory: the source's copy is stale. The VM
            // stays where it is (paused) for recovery; nothing is rolled back.
            let (f, effects) = fail(j, .failed, "post-copy failed: \(error); the source is not resumed")
            return (f, [.releaseSlot] + effects)
        }
        let (f, effects) = j.aborting == "cancelled" ? fail(j, .cancelled, "cancelled")
            : fail(j, .failed, j.aborting ?? "libvirt: \(error)")
        return (f, [.releaseSlot, .removeDestinationPort] + effects)
    }
}

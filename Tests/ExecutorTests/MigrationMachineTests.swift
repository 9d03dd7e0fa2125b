import ExecutorCore
import Testing

/// The migration job's state machine: its table, event by event, and what recovery does for a
/// job whose executor died in each state it journals.
@Suite struct MigrationMachineTests {
    static let progress = MigrationProgress(processed: 100, remaining: 50, total: 150, rate: 10, elapsedMs: 900, iteration: 1)
    static let secondPass = MigrationProgress(processed: 200, remaining: 20, total: 150, rate: 10, elapsedMs: 1900, iteration: 2)

    func job(postcopy: Bool = false, copyStorage: Bool = false, timeoutS: Double = 60) -> MigrationJob {
        var o = MigrationJob.Options()
        o.postcopy = postcopy; o.copyStorage = copyStorage; o.timeoutS = timeoutS
        return MigrationJob(options: o)
    }

    /// Feeds the events in order; the job at the end and every effect, in order.
    func run(_ start: MigrationJob, _ events: [MigrationEvent]) -> (MigrationJob, [MigrationEffect]) {
        var j = start, all: [MigrationEffect] = []
        for e in events {
            let (next, effects) = MigrationMachine.step(j, e)
            j = next
            all += effects
        }
        return (j, all)
    }

    @Test func aMigrationThatSucceeds() {
        let (j, effects) = run(job(copyStorage: true), [
            .begin(cancelled: false), .destinationReady, .tick(elapsedS: 1, cancelled: false, progress: Self.progress),
            .finished(error: nil), .figures(elapsedMs: 1500, downtimeMs: 40, processed: 4096), .cutOver(blackoutMs: 70),
        ])
        #expect(j.state == .completed && j.error.isEmpty)
        #expect(j.elapsedMs == 1500 && j.downtimeMs == 40 && j.processed == 4096 && j.remaining == 0 && j.blackoutMs == 70)
        #expect(effects == [.journal, .publishStarted, .prepareDestination, .journal, .startMigration,
                            .journal, .publishProgress(.precopy, Self.progress),
                            .releaseSlot, .joinCutOver, .readFigures, .cutOver, .deleteSourceDisk, .journal, .publishCompleted])
    }

    @Test func cancelledWhileQueuedNeverStarts() {
        let (j, effects) = run(job(), [.begin(cancelled: true)])
        #expect(j.state == .cancelled && j.error == "cancelled before it started")
        #expect(effects == [.journal, .publishFailed])
    }

    @Test func aDestinationThatCannotPrepareFailsTheJob() {
        let (j, effects) = run(job(), [.begin(cancelled: false), .destinationFailed("unavailable")])
        #expect(j.state == .failed && j.error.contains("unavailable"))
        #expect(!effects.contains(.startMigration) && effects.suffix(2) == [.journal, .publishFailed])
    }

    @Test func cancelAbortsOnceAndRollsTheDestinationBack() {
        let (j, effects) = run(job(), [
            .begin(cancelled: false), .destinationReady, .tick(elapsedS: 1, cancelled: true, progress: nil),
            .tick(elapsedS: 2, cancelled: true, progress: Self.progress), .finished(error: "operation aborted"),
        ])
        #expect(j.state == .cancelled && j.error == "cancelled")
        #expect(effects.filter { $0 == .abortMigration }.count == 1, "abort is asked once")
        #expect(effects.contains(.publishProgress(.aborting, Self.progress)))
        #expect(effects.suffix(4) == [.releaseSlot, .removeDestinationPort, .journal, .publishFailed])
    }

    @Test func aMigrationPastItsTimeoutIsAborted() {
        let (j, effects) = run(job(timeoutS: 5), [
            .begin(cancelled: false), .destinationReady, .tick(elapsedS: 4, cancelled: false, progress: nil),
            .tick(elapsedS: 6, cancelled: false, progress: nil), .finished(error: "operation aborted"),
        ])
        #expect(j.state == .failed && j.error.contains("did not converge within 5.0 s"))
        #expect(effects.filter { $0 == .abortMigration }.count == 1)
    }

    @Test func libvirtFailingIsAFailureWithTheDestinationRolledBack() {
        let (j, effects) = run(job(), [.begin(cancelled: false), .destinationReady, .finished(error: "connection refused")])
        #expect(j.state == .failed && j.error == "libvirt: connection refused")
        #expect(effects.contains(.removeDestinationPort))
    }

    /// Post-copy: asked after the first pass, journaled as a state of its own; from then on
    /// neither a cancel nor the timeout aborts, and a failure does not roll back.
    @Test func postCopyIsAStateThatNeverRollsBack() {
        let (j, effects) = run(job(postcopy: true, timeoutS: 5), [
            .begin(cancelled: false), .destinationReady, .tick(elapsedS: 1, cancelled: false, progress: Self.progress),
            .tick(elapsedS: 2, cancelled: false, progress: Self.secondPass),
        ])
        #expect(!effects.prefix(7).contains(.startPostCopy), "not during the first pass")
        #expect(effects.last == .publishProgress(.precopy, Self.secondPass) && effects.contains(.startPostCopy))
        let (pc, pcEffects) = MigrationMachine.step(j, .postCopyStarted)
        #expect(pc.state == .postcopy && pcEffects == [.journal])
        let (late, lateEffects) = run(pc, [.tick(elapsedS: 9, cancelled: true, progress: Self.secondPass)])
        #expect(late.aborting == nil && !lateEffects.contains(.abortMigration) && lateEffects.contains(.publishProgress(.postcopy, Self.secondPass)))
        let (failed, failedEffects) = MigrationMachine.step(late, .finished(error: "destination died"))
        #expect(failed.state == .failed && failed.error.contains("the source is not resumed"))
        #expect(!failedEffects.contains(.removeDestinationPort))
        let (done, doneEffects) = run(late, [.finished(error: nil), .figures(elapsedMs: nil, downtimeMs: nil, processed: nil), .cutOver(blackoutMs: nil)])
        #expect(done.state == .completed && doneEffects.last == .publishCompleted)
    }

    @Test func eventsThatDoNotApplyChangeNothing() {
        let queued = job()
        for e: MigrationEvent in [.destinationReady, .finished(error: nil), .cutOver(blackoutMs: 1), .postCopyStarted,
                                  .tick(elapsedS: 1, cancelled: true, progress: nil)] {
            let (j, effects) = MigrationMachine.step(queued, e)
            #expect(j == queued && effects.isEmpty, "\(e) on a queued job")
        }
        let (done, _) = run(job(), [.begin(cancelled: false), .destinationReady, .finished(error: nil), .figures(elapsedMs: 1, downtimeMs: 1, processed: 1),
                                    .cutOver(blackoutMs: 1)])
        for e: MigrationEvent in [.finished(error: "late"), .tick(elapsedS: 99, cancelled: true, progress: nil), .cutOver(blackoutMs: 5)] {
            let (j, effects) = MigrationMachine.step(done, e)
            #expect(j == done && effects.isEmpty, "\(e) on a completed job")
        }
    }

    /// The executor died with the job in each state it journals; what recovery does then
    /// (the source and destination as libvirt shows them after such a death).
    @Test(arguments: [
        // state, source, destination, outcome, destroy source, destroy destination, resume source, resume destination
        (JobState.queued, Presence.running, Presence.absent, Recovery.Outcome.rolledBack, false, false, false, false),
        (.preparing, .running, .absent, .rolledBack, false, false, false, false),
        (.migrating, .running, .absent, .rolledBack, false, false, false, false),
        (.migrating, .paused, .running, .completed, true, false, false, false),
        (.migrating, .paused, .paused, .rolledBack, false, true, true, false),
        (.migrating, .absent, .paused, .completed, false, false, false, true),
        (.postcopy, .paused, .running, .completed, true, false, false, false),
        (.postcopy, .paused, .paused, .completed, true, false, false, true),
        (.postcopy, .absent, .paused, .completed, false, false, false, true),
        (.postcopy, .paused, .absent, .lost, false, false, false, false),
        (.postcopy, .running, .running, .completed, true, false, false, false),
    ])
    func deathInEveryState(_ c: (JobState, Presence, Presence, Recovery.Outcome, Bool, Bool, Bool, Bool)) {
        let r = Recovery.decide(source: c.1, destination: c.2, migrationActive: false, state: c.0)
        #expect(r.outcome == c.3, "\(c.0) \(c.1)/\(c.2): \(r.why)")
        #expect([r.destroySource, r.destroyDestination, r.resumeSource, r.resumeDestination] == [c.4, c.5, c.6, c.7], "\(c.0) \(c.1)/\(c.2): \(r.why)")
        if c.0 == .postcopy { #expect(!r.resumeSource, "after post-copy began the source is never resumed") }
    }

    @Test func postCopyStillRunningInLibvirtIsWaitedFor() {
        #expect(Recovery.decide(source: .paused, destination: .running, migrationActive: true, state: .postcopy).outcome == .wait)
        #expect(Recovery.decide(source: .paused, destination: .unknown, migrationActive: false, state: .postcopy).outcome == .wait)
        // In post-copy even a running source copy is stale: the unanswering destination is waited for.
        #expect(Recovery.decide(source: .running, destination: .unknown, migrationActive: false, state: .postcopy).outcome == .wait)
    }
}

import ExecutorCore
import Foundation
import Hypervisor
import Logging
import Primitives
import ServiceKit
import VIOLINProtocol

/// Drives one migration job through `MigrationMachine` on its own thread: feeds it events,
/// carries out the effects it returns (journal, meshes, libvirt, bus) and feeds back what came
/// of them. Everything the job decides is in the machine; everything it touches is here.
final class MigrationRunner {
    private let node: ExecutorServer
    private var job: Journal.Job
    private var machine: MigrationJob
    private let options: ExecutorServer.JobOptions
    private let facts: VMFacts
    private let group: ExecutorServer.CutOverGroup?
    private let control: ExecutorServer.Control
    private var arrived = false, slotHeld = false
    /// libvirt's migrate call, on its helper thread, and the connection that watches it.
    private var watcher: (any MigratingHypervisor)?
    private var running: (outcome: ExecutorServer.Outcome, done: DispatchSemaphore)?
    private var started: UInt64 = 0, startedWall: UInt64 = 0, wallMs = 0

    init(_ node: ExecutorServer, _ job: Journal.Job, _ options: ExecutorServer.JobOptions, facts: VMFacts,
         group: ExecutorServer.CutOverGroup?) {
        self.node = node; self.job = job; self.options = options; self.facts = facts; self.group = group
        var o = MigrationJob.Options()
        o.postcopy = options.migration.postcopy
        o.copyStorage = options.migration.copyStorage
        o.timeoutS = options.timeoutS
        machine = MigrationJob(options: o)
        machine.state = job.state
        control = node.lock.withLock { node.controls[job.id] } ?? ExecutorServer.Control()
    }

    func run() {
        defer {
            arrive()          // every job arrives at its group once, a failed one too
            releaseSlot()
            node.lock.withLock { node.busyVMs[job.vm] = nil; node.controls[job.id] = nil; node.threads -= 1 }
        }
        node.slots.wait()
        slotHeld = true
        feed(.begin(cancelled: node.lock.withLock { control.cancelled }))
        // While libvirt migrates: a look every progress interval until its call returns.
        let interval = DispatchTimeInterval.milliseconds(Int(node.options.progressInterval * 1000))
        while let (outcome, done) = running, !machine.state.isFinal {
            if done.wait(timeout: .now() + interval) == .success {
                running = nil
                wallMs = Int((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)
                feed(.finished(error: outcome.error?.message))
                break
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            feed(.tick(elapsedS: elapsed, cancelled: node.lock.withLock { control.cancelled }, progress: progress()))
        }
    }

    /// Steps the machine through `event` and whatever its effects answer.
    private func feed(_ event: MigrationEvent) {
        var queue = [event]
        while !queue.isEmpty {
            let (next, effects) = MigrationMachine.step(machine, queue.removeFirst())
            machine = next
            job.state = next.state; job.error = next.error
            job.processed = next.processed ?? job.processed; job.remaining = next.remaining ?? job.remaining
            job.rate = next.rate ?? job.rate
            job.elapsedMs = next.elapsedMs; job.downtimeMs = next.downtimeMs; job.blackoutMs = next.blackoutMs
            for effect in effects { if let answer = perform(effect) { queue.append(answer) } }
        }
    }

    private func perform(_ effect: MigrationEffect) -> MigrationEvent? {
        switch effect {
        case .journal: node.saveJob(job)
        case .publishStarted: node.emit(ExecutorAPI.MigrationStarted(job: job.id, vm: job.vm, from: job.fromHost, to: job.toHost))
        case .prepareDestination:
            do { try node.prepareDestinationPort(job, facts) } catch { return .destinationFailed(error.message) }
            return .destinationReady
        case .startMigration: return startMigration()
        case .abortMigration: try? watcher?.abortJob(job.vm)
        case .startPostCopy: return (try? watcher?.startPostCopy(job.vm)) != nil ? .postCopyStarted : nil
        case .publishProgress(let phase, let p): publishProgress(phase, p)
        case .removeDestinationPort: node.removeDestinationPort(job, vni: facts.vni)
        case .releaseSlot: releaseSlot()
        case .joinCutOver: arrive()
        case .readFigures: return figures()
        case .cutOver: return .cutOver(blackoutMs: node.cutOver(job, facts: facts, since: startedWall))
        case .deleteSourceDisk: watcher?.deleteVolume(pool: ExecutorServer.pool, name: ExecutorServer.volumeName(job.vm))
        case .publishCompleted: node.publishCompleted(job)
        case .publishFailed: node.publishFailed(job)
        }
        return nil
    }

    /// libvirt's migrate call blocks until the end: it runs on a helper thread, watched from here.
    private func startMigration() -> MigrationEvent? {
        do { watcher = try node.options.connect(node.options.libvirtURI) } catch { return .finished(error: error.message) }
        started = DispatchTime.now().uptimeNanoseconds
        startedWall = wallClockMillis()
        running = node.migrateInBackground(job.vm, to: job.destinationURI, options.migration)
        return nil
    }

    private func progress() -> MigrationProgress? {
        guard let s = try? watcher?.jobStats(job.vm), s.active else { return nil }
        return MigrationProgress(processed: Int(clamping: s.processed), remaining: Int(clamping: s.remaining), total: Int(clamping: s.total),
                                 rate: Int(clamping: s.bytesPerSecond), elapsedMs: Int(s.elapsedMs), iteration: Int(s.iteration),
                                 dirtyRate: Int(clamping: s.dirtyBytesPerSecond))
    }

    /// The destination keeps libvirt's figures of the finished job; without them, our clock's.
    private func figures() -> MigrationEvent {
        guard let d = try? node.options.connect(node.remoteLibvirt(job.destinationURI)), let s = try? d.jobStats(job.vm, completed: true) else {
            return .figures(elapsedMs: wallMs, downtimeMs: nil, processed: nil)
        }
        return .figures(elapsedMs: s.elapsedMs > 0 ? Int(s.elapsedMs) : wallMs, downtimeMs: s.downtimeMs.map { Int($0) },
                        processed: Int(s.processed))
    }

    private func publishProgress(_ phase: MigrationEffect.Phase, _ p: MigrationProgress) {
        let phase = ExecutorAPI.MigrationProgress.Phase(rawValue: phase.rawValue) ?? .precopy
        node.running.update(job.vm, phase: phase.rawValue, p)
        node.emit(ExecutorAPI.MigrationProgress(job: job.id, vm: job.vm, phase: phase, processedBytes: UInt64(max(0, p.processed)),
                                                remainingBytes: UInt64(max(0, p.remaining)), totalBytes: UInt64(max(0, p.total)),
                                                rateBps: UInt64(max(0, p.rate)), elapsedMs: UInt64(max(0, p.elapsedMs))))
    }

    private func releaseSlot() {
        if slotHeld { slotHeld = false; node.slots.signal() }
    }

    private func arrive() {
        guard !arrived else { return }
        arrived = true
        group?.arriveAndWait(timeout: options.timeoutS + 30)
    }
}

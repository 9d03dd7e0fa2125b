import Foundation

/// How long a local QEMU's vCPU threads waited for a CPU, read from `/proc`: the second figure
/// of each thread's `schedstat` (run-queue delay, kept by every kernel with scheduler info, where
/// libvirt's own `vcpu.N.wait` needs the kernel's schedstats switched on). A VM is found by the
/// `-uuid` libvirt puts on QEMU's command line; its pid is kept until it no longer matches.
public final class VCPUWaitReader: @unchecked Sendable {
    private let proc: String
    private var pids: [String: Int32] = [:]

    /// `proc`: where the process file system is (a directory of fake files in tests).
    public init(proc: String = "/proc") { self.proc = proc }

    /// What a VM's vCPU threads ran and waited for a CPU since they started, nanoseconds.
    public struct Times: Equatable, Sendable {
        public var runNs: UInt64, waitNs: UInt64
        public init(runNs: UInt64, waitNs: UInt64) { self.runNs = runNs; self.waitNs = waitNs }
    }

    /// Each running VM's vCPU run-queue wait by UUID (see `times`).
    public func waits(uuids: [String]) -> [String: UInt64] { times(uuids: uuids).mapValues(\.waitNs) }

    /// Each running VM's vCPU times by UUID, where its QEMU is found on this host. One scan of
    /// the processes at most, only when a VM's process is not known yet.
    public func times(uuids: [String]) -> [String: Times] {
        var out: [String: Times] = [:]
        var missing: [String] = []
        for u in uuids {
            if let pid = pids[u], owns(pid, uuid: u), let w = wait(pid) { out[u] = w } else { pids[u] = nil; missing.append(u) }
        }
        if !missing.isEmpty {
            for (u, pid) in find(missing) {
                pids[u] = pid
                if let w = wait(pid) { out[u] = w }
            }
        }
        // Forget the processes of VMs no longer asked about (gone or moved away).
        let asked = Set(uuids)
        pids = pids.filter { asked.contains($0.key) }
        return out
    }

    /// A thread of QEMU that runs guest code: `CPU n/KVM`, `CPU n/TCG`, or single-threaded TCG's
    /// `ALL CPUs/TCG`.
    public static func isVCPUThread(comm: String) -> Bool {
        let c = comm.trimmingCharacters(in: .whitespacesAndNewlines)
        return (c.hasPrefix("CPU ") || c.hasPrefix("ALL CPUs")) && (c.hasSuffix("/KVM") || c.hasSuffix("/TCG"))
    }

    /// The run-queue delay in a `schedstat` line (`<ran ns> <waited ns> <timeslices>`).
    public static func runDelayNs(schedstat: String) -> UInt64? { figures(schedstat: schedstat)?.waitNs }

    /// Both times of a `schedstat` line: what the thread ran and what it waited.
    public static func figures(schedstat: String) -> Times? {
        let f = schedstat.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard f.count >= 3, let run = UInt64(f[0]), let wait = UInt64(f[1]) else { return nil }
        return Times(runNs: run, waitNs: wait)
    }

    /// Whether a NUL-separated command line carries `-uuid <uuid>`.
    public static func commandLine(_ bytes: [UInt8], hasUUID uuid: String) -> Bool {
        let args = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        return zip(args, args.dropFirst()).contains { $0.0 == "-uuid" && $0.1.lowercased() == uuid.lowercased() }
    }

    private func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    private func owns(_ pid: Int32, uuid: String) -> Bool {
        read("\(proc)/\(pid)/cmdline").map { Self.commandLine($0, hasUUID: uuid) } ?? false
    }

    private func find(_ uuids: [String]) -> [(String, Int32)] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: proc) else { return [] }
        var left = Set(uuids), out: [(String, Int32)] = []
        for e in entries where !left.isEmpty {
            guard let pid = Int32(e), pid > 0, let cmd = read("\(proc)/\(e)/cmdline"), cmd.count < 1 << 20,
                  // Cheap first look: only QEMU command lines carry -uuid.
                  cmd.starts(with: Array("qemu".utf8)) || cmd.contains(Array("-uuid".utf8)) else { continue }
            if let u = left.first(where: { Self.commandLine(cmd, hasUUID: $0) }) {
                left.remove(u); out.append((u, pid))
            }
        }
        return out
    }

    /// The summed run and run-queue times of a process's vCPU threads; nil when it has none (or is gone).
    private func wait(_ pid: Int32) -> Times? {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "\(proc)/\(pid)/task") else { return nil }
        var sum = Times(runNs: 0, waitNs: 0), found = false
        for t in tasks {
            guard let comm = read("\(proc)/\(pid)/task/\(t)/comm").map({ String(decoding: $0, as: UTF8.self) }),
                  Self.isVCPUThread(comm: comm),
                  let st = read("\(proc)/\(pid)/task/\(t)/schedstat").map({ String(decoding: $0, as: UTF8.self) }),
                  let d = Self.figures(schedstat: st) else { continue }
            sum.runNs &+= d.runNs; sum.waitNs &+= d.waitNs; found = true
        }
        return found ? sum : nil
    }
}

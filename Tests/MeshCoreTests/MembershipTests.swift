import Foundation
import Primitives
import Testing
@testable import MeshCore

@Suite struct MembershipTests {
    @Test func joinAnnounceLeave() {
        var m = Membership(me: "tcp://h1:7701", timeout: 3)
        m.present(7, tunnel: "10.0.0.1:4789")
        #expect(m.list(7).map(\.endpoint) == ["tcp://h1:7701"])
        #expect(m.admit(7, endpoint: "tcp://h2:7701", tunnel: "10.0.0.2:4789", now: 0) == .joined(vni: 7, member: "tcp://h2:7701"))
        #expect(m.admit(7, endpoint: "tcp://h2:7701", tunnel: "10.0.0.2:4789", now: 1) == nil, "an announce repeated changes nothing")
        #expect(m.admit(7, endpoint: "tcp://h1:7701", tunnel: "x", now: 1) == nil, "never ourselves")
        #expect(m.admit(8, endpoint: "tcp://h3:7701", tunnel: "10.0.0.3:4789", now: 1) == nil, "not a VIOLIN of ours")
        m.admit(7, endpoint: "tcp://h3:7701", tunnel: "10.0.0.3:4790", now: 1)
        #expect(m.peers(7) == ["10.0.0.2:4789", "10.0.0.3:4790"])
        #expect(m.list(7).count == 3)
        #expect(m.remove(7, endpoint: "tcp://h2:7701") == .left(vni: 7, member: "tcp://h2:7701", reason: "left"))
        #expect(m.peers(7) == ["10.0.0.3:4790"])
        #expect(m.absent(7).map(\.endpoint) == ["tcp://h3:7701"])
        #expect(m.violins.isEmpty && m.peers(7).isEmpty)
    }

    @Test func silentMembersLeaveAndComeBack() {
        var m = Membership(me: "a", timeout: 3)
        m.present(1, tunnel: "10.0.0.1:4789")
        m.present(2, tunnel: "10.0.0.1:4790")
        m.admit(1, endpoint: "b", tunnel: "10.0.0.2:4789", now: 0)
        m.admit(2, endpoint: "b", tunnel: "10.0.0.2:4790", now: 0)
        m.admit(1, endpoint: "c", tunnel: "10.0.0.3:4789", now: 0)
        #expect(m.heard("c", now: 2.5).isEmpty)
        #expect(m.expire(now: 3).isEmpty, "not silent long enough")
        let gone = m.expire(now: 3.1)
        #expect(gone == [.left(vni: 1, member: "b", reason: "timeout"), .left(vni: 2, member: "b", reason: "timeout")])
        #expect(m.peers(1) == ["10.0.0.3:4789"] && m.peers(2).isEmpty)
        #expect(m.contacts == ["b", "c"], "the silent one is still heartbeated")
        #expect(m.heard("b", now: 10) == [.joined(vni: 1, member: "b"), .joined(vni: 2, member: "b")])
        #expect(m.peers(1) == ["10.0.0.2:4789", "10.0.0.3:4789"])
    }
}

@Suite struct RestartBackoffTests {
    /// A switch that keeps dying waits 0.5, 1, 2, 4, 8, then 10 s at most; one that had run for
    /// 30 s or more starts again at 0.5 s.
    @Test func doublesUpToTenAndStartsOverAfterAStableRun() {
        var wait: Double?
        var waits: [Double] = []
        for _ in 0..<7 {
            wait = RestartBackoff.next(previous: wait, ranSeconds: 0.1)
            waits.append(wait!)
        }
        #expect(waits == [0.5, 1, 2, 4, 8, 10, 10])
        #expect(RestartBackoff.next(previous: 10, ranSeconds: 29.9) == 10)
        #expect(RestartBackoff.next(previous: 10, ranSeconds: 30) == 0.5)
    }

    /// The supervisor's schedule (the mesh's switches, `violin node run`'s services): a death
    /// schedules a restart after the back-off, nothing is due before its time, a cancelled
    /// restart is never due, a failed start is retried after the wait given.
    @Test func theScheduleRestartsEachAfterItsBackOff() {
        var s = RestartSchedule<String>()
        s.started("mesh", at: 100)
        s.started("monitor", at: 100)
        #expect(s.exited("mesh", at: 100.2) == 0.5)
        #expect(s.due(at: 100.6).isEmpty && s.due(at: 100.7) == ["mesh"])
        s.cancel("mesh")
        s.started("mesh", at: 100.7)
        #expect(s.exited("mesh", at: 101) == 1, "a second quick death waits twice as long")
        #expect(s.exited("monitor", at: 200) == 0.5, "one that ran for long starts over")
        #expect(Set(s.due(at: 202)) == ["mesh", "monitor"])
        s.cancel("monitor")
        #expect(!s.isScheduled("monitor") && s.due(at: 999) == ["mesh"])
        s.retry("monitor", at: 300, after: 10)
        #expect(s.isScheduled("monitor") && !s.due(at: 309).contains("monitor") && s.due(at: 310).contains("monitor"))
    }

    /// Bounds: a VIOLIN takes at most `maxMembers` others; a member silent past `evictAfter` is
    /// forgotten (no longer heartbeated), one silent past the timeout only leaves the peer sets.
    @Test func membersAreCappedAndTheLongSilentForgotten() {
        var m = Membership(me: "a", timeout: 3, maxMembers: 2, evictAfter: 30)
        m.present(1, tunnel: "10.0.0.1:4789")
        #expect(m.admit(1, endpoint: "b", tunnel: "10.0.0.2:4789", now: 0) != nil)
        #expect(m.admit(1, endpoint: "c", tunnel: "10.0.0.3:4789", now: 0) != nil)
        #expect(m.isFull(1, adding: "d") && !m.isFull(1, adding: "b"), "full for a newcomer, not for a member")
        #expect(m.admit(1, endpoint: "d", tunnel: "10.0.0.4:4789", now: 0) == nil)
        #expect(m.peers(1) == ["10.0.0.2:4789", "10.0.0.3:4789"])
        #expect(m.admit(1, endpoint: "b", tunnel: "10.0.0.2:4790", now: 1) != nil, "a member may still move its tunnel")
        _ = m.heard("c", now: 20)
        #expect(m.expire(now: 10) == [.left(vni: 1, member: "b", reason: "timeout")])
        #expect(m.contacts == ["b", "c"])
        _ = m.heard("c", now: 30)
        _ = m.expire(now: 31.5)
        #expect(m.contacts == ["c"], "b, silent 30 s, is forgotten (c is alive)")
        #expect(m.admit(1, endpoint: "d", tunnel: "10.0.0.4:4789", now: 32) != nil, "its place is free again")
    }

    /// A host that hears no member of a VIOLIN at all (its own link down, or every other host
    /// gone a while) forgets none of them: the first to come back is still heartbeated, answers,
    /// and the VIOLIN is whole again, where forgetting all would leave this host an island.
    @Test func anIsolatedHostKeepsItsMembers() {
        var m = Membership(me: "a", timeout: 3, maxMembers: 8, evictAfter: 30)
        m.present(2, tunnel: "10.0.0.1:4790")
        for (e, t) in [("b", "10.0.0.2:4790"), ("c", "10.0.0.3:4790")] { _ = m.admit(2, endpoint: e, tunnel: t, now: 0) }
        _ = m.expire(now: 10)
        _ = m.expire(now: 100)
        #expect(m.contacts == ["b", "c"], "none alive: none forgotten")
        _ = m.heard("b", now: 101)
        #expect(m.peers(2) == ["10.0.0.2:4790"])
        _ = m.expire(now: 102)
        #expect(m.contacts == ["b"], "with b alive again, the long silent c is forgotten")
    }
}

/// A heartbeat round probes every contact at once (`Concurrently`): the live member's answer does not wait
/// behind the timeouts of dead ones. Each dead probe here blocks until the live one has
/// answered (up to 5 s); probed one after another, the dead ones listed first would time out
/// first and see no answer.
@Suite struct ConcurrentProbeTests {
    final class Seen: @unchecked Sendable {
        let lock = NSCondition()
        var liveAnswered = false
        var deadSawLive: [String: Bool] = [:]
    }

    @Test func deadMembersDoNotHoldUpTheLiveOne() {
        let seen = Seen()
        let dead = (1...4).map { "tcp://10.0.0.\($0):7701" }
        let live = "tcp://10.0.0.9:7701"
        let answered = Concurrently.filter(dead + [live]) { endpoint in
            if endpoint == live {
                seen.lock.withLock { seen.liveAnswered = true; seen.lock.broadcast() }
                return true
            }
            seen.lock.lock()
            let end = Date().addingTimeInterval(5)
            while !seen.liveAnswered, seen.lock.wait(until: end) {}
            seen.deadSawLive[endpoint] = seen.liveAnswered
            seen.lock.unlock()
            return false
        }
        #expect(answered == [live])
        #expect(seen.deadSawLive == Dictionary(uniqueKeysWithValues: dead.map { ($0, true) }),
                "a dead member's probe ran before the live one answered: \(seen.deadSawLive)")
    }

    @Test func answersComeBackInTheOrderGiven() {
        let contacts = (1...6).map { "tcp://10.0.1.\($0):7701" }
        #expect(Concurrently.filter(contacts) { !$0.hasSuffix("3:7701") } == contacts.filter { !$0.hasSuffix("3:7701") })
        #expect(Concurrently.filter([]) { _ in true }.isEmpty)
    }
}

/// A restarted mesh takes back the members it saved with their keys: without a member's key
/// it cannot reach that member's mesh over CURVE, its heartbeats fail, and the member is
/// dropped and then forgotten.
@Suite struct RestoreTests {
    @Test func restoredMembersKeepTheirKeysAndTunnels() {
        var m = Membership(me: "tcp://h1:7701", timeout: 3)
        m.present(7, tunnel: "10.0.0.1:4789")
        let saved = [Member(endpoint: "tcp://h2:7701", tunnel: "10.0.0.2:4789", lastHeard: 5, key: "K2"),
                     Member(endpoint: "tcp://h1:7701", tunnel: "10.0.0.1:4789", lastHeard: 5, key: "K1"),
                     Member(endpoint: "tcp://h3:7701", tunnel: "10.0.0.3:4789", lastHeard: 5, alive: false, key: "K3")]
        m.restore(7, saved, now: 1000)
        #expect(m.key(of: "tcp://h2:7701") == "K2" && m.key(of: "tcp://h3:7701") == "K3")
        #expect(m.members[7]?["tcp://h1:7701"] == nil, "never ourselves")
        #expect(m.list(7).map(\.tunnel).sorted() == ["10.0.0.1:4789", "10.0.0.2:4789", "10.0.0.3:4789"])
        // Heard now: they get a whole member timeout before they leave.
        #expect(m.expire(now: 1002).isEmpty)
        #expect(m.expire(now: 1004).count == 2)
    }
}

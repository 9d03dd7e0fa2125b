import Testing
@testable import SwitchCore

/// A frame's trace: the forwarding thread's steps over what the switch holds, in its order.
@Suite struct TraceTests {
    let pa = PeerAddress("10.0.0.2:4789")!, pb = PeerAddress("10.0.0.3:4789")!
    let m1 = MAC("02:00:00:00:00:01")!, m2 = MAC("02:00:00:00:00:02")!
    var state: Trace.State { Trace.State(vni: 7, ports: [1, 2, 3], peers: [pa, pb]) }

    @Test func unicastAndFloodsFollowThePapersRules() {
        var s = state
        s.known = (.port(2), 3.5, false)
        let toPort = Trace.trace(.port(1), vni: 7, src: m1, dst: m2, s)
        #expect(toPort.outcome == .port(2) && toPort.why.contains { $0.contains("heard 3.5 s ago") }, "\(toPort)")
        s.known = (.peer(pb), 1, true)
        #expect(Trace.trace(.port(1), vni: 7, src: m1, dst: m2, s).outcome == .peer(pb))
        // Unknown or broadcast from a port: every other port and every peer; from a peer: ports only.
        let fromPort = Trace.trace(.port(2), vni: 7, src: m1, dst: .broadcast, state)
        #expect(fromPort.outcome == .flood(ports: [1, 3], peers: [pa, pb]), "\(fromPort)")
        #expect(Trace.trace(.peer(pa), vni: 7, src: m1, dst: m2, state).outcome == .flood(ports: [1, 2, 3], peers: []))
    }

    @Test func everyDropSaysWhy() {
        var s = state
        #expect(Trace.trace(.peer(PeerAddress("10.9.9.9:4789")!), vni: 7, src: m1, dst: m2, s).outcome == .drop(.unknownPeer))
        #expect(Trace.trace(.peer(pa), vni: 8, src: m1, dst: m2, s).outcome == .drop(.wrongVNI))
        #expect(Trace.trace(.port(1), vni: 7, src: MAC("01:00:5e:00:00:01")!, dst: m2, s).outcome == .drop(.badSource))
        s.known = (.port(1), 0, false)
        let same = Trace.trace(.port(1), vni: 7, src: m1, dst: m2, s)
        #expect(same.outcome == .drop(.samePort) && same.why.last?.contains("same_port") == true)
        s.known = (.peer(pb), 0, false)
        #expect(Trace.trace(.peer(pa), vni: 7, src: m1, dst: m2, s).outcome == .drop(.misdirected))
        // A frame to itself is learned first: the port it came from.
        #expect(Trace.trace(.port(3), vni: 7, src: m1, dst: m1, state).outcome == .drop(.samePort))
        // A known location that is gone.
        s.known = (.port(9), 0, false)
        #expect(Trace.trace(.port(1), vni: 7, src: m1, dst: m2, s).outcome == .drop(.noRoute))
    }

    @Test func aMigratedVMsLateFramesGoOnToItsNewHost() {
        var s = state
        s.moved = (pb, 4)
        #expect(Trace.trace(.peer(pa), vni: 7, src: m1, dst: m2, s).outcome == .grace(pb))
        // Not back to where it came from, not after the grace, not from a port.
        #expect(Trace.trace(.peer(pb), vni: 7, src: m1, dst: m2, s).outcome == .flood(ports: [1, 2, 3], peers: []))
        s.moved = (pb, -1)
        #expect(Trace.trace(.peer(pa), vni: 7, src: m1, dst: m2, s).outcome == .flood(ports: [1, 2, 3], peers: []))
        s.moved = (pb, 4)
        #expect(Trace.trace(.port(1), vni: 7, src: m1, dst: m2, s).outcome == .flood(ports: [2, 3], peers: [pa, pb]))
    }
}

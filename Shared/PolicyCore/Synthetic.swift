/// Random infrastructures, for property tests and the decision-round benchmark.
public enum PolicyBench {
    /// `peers`: each VM exchanges traffic with that many others of its VIOLIN (0-50 MB/s each).
    public static func state(hosts: Int, vms: Int, violins: Int, domains: Int, seed: UInt64, peers: Int = 0) -> ClusterState {
        var rng = SeededRandom(seed: seed)
        let hs = (0..<hosts).map { Host(id: "h\($0)", domain: "d\($0 % max(1, domains))", cores: [4, 8, 16][Int(rng.next() % 3)],
                                         memoryMB: 65_536) }
        var vmList: [VM] = [], placement: [VMID: HostID] = [:], cpu: [VMID: Double] = [:]
        var heads: [ViolinID: VMID] = [:], home: [ViolinID: DomainID] = [:]
        for i in 0..<vms {
            let violin = "e\(i % max(1, violins))"
            let id = "vm\(i)"
            vmList.append(VM(id: id, violin: violin, memoryMB: [256, 512, 1024][Int(rng.next() % 3)],
                             dirtyRateMBps: 5 + 40 * rng.unit()))
            // Skewed placement: a few hosts get most of the load.
            let h = rng.unit() < 0.3 ? Int(rng.next() % UInt64(max(1, hosts / 20))) : Int(rng.next() % UInt64(hosts))
            placement[id] = hs[h].id
            cpu[id] = rng.unit() < 0.5 ? 80 + 20 * rng.unit() : 30 * rng.unit()
            if heads[violin] == nil { heads[violin] = id; home[violin] = hs[h].domain }
        }
        let vs = heads.keys.sorted().map { Violin(id: $0, homeDomain: home[$0]!, head: heads[$0]!) }
        var state = ClusterState(hosts: hs, vms: vmList, violins: vs, placement: placement, cpu: cpu, now: 1000)
        if peers > 0 {
            // VM i is of VIOLIN i mod violins: its fellows are i + k * violins.
            let v = max(1, violins)
            var flows: [(from: VMID, to: VMID, bytesPerS: Double)] = []
            for i in 0..<vms {
                let fellows = (vms - 1 - i % v) / v + 1
                guard fellows > 1 else { continue }
                for _ in 0..<peers {
                    let j = i % v + Int(rng.next() % UInt64(fellows)) * v
                    if j != i && j < vms { flows.append(("vm\(i)", "vm\(j)", 50_000_000 * rng.unit())) }
                }
            }
            state.setTraffic(flows)
        }
        return state
    }
}

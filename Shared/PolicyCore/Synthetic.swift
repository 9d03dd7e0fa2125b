/// Random infrastructures, for property tests and the decision-round benchmark.
public enum PolicyBench {
    public static func state(hosts: Int, vms: Int, violins: Int, domains: Int, seed: UInt64) -> ClusterState {
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
        return ClusterState(hosts: hs, vms: vmList, violins: vs, placement: placement, cpu: cpu, now: 1000)
    }
}

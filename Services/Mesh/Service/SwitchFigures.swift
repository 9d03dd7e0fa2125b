import ServiceKit
import VIOLINProtocol

/// A switch's stats as Prometheus series, labelled by VNI (and port): what its host's mesh
/// serves for it. Pure: the stats in, series set.
public enum SwitchFigures {
    public static func collect(_ s: SwitchAPI.StatsReply, into m: MetricSet) {
        let vni = ("vni", "\(s.vni)")
        for direction in ["from_ports", "from_peers", "to_ports", "to_peers"] {
            m.counter("violin_switch_frames_total", [vni, ("direction", direction)], total: Double(s.frames[direction] ?? 0),
                      help: "Frames the switch forwarded, by direction (from or to its ports, from or to peer switches).")
        }
        for direction in ["from_ports", "from_peers"] {
            m.counter("violin_switch_bytes_total", [vni, ("direction", direction)], total: Double(s.bytes[direction] ?? 0),
                      help: "Bytes of frames the switch received, from its ports or from peer switches.")
        }
        m.counter("violin_switch_floods_total", [vni], total: Double(s.frames["floods"] ?? 0),
                  help: "Frames flooded (broadcast, multicast or an unknown destination).")
        for (reason, n) in s.drops.sorted(by: { $0.key < $1.key }) {
            m.counter("violin_switch_drops_total", [vni, ("reason", MetricSet.name(reason))], total: Double(n), help: "Frames dropped, by reason.")
        }
        m.gauge("violin_switch_mac_table_entries", [vni], value: Double(s.macTable["size"] ?? 0), help: "MACs the switch knows now.")
        for (kind, key) in [("learned", "learned"), ("moved", "moved"), ("aged", "expired")] {
            m.counter("violin_switch_mac_\(kind)_total", [vni], total: Double(s.macTable[key] ?? 0), help: "MAC table entries \(kind).")
        }
        if let sched = s.scheduling {
            m.gauge("violin_switch_realtime", [vni], value: sched.mode == "realtime" ? 1 : 0,
                    help: "1 while the forwarding thread runs real-time (its host's cores all busy), else 0.")
            m.counter("violin_switch_realtime_entries_total", [vni], total: Double(sched.realtimeEntries),
                      help: "Times the forwarding thread became real-time.")
            m.counter("violin_switch_realtime_over_budget_total", [vni], total: Double(sched.overBudget),
                      help: "Windows in which the real-time forwarding thread used more than its budget of a core and went back to the fair class.")
            m.gauge("violin_switch_realtime_refused", [vni], value: sched.refused == nil ? 0 : 1,
                    help: "1 if the kernel refused the forwarding thread real-time (a CPU cgroup without a real-time budget).")
        }
        for (name, port) in s.ports.sorted(by: { $0.key < $1.key }) {
            let labels = [vni, ("port", name)]
            m.counter("violin_switch_port_rx_frames_total", labels, total: Double(port.rx), help: "Frames the port received from its VM.")
            m.counter("violin_switch_port_tx_frames_total", labels, total: Double(port.tx), help: "Frames the port sent to its VM.")
            m.counter("violin_switch_port_rx_bytes_total", labels, total: Double(port.rxBytes ?? 0), help: "Bytes the port received from its VM.")
            m.counter("violin_switch_port_tx_bytes_total", labels, total: Double(port.txBytes ?? 0), help: "Bytes the port sent to its VM.")
        }
    }
}

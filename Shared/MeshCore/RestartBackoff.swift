/// How long the mesh waits before it restarts a switch that died: twice the last wait, from
/// half a second up to ten, so a switch that keeps crashing costs the host little; a switch
/// that had been running for `stableSeconds` starts the count again, so one crash in a long
/// while is restarted at once, not after the longest wait ever reached.
public enum RestartBackoff {
    public static let first = 0.5
    public static let longest = 10.0
    public static let stableSeconds = 30.0

    /// The wait before the next start. `previous`: the last wait (nil: none yet); `ranSeconds`:
    /// how long the switch ran this time.
    public static func next(previous: Double?, ranSeconds: Double) -> Double {
        guard let previous, ranSeconds < stableSeconds else { return first }
        return min(longest, max(first, previous * 2))
    }
}

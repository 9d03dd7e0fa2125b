import Foundation

/// Blocking calls made all at once, a thread each: the whole takes as long as the slowest
/// call, not the sum of them. For a few dozen network probes (a mesh's heartbeat round: with
/// several dead members, one after another would outlast `member_timeout` and the live
/// members would flap), not for work that needs a pool.
public enum Concurrently {
    /// The items `test` holds for, in the order given; `test` runs on its own thread per item.
    public static func filter(_ items: [String], _ test: @escaping @Sendable (String) -> Bool) -> [String] {
        guard items.count > 1 else { return items.filter(test) }
        final class Passed: @unchecked Sendable {
            let lock = NSLock()
            var set: Set<String> = []
        }
        let passed = Passed()
        let group = DispatchGroup()
        for item in items {
            group.enter()
            Thread {
                if test(item) { passed.lock.withLock { _ = passed.set.insert(item) } }
                group.leave()
            }.start()
        }
        group.wait()
        return items.filter { passed.set.contains($0) }
    }
}

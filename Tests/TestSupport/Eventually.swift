import Foundation

/// The suite's one way to wait for something: checks `condition` until it holds or `deadline`
/// seconds have passed, sleeping between checks (1 ms at first, doubling up to 50 ms, so a
/// quick condition is seen quickly and a slow one costs the machine little). Returns whether
/// it held; the result must be used (an ignored wait proves nothing).
public func eventually(deadline seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let end = Date().addingTimeInterval(seconds)
    var pause: useconds_t = 1_000
    while Date() < end {
        if try condition() { return true }
        usleep(pause)
        pause = min(pause * 2, 50_000)
    }
    return try condition()
}

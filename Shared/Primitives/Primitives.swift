/// Thread primitives and clocks shared by the ZeroMQ layer and the data plane: neither needs
/// the other to lock, wake a poll loop or read the time.
import CPrimitives
#if canImport(Glibc)
import Glibc
#endif

/// A small mutex (pthread), so the modules below Foundation need none.
public final class NSLockLite: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}

/// Wakes a poll loop from another thread: an eventfd that sits in the loop's poll set.
public final class Waker: @unchecked Sendable {
    public let readFD: Int32

    public init() {
        readFD = violin_eventfd()
        precondition(readFD >= 0, "eventfd failed: errno \(errno)")
    }

    deinit { Glibc.close(readFD) }

    public func wake() { violin_eventfd_signal(readFD) }

    public func drain() { violin_eventfd_drain(readFD) }
}

/// A monotonic clock in milliseconds.
public func monotonicMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Names the calling thread (first 15 characters), as top -H and perf show it.
public func setThreadName(_ name: String) { violin_set_thread_name(String(name.prefix(15))) }

/// The wall clock in milliseconds since 1970 (for times compared across processes).
public func wallClockMillis() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}

import Foundation

/// A thread that runs one loop until asked to stop. The loop polls `waker` beside its own
/// sockets and ends when it sees `isStopping`; `stop()` wakes it and waits for it to end.
public final class WorkerThread: @unchecked Sendable {
    public let waker = Waker()
    private let lock = NSLockLite()
    private var stopping = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    public init() {}

    public var isStopping: Bool { lock.withLock { stopping } }

    public func start(name: String, _ body: @escaping () -> Void) {
        let t = Thread { [self] in
            setThreadName(name)
            body()
            self.done.signal()
        }
        thread = t
        t.start()
    }

    public func stop() {
        lock.withLock { stopping = true }
        waker.wake()
        if thread != nil {
            done.wait()
            thread = nil
        }
    }
}

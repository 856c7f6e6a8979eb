import CTockShims
import Glibc

/// A dedicated OS thread running one closure, joined on stop.
///
/// The datagram workers and the load generator need threads of their own: a blocking
/// recvmmsg loop must not occupy a Swift concurrency or NIO event-loop thread.
public final class WorkerThread: @unchecked Sendable {
    private var thread: pthread_t = 0
    private let body: () -> Void
    private let name: String

    private init(name: String, body: @escaping () -> Void) {
        self.name = name
        self.body = body
    }

    /// Starts `body` on a new thread named `name` (at most 15 characters are kept).
    public static func start(name: String, _ body: @escaping () -> Void) -> WorkerThread {
        let worker = WorkerThread(name: name, body: body)
        let context = Unmanaged.passRetained(worker).toOpaque()
        let rc = pthread_create(&worker.thread, nil, { raw in
            let worker = Unmanaged<WorkerThread>.fromOpaque(raw!).takeRetainedValue()
            tock_set_thread_name(worker.name)
            worker.body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return worker
    }

    /// Waits for the thread to finish.
    public func join() {
        pthread_join(thread, nil)
    }
}

import CTockShims
import Glibc

/// A dedicated OS thread for a hot loop (a datagram worker, a load-generator thread): Swift
/// concurrency's cooperative pool must not be blocked in recvmmsg, so these loops get threads
/// of their own, named so `top -H` and `/proc/PID/task/*/comm` show what each does.
package struct WorkerThread: Sendable {
    private let thread: pthread_t

    /// What the new thread runs, handed to it through pthread_create's context pointer.
    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    private init(thread: pthread_t) {
        self.thread = thread
    }

    /// Starts `body` on a new thread named `name` (at most 15 characters are kept).
    package static func start(name: String, _ body: @escaping @Sendable () -> Void) -> WorkerThread {
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread: pthread_t = 0
        let rc = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            tock_set_thread_name(start.name)
            start.body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return WorkerThread(thread: thread)
    }

    /// Waits for the thread to finish; call once.
    package func join() {
        pthread_join(thread, nil)
    }
}

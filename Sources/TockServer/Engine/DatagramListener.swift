import Atomics
import Glibc
import TockSockets

/// A UDP listener: `workers` sockets bound to one address with SO_REUSEPORT, each served by
/// its own thread running a `DatagramWorker`.
final class DatagramListener: @unchecked Sendable {
    /// The address actually bound (port 0 resolved).
    let address: SocketEndpoint
    let counters: [DatagramCounters]
    private let fds: [Int32]
    private let start: [() -> WorkerThread]
    private var threads: [WorkerThread] = []
    private var closed = false
    private let stopping = ManagedAtomic(false)

    /// Binds the sockets now, so that bind errors surface before anything starts.
    init<R: DatagramResponder>(name: String, address requested: SocketEndpoint, workers: Int, makeResponder: () -> R) throws(ListenerError) {
        var fds: [Int32] = []
        var address = requested
        do {
            if address.port == 0 {
                address.port = try ListenerSocket.freePort(on: address, alsoTCP: false)
            }
            for _ in 0..<max(1, workers) {
                fds.append(try ListenerSocket.udp(address))
            }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        self.address = address
        self.fds = fds
        let counters = fds.map { _ in DatagramCounters(dropReasons: R.dropReasons) }
        self.counters = counters
        let answerFromDestination = ListenerSocket.isWildcard(address)
        let stopping = self.stopping
        var start: [() -> WorkerThread] = []
        for (i, fd) in fds.enumerated() {
            let worker = DatagramWorker(
                fd: fd,
                isIPv6: address.isIPv6,
                answerFromDestination: answerFromDestination,
                responder: makeResponder(),
                counters: counters[i],
                stopping: stopping
            )
            start.append { WorkerThread.start(name: "\(name)-\(i)") { worker.run() } }
        }
        self.start = start
    }

    /// Starts every worker thread.
    func run() {
        threads = start.map { $0() }
    }

    /// Stops and joins the workers (within the sockets' 200 ms receive timeout), then closes
    /// the sockets. Idempotent.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        for t in threads { t.join() }
        threads = []
        if !closed {
            for fd in fds { close(fd) }
            closed = true
        }
    }

    deinit {
        stop()
    }

    /// Totals over all workers.
    var statistics: DatagramStatistics {
        var total = DatagramStatistics()
        for c in counters { total.add(DatagramStatistics(c)) }
        return total
    }
}

import Atomics
import Glibc
import TockSockets

/// A UDP listener: `workers` threads, each running a `DatagramWorker`, on sockets bound to one
/// address. Sockets it binds itself are one per worker, joined by SO_REUSEPORT; a socket
/// inherited from systemd is one socket that every worker reads (recvmmsg on a shared socket
/// is safe on Linux, and each datagram goes to one reader).
final class DatagramListener: @unchecked Sendable {
    /// The address actually bound (port 0 resolved).
    let address: SocketEndpoint
    /// The inherited descriptor, when systemd bound the socket (socket activation).
    let inheritedFD: Int32?
    let counters: [DatagramCounters]
    /// The sockets, each closed once on stop.
    private let fds: [Int32]
    private let start: [() -> WorkerThread]
    private var threads: [WorkerThread] = []
    private var closed = false
    private let stopping = ManagedAtomic(false)

    /// Binds the sockets now, so that bind errors surface before anything starts.
    convenience init<R: DatagramResponder>(name: String, address requested: SocketEndpoint, workers: Int, makeResponder: () -> R) throws(ListenerError) {
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
        self.init(name: name, address: address, fds: fds, workers: fds.count, inherited: nil, makeResponder: makeResponder)
    }

    /// Serves a UDP socket systemd bound, with `workers` threads sharing it; sets the options
    /// the workers rely on. Owns `socket.fd` from here on, and closes it if this fails.
    convenience init<R: DatagramResponder>(name: String, inherited socket: InheritedSocket, workers: Int, makeResponder: () -> R) throws(ListenerError) {
        do throws(ListenerError) {
            try ListenerSocket.adoptUDP(socket.fd, address: socket.address)
        } catch {
            close(socket.fd)
            throw error
        }
        self.init(name: name, address: socket.address, fds: [socket.fd], workers: max(1, workers), inherited: socket, makeResponder: makeResponder)
    }

    private init<R: DatagramResponder>(name: String, address: SocketEndpoint, fds: [Int32], workers: Int, inherited: InheritedSocket?, makeResponder: () -> R) {
        self.address = address
        self.fds = fds
        self.inheritedFD = inherited?.fd
        let counters = (0..<workers).map { _ in DatagramCounters(dropReasons: R.dropReasons) }
        self.counters = counters
        let answerFromDestination = ListenerSocket.isWildcard(address)
        let stopping = self.stopping
        var start: [() -> WorkerThread] = []
        for i in 0..<workers {
            let worker = DatagramWorker(
                fd: fds[i % fds.count],
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
    /// the sockets, once each: only after every worker reading a socket has returned, so no
    /// worker reads a closed (or reused) descriptor. Idempotent.
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

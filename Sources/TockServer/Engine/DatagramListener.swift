import Atomics
import Glibc
import NIOConcurrencyHelpers
import TockProtocol
import TockSockets

/// A UDP listener for one service on one address: `workers` threads, each running a
/// `DatagramWorker`. Sockets it binds itself are one per worker, joined by SO_REUSEPORT; a
/// socket inherited from systemd is one socket that every worker reads (recvmmsg on a shared
/// socket is safe on Linux, and each datagram goes to one reader).
///
/// Its life is an explicit state: `ready` (sockets bound, workers built), `running` (threads
/// started), `stopped` (threads joined, sockets closed). Transitions happen under a lock,
/// off the packet path.
final class DatagramListener: Sendable {
    /// The service served.
    let service: TockService
    /// The address actually bound (port 0 resolved).
    let address: SocketEndpoint
    /// The inherited descriptor, when systemd bound the socket (socket activation).
    let inheritedFD: Int32?
    /// One per worker.
    let counters: [DatagramCounters]
    /// The sockets, each closed once on stop.
    private let fds: [Int32]
    private let stopping = ManagedAtomic(false)
    private let state: NIOLockedValueBox<State>

    private enum State {
        /// Bound, not yet started: how to start each worker thread.
        case ready([@Sendable () -> Void])
        case running([WorkerThread])
        case stopped
    }

    /// Binds the sockets now, so that bind errors surface before anything starts. With
    /// `transmitTimestamps` (NTP's interleaved mode) each socket reports kernel transmit
    /// timestamps, if the kernel lets it (otherwise every reply stays basic).
    convenience init<R: DatagramResponder>(service: TockService, address requested: SocketEndpoint, workers: Int, transmitTimestamps: Bool = false, hardwareClocks: HardwareClocks? = nil, makeResponder: (DatagramSocket) -> R) throws(ListenerError) {
        let (address, fds) = try ListenerSocket.bindingPort(requested, alsoTCP: false) { (address) throws(ListenerError) -> (SocketEndpoint, [Int32]) in
            var fds: [Int32] = []
            do throws(ListenerError) {
                // A port the kernel chose is free; one the operator named must be proven free.
                if requested.port != 0 { try ListenerSocket.requireFree(address) }
                for _ in 0..<max(1, workers) {
                    fds.append(try ListenerSocket.udp(address))
                }
            } catch {
                for fd in fds { close(fd) }
                throw error
            }
            return (address, fds)
        }
        let hardware = hardwareClocks?.isActive ?? false
        let stamping = transmitTimestamps && fds.allSatisfy { TransmitTimestampQueue.enable(on: $0, hardware: hardware) }
        self.init(service: service, address: address, fds: fds, workers: fds.count, inherited: nil, transmitTimestamps: stamping, hardwareClocks: stamping ? hardwareClocks : nil, makeResponder: makeResponder)
    }

    /// Serves a UDP socket systemd bound, with `workers` threads sharing it; sets the options
    /// the workers rely on. Owns `socket.fd` from here on, and closes it if this fails.
    /// Transmit timestamps only with one worker: the kernel numbers a socket's datagrams, and
    /// workers sharing it could not tell whose a number is.
    convenience init<R: DatagramResponder>(service: TockService, inherited socket: InheritedSocket, workers: Int, transmitTimestamps: Bool = false, hardwareClocks: HardwareClocks? = nil, makeResponder: (DatagramSocket) -> R) throws(ListenerError) {
        do throws(ListenerError) {
            try ListenerSocket.adoptUDP(socket.fd, address: socket.address)
        } catch {
            close(socket.fd)
            throw error
        }
        let hardware = hardwareClocks?.isActive ?? false
        let stamping = transmitTimestamps && workers <= 1 && TransmitTimestampQueue.enable(on: socket.fd, hardware: hardware)
        self.init(service: service, address: socket.address, fds: [socket.fd], workers: max(1, workers), inherited: socket, transmitTimestamps: stamping, hardwareClocks: stamping ? hardwareClocks : nil, makeResponder: makeResponder)
    }

    private init<R: DatagramResponder>(service: TockService, address: SocketEndpoint, fds: [Int32], workers: Int, inherited: InheritedSocket?, transmitTimestamps: Bool, hardwareClocks: HardwareClocks?, makeResponder: (DatagramSocket) -> R) {
        self.service = service
        self.address = address
        self.fds = fds
        self.inheritedFD = inherited?.fd
        let counters = (0..<workers).map { _ in DatagramCounters() }
        self.counters = counters
        let answerFromDestination = ListenerSocket.isWildcard(address)
        let stopping = self.stopping
        var bodies: [@Sendable () -> Void] = []
        for i in 0..<workers {
            let socket = DatagramSocket(
                fd: fds[i % fds.count], isIPv6: address.isIPv6, answerFromDestination: answerFromDestination,
                transmitTimestamps: transmitTimestamps, hardwareClocks: hardwareClocks?.isActive == true ? hardwareClocks : nil
            )
            let worker = DatagramWorker(socket: socket, responder: makeResponder(socket), counters: counters[i], stopping: stopping)
            bodies.append { worker.run() }
        }
        self.state = NIOLockedValueBox(.ready(bodies))
    }

    /// Starts every worker thread (once; later calls do nothing).
    func run() {
        state.withLockedValue { state in
            guard case .ready(let bodies) = state else { return }
            state = .running(bodies.enumerated().map { i, body in WorkerThread.start(name: "\(service)-\(i)", body) })
        }
    }

    /// Stops and joins the workers (within the sockets' 200 ms receive timeout), then closes
    /// the sockets, once each: only after every worker reading a socket has returned, so no
    /// worker reads a closed (or reused) descriptor. Idempotent.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        state.withLockedValue { state in
            if case .stopped = state { return }
            if case .running(let threads) = state {
                for t in threads { t.join() }
            }
            for fd in fds { close(fd) }
            state = .stopped
        }
    }

    deinit {
        stop()
    }

    /// Totals over all workers.
    var statistics: DatagramStatistics {
        var total = DatagramStatistics()
        for c in counters { total.add(DatagramStatistics(c, service: service)) }
        return total
    }
}

import Atomics
import NIOConcurrencyHelpers
import NIOCore
import TockProtocol

/// How far a TCP connection has come: what decides which one gives way when a listener or an
/// address is at its cap. A connection that has sent nothing is the cheapest to lose (a real
/// client sends its request, or its TLS ClientHello, at once); one being answered is never
/// closed to admit another.
enum ConnectionStage: Int, Comparable, Sendable {
    /// Accepted, nothing received yet.
    case silent
    /// Receiving its request (or its TLS handshake).
    case receiving
    /// TLS handshake complete, its request still to come (NTS-KE).
    case handshaken
    /// Answered or being answered: never evicted.
    case answering

    static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The open connections of one TCP listener, with its two caps: connections in all, and
/// connections that have sent something, per client address (an IPv4 address, or an IPv6
/// /64: one host's share).
///
/// A connection that is not doing its job gives way to one that might: when a cap is reached,
/// the least advanced connection under it (`ConnectionStage`), the oldest of those, is closed
/// to admit the newcomer; only when every connection under the cap is being answered is the
/// newcomer refused. So one host holding thousands of idle connections only ever displaces its
/// own, and a flood from many hosts cannot starve a client that completes its exchange in
/// milliseconds: a real client's connection is past `silent` by the time the flood's next
/// connection arrives. Deadlines (`ConnectionGuard`) bound how long a connection may take.
///
/// Per connection, not per packet: the table is shared by the listener's event loops under a
/// lock, held only to update it; connections are closed after the lock is released.
final class ConnectionTable: Sendable {
    /// The caps.
    struct Limits: Sendable, Hashable {
        /// Open connections per listener.
        var total: Int
        /// Open connections per client address (IPv6: per /64).
        var perAddress: Int
    }

    /// Why a connection was closed to admit another, or the newcomer refused.
    enum Pressure: Sendable, Hashable {
        /// The client address (or /64) held `Limits.perAddress` connections.
        case perAddress
        /// The listener held `Limits.total` connections.
        case listenerFull

        /// The reason counted.
        var reason: DropReason {
            switch self {
            case .perAddress: .perAddressCap
            case .listenerFull: .connectionLimit
            }
        }
    }

    /// What `admit` decided.
    enum Admission: Equatable {
        /// Admitted, as connection `id`.
        case admitted(UInt64)
        /// Refused: every connection under the cap is being answered.
        case refused(Pressure)
    }

    /// A connection's address key: an IPv4 address, or an IPv6 address's /64.
    struct AddressKey: Hashable, Sendable {
        let high: UInt64
        let low: UInt64

        init(_ client: ClientAddress) {
            // IPv4 (mapped into ::ffff:0:0/96) keeps its whole address; IPv6 its /64.
            let isIPv4 = client.high == 0 && client.low >> 32 == 0xFFFF
            high = client.high
            low = isIPv4 ? client.low : 0
        }
    }

    private struct Entry {
        let channel: Channel
        let key: AddressKey
        var stage: ConnectionStage
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        /// The connections of each address key, oldest first.
        var byKey: [AddressKey: [UInt64]] = [:]
        /// Every connection in the order it was admitted (ids only; entries removed or advanced
        /// since are skipped when a victim is looked for, and trimmed from the front).
        var order = CircularBuffer<UInt64>()
        var nextID: UInt64 = 1
    }

    let limits: Limits
    let counters: StreamCounters
    private let state: NIOLockedValueBox<State>

    init(limits: Limits, counters: StreamCounters) {
        self.limits = Limits(total: max(1, limits.total), perAddress: max(1, limits.perAddress))
        self.counters = counters
        self.state = NIOLockedValueBox(State())
    }

    /// Connections open now.
    var count: Int { state.withLockedValue { $0.entries.count } }

    /// Admits `channel` from `client`, closing the connection that gives way if the listener
    /// is full (counted as evicted), or refuses it (counted).
    ///
    /// The per-address cap is applied when a connection first sends (`advance`), not here: a
    /// connection that has sent nothing costs the server nothing but its place, and counting
    /// silent ones against their address would let one host's flood of them evict a real
    /// client from the same address (a NAT, or loopback) before its first bytes are read. They
    /// are bounded by the listener's cap, the oldest giving way first, and by the first-byte
    /// deadline.
    func admit(_ channel: Channel, client: ClientAddress) -> Admission {
        let key = AddressKey(client)
        var victim: Channel?
        let admission = state.withLockedValue { state -> Admission in
            if state.entries.count >= limits.total {
                guard let id = Self.victimListenerWide(in: &state) else { return .refused(.listenerFull) }
                victim = Self.remove(id, from: &state)
            }
            // Ids of closed connections behind a long-lived one stay in `order` until trimmed.
            if state.order.count > 2 * limits.total + 64 {
                let open = state.order.filter { state.entries[$0] != nil }
                state.order = CircularBuffer(open)
            }
            let id = state.nextID
            state.nextID &+= 1
            state.entries[id] = Entry(channel: channel, key: key, stage: .silent)
            state.byKey[key, default: []].append(id)
            state.order.append(id)
            return .admitted(id)
        }
        if let victim { evict(victim, .listenerFull) }
        if case .refused(let pressure) = admission { counters.count(pressure.reason) }
        return admission
    }

    /// Connection `id` got this far (a stage is never taken back). When it first sends, its
    /// address's cap applies: if the address already holds `Limits.perAddress` connections that
    /// have sent, the least advanced, oldest of them that is not being answered gives way
    /// (counted as evicted); if every one is being answered, this connection is refused
    /// (counted) and the call returns false: close it.
    @discardableResult
    func advance(_ id: UInt64, to stage: ConnectionStage) -> Bool {
        var victim: Channel?
        let kept = state.withLockedValue { state -> Bool in
            guard let entry = state.entries[id], entry.stage < stage else { return true }
            if entry.stage == .silent, stage < .answering, let mine = state.byKey[entry.key] {
                let sending = mine.filter { $0 != id && (state.entries[$0]?.stage ?? .silent) > .silent }
                if sending.count >= limits.perAddress {
                    guard let other = Self.leastAdvanced(sending, in: state) else {
                        Self.remove(id, from: &state)
                        return false
                    }
                    victim = Self.remove(other, from: &state)
                }
            }
            state.entries[id]!.stage = stage
            return true
        }
        if let victim { evict(victim, .perAddress) }
        if !kept { counters.count(Pressure.perAddress.reason) }
        return kept
    }

    /// Closes `victim` to admit another, counted under `pressure`; its handlers learn why
    /// first, so it is counted once: as evicted.
    private func evict(_ victim: Channel, _ pressure: Pressure) {
        counters.evict(pressure.reason)
        victim.pipeline.fireUserInboundEventTriggered(ConnectionExpired(reason: nil))
        victim.close(promise: nil)
    }

    /// Connection `id` closed.
    func remove(_ id: UInt64) {
        _ = state.withLockedValue { Self.remove(id, from: &$0) }
    }

    /// Closes every open connection (the server is stopping); the futures complete as they
    /// close.
    func closeAll() -> [EventLoopFuture<Void>] {
        let channels = state.withLockedValue { $0.entries.values.map(\.channel) }
        return channels.map { $0.close().recover { _ in } }
    }

    /// The least advanced connection among `ids` (oldest first), if any is not being answered.
    private static func leastAdvanced(_ ids: [UInt64], in state: State) -> UInt64? {
        var best: (id: UInt64, stage: ConnectionStage)?
        for id in ids {
            guard let entry = state.entries[id], entry.stage < .answering else { continue }
            if best == nil || entry.stage < best!.stage { best = (id, entry.stage) }
        }
        return best?.id
    }

    /// The connection that gives way when the listener is full: the oldest silent one, else
    /// the least advanced of all, if any is not being answered.
    private static func victimListenerWide(in state: inout State) -> UInt64? {
        while let front = state.order.first, state.entries[front] == nil { state.order.removeFirst() }
        for id in state.order.prefix(256) where state.entries[id]?.stage == .silent { return id }
        return leastAdvanced(Array(state.order), in: state)
    }

    @discardableResult
    private static func remove(_ id: UInt64, from state: inout State) -> Channel? {
        guard let entry = state.entries.removeValue(forKey: id) else { return nil }
        if var ids = state.byKey[entry.key] {
            ids.removeAll { $0 == id }
            state.byKey[entry.key] = ids.isEmpty ? nil : ids
        }
        if state.order.first == id { state.order.removeFirst() }
        return entry.channel
    }
}

/// The first handler of every TCP connection: holds its place in the listener's
/// `ConnectionTable` until it closes, marks it `receiving` at its first byte, and enforces two
/// deadlines: the first byte within `firstByte` (else `idle`), and the whole connection within
/// `lifetime` (else `timeout`). Both timers are cancelled when the connection goes.
///
/// Not Sendable: NIO calls it on its channel's event loop only.
final class ConnectionGuard: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    let table: ConnectionTable
    let id: UInt64
    let firstByte: TimeAmount?
    let lifetime: TimeAmount?
    private var received = false
    private var closed = false
    private var timers: [Scheduled<Void>] = []

    init(table: ConnectionTable, id: UInt64, firstByte: TimeAmount?, lifetime: TimeAmount?) {
        self.table = table
        self.id = id
        self.firstByte = firstByte
        self.lifetime = lifetime
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        if let firstByte {
            timers.append(context.eventLoop.scheduleTask(in: firstByte) {
                let (handler, context) = loopBound.value
                if !handler.received { handler.expire(context, .idleConnection) }
            })
        }
        if let lifetime {
            timers.append(context.eventLoop.scheduleTask(in: lifetime) {
                let (handler, context) = loopBound.value
                handler.expire(context, .streamTimeout)
            })
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !received {
            received = true
            guard table.advance(id, to: .receiving) else {
                // Its address holds its share of connections, every one being answered.
                expire(context, nil)
                return
            }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        table.remove(id)
        context.fireChannelInactive()
    }

    /// Closes a connection that ran out of time, telling the handlers after this one why
    /// (`ConnectionExpired`), so the one that counts the connection's outcome counts it once.
    private func expire(_ context: ChannelHandlerContext, _ reason: DropReason?) {
        guard !closed else { return }
        closed = true
        context.fireUserInboundEventTriggered(ConnectionExpired(reason: reason))
        context.close(promise: nil)
    }

    private func cancel() {
        for timer in timers { timer.cancel() }
        timers.removeAll()
    }
}

/// A connection is being closed by the server: its deadline passed (`ConnectionGuard`), or it
/// gave way to a newcomer (`ConnectionTable.admit`). The handler that counts the connection's
/// outcome counts `reason`, or nothing for an eviction (counted as one already).
struct ConnectionExpired: Sendable {
    let reason: DropReason?
}

extension ChannelPipeline.SynchronousOperations {
    /// The connection's `ConnectionGuard`, if it has one.
    var connectionGuard: ConnectionGuard? { try? handler(type: ConnectionGuard.self) }
}

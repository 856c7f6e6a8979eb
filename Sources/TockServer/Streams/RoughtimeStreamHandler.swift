import NIOConcurrencyHelpers
import NIOCore
import TockProtocol
import TockSockets

/// Roughtime over TCP (RFC 10049 §5): one framed request per connection, answered with a
/// signed reply by the responder the datagram engine drives, as a batch of one (PATH empty,
/// INDX 0), after which the connection closes.
///
/// One request per connection: RFC 10049 sends the same packet over TCP as over UDP and says
/// nothing of reusing a connection, and a Roughtime exchange is one request and one reply (a
/// client chaining servers asks each once), as NTS-KE's is (RFC 8915 §4). Closing after the
/// reply bounds each connection's memory and life with no flow control to get wrong: a client
/// that writes requests faster than it reads replies cannot make the server queue replies.
/// Bytes after the first packet are never read.
///
/// The core decides the frame from its first bytes (`RoughtimeStream.requestFrame`): bad magic
/// at the first wrong byte; a length over 2048 or under 1024 bytes at the header, before the
/// rest is read. The whole request must arrive within `timeout` of the connection's start, so a
/// client dribbling bytes holds its place no longer than an idle one, and because NIO serves
/// every connection on non-blocking event loops neither delays another client. Every
/// connection ends answered or counted under one `DropReason`; `ConnectionGuard`, ahead of this
/// one in the pipeline, holds its place in the listener's `ConnectionTable` and closes it if it
/// sends nothing within its first-byte deadline.
///
/// Memory: one buffer of `RoughtimeStream.maximumRequestLength` bytes per connection, taken at
/// its first byte; each read is copied in and NIO's receive buffer is left free for reuse, so
/// this handler allocates nothing per read, however the request is cut up (checked with
/// benchmarks/malloc_counter.c on the event-loop threads: a request sent in 4-byte pieces costs
/// what NIO's own read path costs, with this handler's work or without it). The reply buffer is
/// made once the request is whole; the responder (batch storage, and the signer, whose key
/// setup costs about what a signature does) is its event loop's (`RoughtimeStreamResponders`),
/// made once per loop and key, not per connection.
///
/// Not Sendable: NIO calls it on its channel's event loop only.
final class RoughtimeStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let responders: RoughtimeStreamResponders
    let policy: PolicyCell
    let counters: StreamCounters
    /// How long the whole request may take to arrive.
    let timeout: TimeAmount
    /// The listener's open connections, and this one's place there.
    let table: ConnectionTable
    let id: UInt64

    /// Where the connection is.
    private enum State {
        /// Not yet active, or closed by the cap before it was: nothing to count here.
        case idle
        /// Reading the request from `client`.
        case reading(ClientAddress)
        /// Answered, or closed and counted.
        case finished
    }

    private var state = State.idle
    /// The request's bytes so far; allocated at the first byte.
    private var request: [UInt8] = []
    private var received = 0
    /// The bytes the core needs before it decides again.
    private var needed = RoughtimeWire.packetHeaderLength
    private var deadline: Scheduled<Void>?

    init(responders: RoughtimeStreamResponders, policy: PolicyCell, counters: StreamCounters, timeout: TimeAmount, table: ConnectionTable, id: UInt64) {
        self.table = table
        self.id = id
        self.responders = responders
        self.policy = policy
        self.counters = counters
        self.timeout = timeout
    }

    func channelActive(context: ChannelHandlerContext) {
        // The access list first, so a denied address holds no place while it dribbles; its
        // rate limit is spent per request, with the request's other checks.
        guard let client = StreamTimeHandler.client(context.channel.remoteAddress),
              case .serve = ClientAdmission(policy: policy.policy).admit(client, random: 0)
        else {
            finish(context, .denied)
            return
        }
        state = .reading(client)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.finish(context, .streamTimeout)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .reading(let client) = state else { return }
        var chunk = unwrapInboundIn(data)
        if request.isEmpty { request = [UInt8](repeating: 0, count: RoughtimeStream.maximumRequestLength) }
        while true {
            let take = min(chunk.readableBytes, needed - received)
            if take > 0 {
                request.withUnsafeMutableBytes { out in
                    chunk.withUnsafeReadableBytes { UnsafeMutableRawBufferPointer(rebasing: out[received..<(received + take)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<take])) }
                }
                chunk.moveReaderIndex(forwardBy: take)
                received += take
            }
            let decision = request.withUnsafeBytes { RoughtimeStream.requestFrame(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
            switch decision {
            case .needMore(let count):
                needed = count
                if chunk.readableBytes == 0 { return }
            case .complete(let length):
                answer(context, client: client, length: length)
                return
            case .reject(let reason):
                finish(context, reason.dropReason)
                return
            }
        }
    }

    /// Has the core decide on the whole request, and writes the reply or counts the drop.
    private func answer(_ context: ChannelHandlerContext, client: ClientAddress, length: Int) {
        let responder = responders.responder(on: context.eventLoop)
        let capacity = responder.value.replyCapacity
        var reply = context.channel.allocator.buffer(capacity: capacity)
        var verdict = DatagramVerdict.ignore(.roughtimeInternal)
        let now = SystemClock.now()
        request.withUnsafeBytes { packet in
            _ = reply.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { out in
                verdict = responder.value.answerAlone(UnsafeRawBufferPointer(rebasing: packet[0..<length]), from: client, now: now, into: out)
                if case .send(let written) = verdict { return written }
                return 0
            }
        }
        guard case .send = verdict else {
            if case .ignore(let reason) = verdict { finish(context, reason) } else { finish(context, .roughtimeInternal) }
            return
        }
        state = .finished
        deadline?.cancel()
        table.advance(id, to: .answering)
        counters.replied.wrappingIncrement(ordering: .relaxed)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// Closes the connection unanswered, counting `reason` once.
    private func finish(_ context: ChannelHandlerContext, _ reason: DropReason) {
        if case .finished = state { return }
        state = .finished
        deadline?.cancel()
        counters.count(reason)
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client shut down its side before a whole request: a short request. After the
        // reply, the close that follows its write ends the connection.
        if case ChannelEvent.inputClosed = event, case .reading = state {
            finish(context, .tooShort)
            return
        }
        if let expired = event as? ConnectionExpired {
            // A deadline (counted here) or an eviction (counted as one already).
            if let reason = expired.reason {
                finish(context, reason)
            } else {
                state = .finished
                deadline?.cancel()
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The peer went away (or reset) before a whole request.
        if case .reading = state {
            state = .finished
            deadline?.cancel()
            counters.count(.tooShort)
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A reset or other socket error: channelInactive counts an unfinished request.
        context.close(promise: nil)
    }
}

/// The TCP Roughtime responders of one listener, one per event loop: each is made at its loop's
/// first request and then used only on that loop's thread, one request at a time (a handler
/// answers within `channelRead`), so it needs no lock of its own. A new online key reaches it
/// through the responder's own key check (`beginBatch`), as on the datagram engine.
///
/// `@unchecked Sendable`: the table is guarded by `lock`; each box is touched only on its loop.
final class RoughtimeStreamResponders: @unchecked Sendable {
    /// One loop's responder.
    final class Box {
        var value: RoughtimeDatagramResponder
        init(_ value: RoughtimeDatagramResponder) { self.value = value }
    }

    private let make: () -> RoughtimeDatagramResponder
    private let lock = NIOLock()
    private var byLoop: [ObjectIdentifier: Box] = [:]

    /// Responders for `keys`, answering each request as a batch of one (depth 0).
    init(keys: RoughtimeKeyCell, clock: ClockStateCell, policy: PolicyCell) {
        make = { RoughtimeDatagramResponder(keys: keys, clock: clock, policy: policy, depth: 0) }
    }

    /// The responder of `loop`, made on first use. Call on `loop`.
    func responder(on loop: EventLoop) -> Box {
        loop.preconditionInEventLoop()
        return lock.withLock {
            if let box = byLoop[ObjectIdentifier(loop)] { return box }
            let box = Box(make())
            byLoop[ObjectIdentifier(loop)] = box
            return box
        }
    }

    /// How many loops have a responder (for tests).
    var count: Int { lock.withLock { byLoop.count } }
}

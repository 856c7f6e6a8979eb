import Glibc
import TockProtocol
import TockSockets

/// What a datagram service decided for one request.
public enum DatagramVerdict: Sendable, Hashable {
    /// Send the first `length` bytes of the reply buffer.
    case reply(length: Int)
    /// Send the first `length` bytes: a kiss-o'-death (counted apart from replies).
    case kiss(length: Int)
    /// Send nothing; `reason` indexes the responder's `dropReasons`.
    case drop(reason: Int)
}

/// The sender of a datagram, as the kernel wrote it into the engine's receive buffers.
///
/// A view, not a copy: valid only during the `respond` call that receives it.
public struct DatagramSource {
    /// The sender's address.
    public let address: UnsafePointer<sockaddr_storage>

    /// The sender's port in host byte order.
    @inlinable
    public var port: UInt16 {
        UnsafeRawPointer(address).loadUnaligned(fromByteOffset: 2, as: UInt16.self).bigEndian
    }

    /// A copy of the address (off the per-packet path only).
    public var endpoint: SocketEndpoint {
        let length = address.pointee.ss_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        return SocketEndpoint(storage: address.pointee, length: socklen_t(length))
    }
}

/// A protocol's per-packet logic as the datagram engine drives it: one value per worker
/// thread, owned by that thread, so it needs no locks.
///
/// The engine calls `beginBatch` once per received batch, `respond` per datagram, and
/// `stampTransmitTime` for every reply just before the batch is sent.
public protocol DatagramResponder {
    /// The largest reply `respond` writes; the engine allocates this much per slot.
    static var replyCapacity: Int { get }
    /// The names of the drop reasons, indexed by `DatagramVerdict.drop(reason:)`.
    static var dropReasons: [String] { get }

    /// Refreshes per-batch state (the clock state, the local time zone); `now` is the time the
    /// batch was read.
    mutating func beginBatch(now: UTCInstant)

    /// Decides on one datagram received at `receiveTime` and writes any reply into `reply`.
    mutating func respond(
        to request: UnsafeRawBufferPointer,
        from source: DatagramSource,
        receiveTime: UTCInstant,
        reply: UnsafeMutableRawBufferPointer
    ) -> DatagramVerdict

    /// Writes the transmit time into a reply just before it is sent.
    mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer)
}

extension DatagramResponder {
    /// Most protocols carry no transmit time.
    public mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer) {}
}

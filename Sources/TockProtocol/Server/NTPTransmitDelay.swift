/// The server's estimate of how late a reply leaves after its transmit timestamp (T3) is read:
/// the time from that clock read to the kernel's software transmit timestamp of the datagram
/// (the send system call and the network stack), from a sample of basic replies.
///
/// RFC 5905 §8 defines T3 as the time the reply departs the server. A basic reply's T3 can
/// only be read before the send, so without correction it is early by this delay, and a
/// client's offset is off by half of it (the request's T2 is the kernel's receive timestamp,
/// taken where the datagram arrives). Interleaved mode (RFC 9769) gives clients that ask for
/// it the kernel's timestamp itself; this estimate moves every other reply's T3 towards it.
/// chronyd sends the uncorrected reading.
///
/// A T3 later than the reply's real departure would be worse than an early one: a client's
/// delay would shrink below the path's and its offset leave the δ/2 bound. So the estimate is
/// the smallest of the last `window` samples (no send is faster than the fastest seen lately),
/// and 0 until `minimumSamples` are in (the first sends on a socket run cold and slow). A
/// sample outside 0…`maximum` is not believed. Fixed-size and allocation-free: one per worker,
/// updated on its thread.
public struct NTPTransmitDelay: Sendable {
    /// Samples the estimate is taken over.
    public static let window = 9
    /// Samples needed before any correction.
    public static let minimumSamples = 3
    /// The largest delay believed, nanoseconds (1 ms): more means something other than the send
    /// path (a descheduled worker, a lost count).
    public static let maximum: Int64 = 1_000_000

    private var samples = InlineArray<9, Int64>(repeating: 0)
    private var count = 0
    private var next = 0
    /// The correction, nanoseconds: 0 until `minimumSamples` samples are in.
    public private(set) var nanoseconds: Int64 = 0

    /// An estimate with no samples (no correction).
    public init() {}

    /// Adds one measured delay (kernel transmit timestamp − T3 as read), nanoseconds. Returns
    /// whether it was believed.
    @discardableResult
    public mutating func record(_ delay: Int64) -> Bool {
        guard delay >= 0, delay <= Self.maximum else { return false }
        samples[next] = delay
        next = (next + 1) % Self.window
        count = min(count + 1, Self.window)
        guard count >= Self.minimumSamples else { return true }
        var smallest = samples[0]
        for i in 1..<count { smallest = min(smallest, samples[i]) }
        nanoseconds = smallest
        return true
    }
}

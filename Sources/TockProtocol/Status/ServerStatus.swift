/// tockd's live figures as served at `/status` on its metrics endpoint and shown by
/// `tock status`: what `chronyc serverstats` and `chronyc clients` show for chronyd.
///
/// A JSON document (snake_case keys); `version` changes only if a field changes meaning, so
/// older `tock` clients can read newer servers.
public struct ServerStatus: Codable, Sendable, Hashable {
    /// The document's format version.
    public var version: Int
    /// Seconds since the server started.
    public var uptimeSeconds: Double
    /// The clock state the server's replies carry now, so an operator can see at a glance
    /// whether clients are being told the server is synchronised.
    public var clock: Clock
    /// Totals per protocol and transport.
    public var services: [Service]
    /// Per worker thread: how the load spreads over cores.
    public var workers: [Worker]
    /// The busiest clients of each rate-limited service, most requests first.
    public var clients: [ClientGroup]
    /// The NTS cookie key in use, when the server speaks NTS.
    public var nts: NTS?
    /// The Roughtime delegation served, when the server speaks Roughtime; absent in documents
    /// from servers without it.
    public var roughtime: Roughtime?
    /// The interfaces hardware timestamping was asked for (`--hw-timestamping`), and what
    /// became of each; absent when none was.
    public var hardwareTimestamping: [HardwareInterface]?

    /// One interface asked to timestamp NTP packets in hardware.
    public struct HardwareInterface: Codable, Sendable, Hashable {
        /// The interface's name.
        public var name: String
        /// Whether its card timestamps packets now (else software timestamps are used).
        public var hardware: Bool
        /// Why not, when not.
        public var reason: String?
        /// Its PTP hardware clock (/dev/ptpN).
        public var clock: String?
        /// The receive filter in use: all, ntp or none (transmit timestamps only).
        public var receiveFilter: String?
        /// How fast the hardware clock runs against the system clock, ppm (the fitted rate).
        public var rateErrorPPM: Double?
        /// Fresh starts of the clock fit after either clock was stepped.
        public var clockResets: UInt64?

        /// One interface's state.
        public init(name: String, hardware: Bool, reason: String? = nil, clock: String? = nil, receiveFilter: String? = nil, rateErrorPPM: Double? = nil, clockResets: UInt64? = nil) {
            self.name = name
            self.hardware = hardware
            self.reason = reason
            self.clock = clock
            self.receiveFilter = receiveFilter
            self.rateErrorPPM = rateErrorPPM
            self.clockResets = clockResets
        }
    }

    /// The Roughtime delegation (RFC 10049 §5.2.6): which online key signs, and until when.
    /// Once MAXT passes the server answers no Roughtime request, so operators watch
    /// `delegationSecondsRemaining`.
    public struct Roughtime: Codable, Sendable, Hashable {
        /// "renewed": the online key is made in memory from the long-term key and renewed
        /// before MAXT; "file": a delegation signed offline, read from `delegationFile`.
        public var delegationSource: String
        /// The offline delegation's file; absent for "renewed".
        public var delegationFile: String?
        /// The long-term public key clients trust, base64.
        public var longTermPublicKey: String
        /// The online public key (DELE's PUBK), base64.
        public var onlinePublicKey: String
        /// MINT: the start of the delegation, Unix seconds.
        public var delegationStart: UInt64
        /// MAXT: the end of the delegation, Unix seconds.
        public var delegationExpiry: UInt64
        /// MAXT minus the server's time when the document was made; negative once expired.
        public var delegationSecondsRemaining: Int64

        /// The delegation's figures.
        public init(delegationSource: String, delegationFile: String?, longTermPublicKey: String, onlinePublicKey: String, delegationStart: UInt64, delegationExpiry: UInt64, delegationSecondsRemaining: Int64) {
            self.delegationSource = delegationSource
            self.delegationFile = delegationFile
            self.longTermPublicKey = longTermPublicKey
            self.onlinePublicKey = onlinePublicKey
            self.delegationStart = delegationStart
            self.delegationExpiry = delegationExpiry
            self.delegationSecondsRemaining = delegationSecondsRemaining
        }
    }

    /// NTS cookie keys (RFC 8915 §6): which period seals new cookies, and for how long.
    public struct NTS: Codable, Sendable, Hashable {
        /// The id of the key sealing new cookies (the number of periods since the Unix epoch).
        public var cookieKey: UInt32
        /// Seconds per key period.
        public var keyPeriodSeconds: Int64
        /// Previous periods whose cookies still open.
        public var keptPeriods: Int

        /// The key state.
        public init(cookieKey: UInt32, keyPeriodSeconds: Int64, keptPeriods: Int) {
            self.cookieKey = cookieKey
            self.keyPeriodSeconds = keyPeriodSeconds
            self.keptPeriods = keptPeriods
        }
    }

    /// Creates a status document; `version` defaults to the current format.
    public init(version: Int = 1, uptimeSeconds: Double, clock: Clock, services: [Service], workers: [Worker], clients: [ClientGroup], nts: NTS? = nil, roughtime: Roughtime? = nil) {
        self.nts = nts
        self.roughtime = roughtime
        self.version = version
        self.uptimeSeconds = uptimeSeconds
        self.clock = clock
        self.services = services
        self.workers = workers
        self.clients = clients
    }

    /// The clock state every reply carries (RFC 5905 §7.3 header fields).
    public struct Clock: Codable, Sendable, Hashable {
        /// Where the state comes from: kernel, local, unsynchronized or external.
        public var source: String
        /// Whether replies claim a synchronised clock (leap indicator other than 3).
        public var synchronized: Bool
        /// The stratum replies carry (RFC 5905 §7.3): 1 for a primary reference, 0 when
        /// unsynchronised ("unspecified or invalid").
        public var stratum: Int
        /// Leap indicator, 0-3 (3: unsynchronised).
        public var leap: Int
        /// Reference ID as text: four ASCII characters, or a dotted IPv4 address.
        public var reference: String
        /// Root delay, seconds: the round trip to the primary reference (RFC 5905 §7.3).
        public var rootDelaySeconds: Double
        /// Root dispersion, seconds: the error bound relative to the primary reference that
        /// replies carry (RFC 5905 §7.3).
        public var rootDispersionSeconds: Double

        /// Creates the clock section from values already converted for display.
        public init(source: String, synchronized: Bool, stratum: Int, leap: Int, reference: String, rootDelaySeconds: Double, rootDispersionSeconds: Double) {
            self.source = source
            self.synchronized = synchronized
            self.stratum = stratum
            self.leap = leap
            self.reference = reference
            self.rootDelaySeconds = rootDelaySeconds
            self.rootDispersionSeconds = rootDispersionSeconds
        }
    }

    /// One protocol over one transport, summed over its addresses and workers.
    public struct Service: Codable, Sendable, Hashable {
        /// "ntp", "daytime" or "time".
        public var name: String
        /// "udp" or "tcp".
        public var transport: String
        /// Datagrams received, or connections accepted.
        public var requests: UInt64
        /// Replies sent (kisses-o'-death included).
        public var replies: UInt64
        /// Kiss-o'-death replies sent (RATE, DENY, RSTR).
        public var kissesOfDeath: UInt64
        /// Requests not answered, by reason.
        public var drops: [String: UInt64]
        /// Send and receive errors from the kernel.
        public var errors: UInt64
        /// NTS-protected replies sent (RFC 8915 §5.7), included in `replies`; absent in
        /// documents from servers without NTS.
        public var authenticated: UInt64?
        /// Interleaved replies sent (RFC 9769), included in `replies`; absent for other
        /// services and when interleaved mode is off.
        public var interleaved: UInt64?
        /// Kisses-o'-death by why they were sent (`denied`, `rate_limited`, `nts_bad_cookie`:
        /// an NTS NAK); absent for services that send none.
        public var kisses: [String: UInt64]?
        /// Roughtime: SREP signatures made, one per version in each receive batch (RFC 10049
        /// §5.3); absent for other services.
        public var signatures: UInt64?
        /// Roughtime: receive batches answered, by how many requests each signature covered
        /// ("1", "2-3", "4-7", ... "64+"); absent for other services.
        public var batchSizes: [String: UInt64]?
        /// NTP: basic replies whose kernel transmit timestamp was sampled to correct T3 for the
        /// send delay (`NTPTransmitDelay`); absent for other services.
        public var transmitDelaySamples: UInt64?
        /// NTP: the sum of those samples' delays, seconds (the mean delay is the ratio to
        /// `transmitDelaySamples`); absent for other services.
        public var transmitDelaySeconds: Double?
        /// NTP: timestamps the network cards took, converted to system time and used as T2
        /// (receive) or as an interleaved reply's T3 (transmit); absent without hardware
        /// timestamping.
        public var hardwareReceiveTimestamps: UInt64?
        /// NTP: card transmit timestamps that replaced a software one in an interleaved reply.
        public var hardwareTransmitTimestamps: UInt64?
        /// TCP: connections closed to admit a newcomer, by the cap that was reached
        /// (`per_address_cap`, `connection_limit`: the listener was full); absent for UDP.
        public var evicted: [String: UInt64]?

        /// Creates one service's totals.
        public init(name: String, transport: String, requests: UInt64, replies: UInt64, kissesOfDeath: UInt64, drops: [String: UInt64], errors: UInt64, authenticated: UInt64? = nil, kisses: [String: UInt64]? = nil,
                    signatures: UInt64? = nil, batchSizes: [String: UInt64]? = nil, interleaved: UInt64? = nil,
                    transmitDelaySamples: UInt64? = nil, transmitDelaySeconds: Double? = nil) {
            self.authenticated = authenticated
            self.transmitDelaySamples = transmitDelaySamples
            self.transmitDelaySeconds = transmitDelaySeconds
            self.interleaved = interleaved
            self.kisses = kisses
            self.signatures = signatures
            self.batchSizes = batchSizes
            self.name = name
            self.transport = transport
            self.requests = requests
            self.replies = replies
            self.kissesOfDeath = kissesOfDeath
            self.drops = drops
            self.errors = errors
        }
    }

    /// One UDP worker thread.
    public struct Worker: Codable, Sendable, Hashable {
        /// The protocol the worker serves: "ntp", "daytime" or "time".
        public var name: String
        /// The address its listener is bound to.
        public var address: String
        /// The worker's position among its listener's workers, from 0.
        public var index: Int
        /// Datagrams this worker received: uneven figures across workers show the kernel's
        /// SO_REUSEPORT hash favouring some cores.
        public var requests: UInt64
        /// Replies this worker sent (kisses-o'-death included).
        public var replies: UInt64

        /// Creates one worker's figures.
        public init(name: String, address: String, index: Int, requests: UInt64, replies: UInt64) {
            self.name = name
            self.address = address
            self.index = index
            self.requests = requests
            self.replies = replies
        }
    }

    /// A rate-limited service's busiest clients.
    public struct ClientGroup: Codable, Sendable, Hashable {
        /// The service the table belongs to: "ntp", "daytime" or "time".
        public var name: String
        /// Clients in the table now.
        public var tracked: Int
        /// Clients the table can hold.
        public var capacity: Int
        /// The clients with the most requests, most first.
        public var busiest: [Client]

        /// Creates one service's client listing.
        public init(name: String, tracked: Int, capacity: Int, busiest: [Client]) {
            self.name = name
            self.tracked = tracked
            self.capacity = capacity
            self.busiest = busiest
        }
    }

    /// One client (address prefix) of the rate-limit table.
    public struct Client: Codable, Sendable, Hashable {
        /// The address prefix the table keys on: the address itself at /32 or /128, else
        /// ADDRESS/LENGTH, since the limit applies to a whole prefix.
        public var prefix: String
        /// Requests from this prefix since it took its slot in the table (an evicted prefix
        /// starts again from 0).
        public var requests: UInt64
        /// Requests refused by the limit (dropped or kissed); one the leak lets through got
        /// its time and is not counted here.
        public var limited: UInt64
        /// Tokens left in its bucket.
        public var tokens: Int

        /// Creates one client's entry.
        public init(prefix: String, requests: UInt64, limited: UInt64, tokens: Int) {
            self.prefix = prefix
            self.requests = requests
            self.limited = limited
            self.tokens = tokens
        }
    }
}

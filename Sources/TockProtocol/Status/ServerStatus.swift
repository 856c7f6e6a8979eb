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
    public var clock: Clock
    /// Totals per protocol and transport.
    public var services: [Service]
    /// Per worker thread: how the load spreads over cores.
    public var workers: [Worker]
    /// The busiest clients of each rate-limited service, most requests first.
    public var clients: [ClientGroup]

    public init(version: Int = 1, uptimeSeconds: Double, clock: Clock, services: [Service], workers: [Worker], clients: [ClientGroup]) {
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
        public var synchronized: Bool
        public var stratum: Int
        /// Leap indicator, 0-3 (3: unsynchronised).
        public var leap: Int
        /// Reference ID as text: four ASCII characters, or a dotted IPv4 address.
        public var reference: String
        public var rootDelaySeconds: Double
        public var rootDispersionSeconds: Double

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

        public init(name: String, transport: String, requests: UInt64, replies: UInt64, kissesOfDeath: UInt64, drops: [String: UInt64], errors: UInt64) {
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
        public var name: String
        public var address: String
        public var index: Int
        public var requests: UInt64
        public var replies: UInt64

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
        public var name: String
        /// Clients in the table now.
        public var tracked: Int
        /// Clients the table can hold.
        public var capacity: Int
        public var busiest: [Client]

        public init(name: String, tracked: Int, capacity: Int, busiest: [Client]) {
            self.name = name
            self.tracked = tracked
            self.capacity = capacity
            self.busiest = busiest
        }
    }

    /// One client (address prefix) of the rate-limit table.
    public struct Client: Codable, Sendable, Hashable {
        public var prefix: String
        public var requests: UInt64
        /// Requests over the limit (dropped, kissed, or answered by the leak).
        public var limited: UInt64
        /// Tokens left in its bucket.
        public var tokens: Int

        public init(prefix: String, requests: UInt64, limited: UInt64, tokens: Int) {
            self.prefix = prefix
            self.requests = requests
            self.limited = limited
            self.tokens = tokens
        }
    }
}

/// The Merkle tree a server builds over a batch of requests, and the check a client runs on
/// its PATH (RFC 10049 §5.3, §5.3.1).

/// A Merkle tree over one batch of requests (RFC 10049 §5.3), in storage allocated once.
///
/// Leaves are H(0x00 ‖ data), nodes H(0x01 ‖ left ‖ right), all 32 bytes. A level with an odd
/// number of nodes (other than the root) is padded with a copy of its first node, as
/// cloudflare/roughtime pads, so the tree commits only to requests it received and a server
/// given cloudflare's seeds reproduces its replies byte for byte. Every leaf's PATH then has
/// the same length, the tree's `depth`, which keeps a batch's replies the same size. §5.3
/// leaves padding to the server: a client only replays the PATH it is given.
///
/// `maximumDepth` bounds the tree (and so PATH, §5.2.4) and the batch: at most
/// 2^maximumDepth leaves. Storage for all levels is allocated in `init`; `removeAll`,
/// `appendLeaf`, `computeRoot` and `writePath` allocate nothing beyond what the hasher does.
public struct RoughtimeMerkleTree {
    /// The largest `maximumDepth` allowed: 2^16 leaves, 4 MiB of nodes, and a PATH of 16
    /// hashes, which still fits a reply into a 1024-byte request.
    public static let depthLimit = 16

    /// The deepest tree this value holds: at most 2^maximumDepth leaves.
    public let maximumDepth: Int
    /// How many leaves it holds at most.
    public var capacity: Int { 1 << maximumDepth }
    /// Leaves appended since the last `removeAll`.
    public private(set) var leafCount = 0
    /// The number of hashes in every PATH, set by `computeRoot`: 0 for one leaf, else
    /// ⌈log2(leafCount)⌉.
    public private(set) var depth = 0
    /// Whether `computeRoot` has run since the last change.
    public private(set) var isComplete = false

    /// All levels, leaves first; level k holds at most `capacity >> k` nodes, padding
    /// included: a level whose count is odd and above 1 is below `capacity >> k`, which is
    /// even, so its padding node fits.
    private var nodes: [UInt8]

    /// An empty tree for up to 2^maximumDepth leaves (0...`depthLimit`).
    public init(maximumDepth: Int) {
        precondition(maximumDepth >= 0 && maximumDepth <= Self.depthLimit, "Merkle tree depth out of range")
        self.maximumDepth = maximumDepth
        nodes = [UInt8](repeating: 0, count: RoughtimeWire.hashLength * (2 << maximumDepth))
    }

    /// The index of the first node of `level` in `nodes`: the levels below it hold
    /// capacity + capacity/2 + … + capacity/2^(level−1) nodes.
    private func levelStart(_ level: Int) -> Int {
        Self.levelStart(level, capacity: capacity)
    }

    /// `levelStart` for a tree of `capacity` leaves, callable while `nodes` is being written.
    private static func levelStart(_ level: Int, capacity: Int) -> Int {
        2 * capacity - ((2 * capacity) >> level)
    }

    /// Empties the tree for the next batch, keeping its storage.
    public mutating func removeAll() {
        leafCount = 0
        depth = 0
        isComplete = false
    }

    /// Appends the leaf H(0x00 ‖ `data`) (§5.3); returns its index, or nil when the tree is full.
    public mutating func appendLeaf<H: RoughtimeHasher>(_ data: UnsafeRawBufferPointer, hasher: inout H) -> Int? {
        guard leafCount < capacity else { return nil }
        let index = leafCount
        let range = (RoughtimeWire.hashLength * index)..<(RoughtimeWire.hashLength * (index + 1))
        nodes.withUnsafeMutableBytes { hasher.hashLeaf(data, into: UnsafeMutableRawBufferPointer(rebasing: $0[range])) }
        leafCount += 1
        isComplete = false
        return index
    }

    /// Computes every level up to the root (§5.3), padding odd levels with their first node.
    public mutating func computeRoot<H: RoughtimeHasher>(hasher: inout H) {
        precondition(leafCount > 0, "a Merkle tree needs at least one leaf")
        var count = leafCount
        var level = 0
        let h = RoughtimeWire.hashLength
        let capacity = self.capacity
        nodes.withUnsafeMutableBytes { all in
            while count > 1 {
                let base = Self.levelStart(level, capacity: capacity)
                if count % 2 == 1 {
                    // Pad with a copy of the first node; storage allows it (see `nodes`).
                    UnsafeMutableRawBufferPointer(rebasing: all[(h * (base + count))..<(h * (base + count + 1))])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: all[(h * base)..<(h * (base + 1))]))
                    count += 1
                }
                let next = Self.levelStart(level + 1, capacity: capacity)
                for j in 0..<(count / 2) {
                    let left = UnsafeRawBufferPointer(rebasing: all[(h * (base + 2 * j))..<(h * (base + 2 * j + 1))])
                    let right = UnsafeRawBufferPointer(rebasing: all[(h * (base + 2 * j + 1))..<(h * (base + 2 * j + 2))])
                    hasher.hashNode(left: left, right: right, into: UnsafeMutableRawBufferPointer(rebasing: all[(h * (next + j))..<(h * (next + j + 1))]))
                }
                count /= 2
                level += 1
            }
        }
        depth = level
        isComplete = true
    }

    /// Copies the root (the ROOT value, §5.2.5) into `output`, which holds 32 bytes.
    public func writeRoot(into output: UnsafeMutableRawBufferPointer) {
        precondition(isComplete, "computeRoot first")
        let start = levelStart(depth)
        nodes.withUnsafeBytes {
            output.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(RoughtimeWire.hashLength * start)..<(RoughtimeWire.hashLength * (start + 1))]))
        }
    }

    /// The root as an array.
    public var root: [UInt8] {
        var out = [UInt8](repeating: 0, count: RoughtimeWire.hashLength)
        out.withUnsafeMutableBytes { writeRoot(into: $0) }
        return out
    }

    /// Writes the PATH for leaf `index` (§5.2.4): its sibling at each level from the leaves up,
    /// `depth` hashes, into `output`; returns the bytes written (32·depth).
    public func writePath(forLeaf index: Int, into output: UnsafeMutableRawBufferPointer) -> Int {
        precondition(isComplete, "computeRoot first")
        precondition(index >= 0 && index < leafCount, "no such leaf")
        let h = RoughtimeWire.hashLength
        precondition(output.count >= h * depth, "PATH buffer too short")
        var i = index
        nodes.withUnsafeBytes { all in
            for level in 0..<depth {
                let base = levelStart(level)
                let sibling = base + (i ^ 1)
                UnsafeMutableRawBufferPointer(rebasing: output[(h * level)..<(h * (level + 1))])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: all[(h * sibling)..<(h * (sibling + 1))]))
                i >>= 1
            }
        }
        return h * depth
    }

    /// The client's check (§5.3.1): starting from H(0x00 ‖ `leafData`), hash in each 32-byte
    /// PATH entry (on the right when INDX's current bit is 0, on the left when 1), then compare
    /// with `root`. Fails if PATH is not a whole number of hashes, holds more than 32 (§5.2.4),
    /// or INDX has bits left over once PATH is used up.
    public static func verify<H: RoughtimeHasher>(
        leafData: UnsafeRawBufferPointer, index: UInt32, path: UnsafeRawBufferPointer,
        root: UnsafeRawBufferPointer, hasher: inout H
    ) -> Bool {
        let h = RoughtimeWire.hashLength
        guard path.count % h == 0, path.count / h <= RoughtimeWire.maximumPathLength, root.count == h else { return false }
        // Two 32-byte slots: the current value and the next, swapped each step.
        var state = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var bits = index
        return withUnsafeMutableBytes(of: &state) { slots in
            var current = UnsafeMutableRawBufferPointer(rebasing: slots[0..<h])
            var next = UnsafeMutableRawBufferPointer(rebasing: slots[h..<(2 * h)])
            hasher.hashLeaf(leafData, into: current)
            for step in 0..<(path.count / h) {
                let node = UnsafeRawBufferPointer(rebasing: path[(h * step)..<(h * (step + 1))])
                if bits & 1 == 0 {
                    hasher.hashNode(left: UnsafeRawBufferPointer(current), right: node, into: next)
                } else {
                    hasher.hashNode(left: node, right: UnsafeRawBufferPointer(current), into: next)
                }
                swap(&current, &next)
                bits >>= 1
            }
            return bits == 0 && RoughtimeWire.equal(UnsafeRawBufferPointer(current), root)
        }
    }
}

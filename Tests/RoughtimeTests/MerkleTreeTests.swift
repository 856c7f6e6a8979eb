import Testing
import TockCrypto
import TockProtocol

/// The Merkle tree (RFC 10049 §5.3) and the client's check (§5.3.1).
@Suite struct MerkleTreeTests {
    /// H over `parts`, through the real hasher.
    func h(_ first: [UInt8], _ second: [UInt8] = [], _ third: [UInt8] = []) -> [UInt8] {
        var hasher = RoughtimeSHA512()
        var out = [UInt8](repeating: 0, count: 32)
        first.withUnsafeBytes { a in second.withUnsafeBytes { b in third.withUnsafeBytes { c in
            out.withUnsafeMutableBytes { hasher.hash(a, b, c, into: $0) }
        } } }
        return out
    }

    /// A tree over `n` leaves whose data is `[i, i, i, i]`.
    func tree(_ n: Int, maximumDepth: Int = 7) -> RoughtimeMerkleTree {
        var t = RoughtimeMerkleTree(maximumDepth: maximumDepth)
        var hasher = RoughtimeSHA512()
        for i in 0..<n {
            let leaf = [UInt8](repeating: UInt8(i), count: 4)
            #expect(leaf.withUnsafeBytes { t.appendLeaf($0, hasher: &hasher) } == i)
        }
        t.computeRoot(hasher: &hasher)
        return t
    }

    /// Whether leaf data `data` at `index` with `path` leads to `root`.
    func proves(_ data: [UInt8], _ index: UInt32, _ path: [UInt8], _ root: [UInt8]) -> Bool {
        var hasher = RoughtimeSHA512()
        return data.withUnsafeBytes { d in path.withUnsafeBytes { p in root.withUnsafeBytes { r in
            RoughtimeMerkleTree.verify(leafData: d, index: index, path: p, root: r, hasher: &hasher)
        } } }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 128])
    func everyLeafProvesItsPlace(n: Int) {
        let t = tree(n)
        var depth = 0
        while 1 << depth < n { depth += 1 }
        #expect(t.depth == depth)
        let root = t.root
        for i in 0..<n {
            var path = [UInt8](repeating: 0, count: 32 * 7)
            let length = path.withUnsafeMutableBytes { t.writePath(forLeaf: i, into: $0) }
            #expect(length == 32 * depth)
            path = Array(path[0..<length])
            let data = [UInt8](repeating: UInt8(i), count: 4)
            #expect(proves(data, UInt32(i), path, root))
            #expect(!proves(data, UInt32(i) | UInt32(1 << depth), path, root), "INDX bits beyond PATH (§5.3.1)")
            #expect(!proves([UInt8](repeating: UInt8(i), count: 8), UInt32(i), path, root))
            if n > 1 { #expect(!proves(data, UInt32(i ^ 1), path, root)) }
        }
    }

    /// The tree's shape: leaves H(0x00 ‖ data), nodes H(0x01 ‖ left ‖ right), and an odd level
    /// padded with a copy of its first node.
    @Test func shapeAndPadding() {
        let leaves = (0..<3).map { h([0x00], [UInt8](repeating: UInt8($0), count: 4)) }
        let left = h([0x01], leaves[0], leaves[1])
        let right = h([0x01], leaves[2], leaves[0])
        #expect(tree(3).root == h([0x01], left, right))
        #expect(tree(1).root == leaves[0])
        #expect(tree(1).depth == 0)
    }

    /// The tree's storage is kept across batches, and a full tree takes no more leaves.
    @Test func reuseAndCapacity() {
        var t = tree(4, maximumDepth: 2)
        let first = t.root
        var hasher = RoughtimeSHA512()
        #expect([UInt8](repeating: 9, count: 4).withUnsafeBytes { t.appendLeaf($0, hasher: &hasher) } == nil)
        t.removeAll()
        for i in 0..<4 {
            _ = [UInt8](repeating: UInt8(i), count: 4).withUnsafeBytes { t.appendLeaf($0, hasher: &hasher) }
        }
        t.computeRoot(hasher: &hasher)
        #expect(t.root == first)
    }

    /// PATH must be whole hashes and at most 32 of them (§5.2.4).
    @Test func pathShapeIsChecked() {
        let root = tree(1).root
        #expect(proves([0, 0, 0, 0], 0, [], root))
        #expect(!proves([0, 0, 0, 0], 0, [1, 2, 3, 4], root))
        #expect(!proves([0, 0, 0, 0], 0, [UInt8](repeating: 0, count: 33 * 32), root))
        #expect(!proves([0, 0, 0, 0], 0, [], Array(root.prefix(16))))
    }
}

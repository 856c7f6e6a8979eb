#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CNettle

/// Per-thread working memory for nettle's Ed25519, so that a signature allocates nothing.
///
/// nettle's public `ed25519_sha512_sign` and `ed25519_sha512_verify` (RFC 8032 §5.1.6,
/// §5.1.7) take their scratch limbs (416 and 2,112 bytes in nettle 3.8) from GMP's allocation
/// functions, which are `malloc` and `free` unless a program replaces them: one heap
/// allocation per signature, and a Roughtime batch, which may hold a single request, signs once. GMP lets a
/// program replace them (`mp_set_memory_functions`, GMP manual §13 "Custom Allocation"). The
/// replacements here lend a buffer owned by the calling thread while that thread is inside
/// `withScratch`, and pass every other request straight to `malloc`, `realloc` and `free`, as
/// GMP's own defaults do, so any other GMP user in the process sees no difference, and memory
/// allocated before the replacement is installed is freed correctly after it.
///
/// A thread's buffer is allocated the first time it signs or verifies and freed when it
/// exits. A request larger than the buffer, or a second one while the buffer is lent, falls
/// back to `malloc`: still correct, just not allocation-free.
enum Ed25519Scratch {
    /// What a thread's block holds before its buffer: the state word, then how many times the
    /// buffer has been lent.
    private static let headerSize = 16
    /// The buffer's size: nettle 3.8 asks for 416 bytes to sign and 2,112 to verify.
    private static let capacity = 4096

    /// The buffer's state, in the block's first word.
    private enum State: Int {
        /// The thread is not inside `withScratch`: every request goes to `malloc`.
        case idle = 0
        /// Inside `withScratch`, the buffer free to lend.
        case armed = 1
        /// Inside `withScratch`, the buffer lent to nettle.
        case lent = 2
    }

    /// The key of each thread's block; making it installs the allocation functions, once per
    /// process.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let made = pthread_key_create(&key) { block in free(block) }
        precondition(made == 0, "pthread_key_create failed")
        // gmp.h's mp_set_memory_functions, a macro for this name, which Swift does not import.
        __gmp_set_memory_functions(
            { size in Ed25519Scratch.allocate(size) },
            { pointer, oldSize, newSize in Ed25519Scratch.reallocate(pointer, oldSize: oldSize, newSize: newSize) },
            { pointer, _ in Ed25519Scratch.release(pointer) })
        return key
    }()

    /// Installs the allocation functions now, so no signature is the first GMP use.
    static func install() {
        _ = key
    }

    /// Runs `body` with this thread's buffer lendable to nettle.
    static func withScratch<Result>(_ body: () -> Result) -> Result {
        let block = threadBlock()
        block.storeBytes(of: State.armed.rawValue, as: Int.self)
        defer { block.storeBytes(of: State.idle.rawValue, as: Int.self) }
        return body()
    }

    /// How many times this thread's buffer has been lent, for the tests.
    static var lentOnThisThread: Int {
        guard let block = pthread_getspecific(key) else { return 0 }
        return block.load(fromByteOffset: MemoryLayout<Int>.size, as: Int.self)
    }

    /// This thread's block, allocated on first use.
    private static func threadBlock() -> UnsafeMutableRawPointer {
        if let block = pthread_getspecific(key) { return block }
        guard let block = malloc(headerSize + capacity) else { fatalError("out of memory") }
        block.storeBytes(of: State.idle.rawValue, as: Int.self)
        block.storeBytes(of: 0, toByteOffset: MemoryLayout<Int>.size, as: Int.self)
        pthread_setspecific(key, block)
        return block
    }

    /// This thread's block, if the pointer is its buffer.
    private static func blockLending(_ pointer: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        guard let pointer, let block = pthread_getspecific(key), pointer == block + headerSize else { return nil }
        return block
    }

    /// GMP's allocate: the buffer if armed and large enough, else `malloc`. GMP's functions
    /// must not return NULL (GMP manual §13), so running out of memory stops the process, as
    /// GMP's default does.
    private static func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size <= capacity, let block = pthread_getspecific(key), block.load(as: Int.self) == State.armed.rawValue {
            block.storeBytes(of: State.lent.rawValue, as: Int.self)
            let lent = block.load(fromByteOffset: MemoryLayout<Int>.size, as: Int.self)
            block.storeBytes(of: lent &+ 1, toByteOffset: MemoryLayout<Int>.size, as: Int.self)
            return block + headerSize
        }
        guard let memory = malloc(size) else { fatalError("out of memory") }
        return memory
    }

    /// GMP's reallocate: the buffer grows in place while it fits, and moves to `malloc`
    /// memory when it does not.
    private static func reallocate(_ pointer: UnsafeMutableRawPointer?, oldSize: Int, newSize: Int) -> UnsafeMutableRawPointer? {
        if let block = blockLending(pointer) {
            if newSize <= capacity { return pointer }
            guard let memory = malloc(newSize) else { fatalError("out of memory") }
            memory.copyMemory(from: pointer!, byteCount: min(oldSize, capacity))
            block.storeBytes(of: State.armed.rawValue, as: Int.self)
            return memory
        }
        guard let memory = realloc(pointer, newSize) else { fatalError("out of memory") }
        return memory
    }

    /// GMP's free: the buffer is handed back, anything else goes to `free`.
    private static func release(_ pointer: UnsafeMutableRawPointer?) {
        if let block = blockLending(pointer) {
            if block.load(as: Int.self) == State.lent.rawValue { block.storeBytes(of: State.armed.rawValue, as: Int.self) }
            return
        }
        free(pointer)
    }
}

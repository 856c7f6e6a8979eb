// Test support shared by the test targets: running the built executables and real peers.
import Glibc
import TockSockets

/// What a child process did.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var output: String
    public var errors: String
    public var timedOut: Bool
}

/// Runs `executable` (a path, or with `searchPath` a name looked up in PATH) with `arguments`
/// for at most `timeout` seconds, collecting its standard output and error. Blocks: call it
/// through `blocking`.
///
/// posix_spawn rather than Foundation's Process: Process.run() enumerates the parent's open
/// descriptors and crashed (SIGSEGV in memcpy under Process.run) while another test was
/// opening thousands of sockets; every descriptor these tests open is close-on-exec, so the
/// child inherits only its pipes.
public func spawn(_ executable: String, _ arguments: [String], searchPath: Bool = false, timeout: Double = 10) -> ProcessResult {
    var outPipe: [Int32] = [0, 0]
    var errPipe: [Int32] = [0, 0]
    guard pipe(&outPipe) == 0 else { return ProcessResult(status: -1, output: "", errors: "pipe: \(errno)", timedOut: false) }
    guard pipe(&errPipe) == 0 else {
        close(outPipe[0]); close(outPipe[1])
        return ProcessResult(status: -1, output: "", errors: "pipe: \(errno)", timedOut: false)
    }
    for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = searchPath
        ? posix_spawnp(&pid, executable, &actions, nil, argv, environ)
        : posix_spawn(&pid, executable, &actions, nil, argv, environ)
    close(outPipe[1])
    close(errPipe[1])
    defer { close(outPipe[0]); close(errPipe[0]) }
    guard rc == 0 else {
        return ProcessResult(status: -1, output: "", errors: "cannot run \(executable): \(String(cString: strerror(rc)))", timedOut: false)
    }
    var out: [UInt8] = []
    var err: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    func drain(_ fd: Int32, into bytes: inout [UInt8]) {
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 0) > 0 else { return }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            bytes += buffer[..<n]
        }
    }
    let deadline = SystemClock.monotonicNanoseconds() + Int64(timeout * 1e9)
    var status: Int32 = 0
    var timedOut = false
    while true {
        drain(outPipe[0], into: &out)
        drain(errPipe[0], into: &err)
        let w = waitpid(pid, &status, WNOHANG)
        if w == pid { break }
        if w < 0, errno != EINTR { break }
        if SystemClock.monotonicNanoseconds() > deadline {
            timedOut = true
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            break
        }
        var pfds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0), pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        _ = poll(&pfds, 2, 10)
    }
    drain(outPipe[0], into: &out)
    drain(errPipe[0], into: &err)
    // The exit status if the child exited, else 128 + the signal that ended it.
    let exitStatus = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return ProcessResult(status: exitStatus, output: String(decoding: out, as: UTF8.self), errors: String(decoding: err, as: UTF8.self), timedOut: timedOut)
}

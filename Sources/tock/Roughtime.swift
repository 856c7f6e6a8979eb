import ArgumentParser
import Glibc
import TockCrypto
import TockProtocol

/// `tock roughtime`: Roughtime key management.
struct Roughtime: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roughtime (RFC 10049) keys.",
        subcommands: [Keygen.self]
    )

    /// `tock roughtime keygen FILE`.
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new long-term Ed25519 seed for tockd --roughtime-key and print its public key.",
            discussion: """
                FILE gets the 32-byte seed as 64 hex digits and a newline, mode 600; an existing \
                FILE is never overwritten. Prints the public key in base64 and hex, and a server \
                list entry (RFC 10049 §8.3) to give clients.
                """
        )

        @Argument(help: "The seed file to create.")
        var file: String

        @Option(help: "The name for the server-list entry.")
        var name: String = "tockd"

        @Option(help: "The address for the server-list entry, HOST:PORT.")
        var address: String = "127.0.0.1:2002"

        func run() throws {
            let signer = RoughtimeEd25519Signer()
            let fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else {
                FileHandleStandardError.write("tock: cannot create \(file): \(String(cString: strerror(errno)))\(errno == EEXIST ? " (it exists; keygen never overwrites a key)" : "")\n")
                throw ExitCode(1)
            }
            var text = Array((RoughtimeKeyText.hex(signer.seed) + "\n").utf8)
            let written = text.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
            fchmod(fd, 0o600)
            close(fd)
            guard written == text.count else {
                FileHandleStandardError.write("tock: cannot write \(file)\n")
                throw ExitCode(1)
            }
            let base64 = RoughtimeKeyText.base64(signer.publicKey)
            print("public key (base64)  \(base64)")
            print("public key (hex)     \(RoughtimeKeyText.hex(signer.publicKey))")
            print("server list entry:")
            print("""
                {
                  "name": "\(name)",
                  "version": "IETF-Roughtime",
                  "publicKeyType": "ed25519",
                  "publicKey": "\(base64)",
                  "addresses": [{"protocol": "udp", "address": "\(address)"}]
                }
                """)
        }
    }
}

import Foundation
import Testing
import TockTestSupport

@testable import TockCrypto

/// What Tests/TockCryptoTests/exporter_vectors.py prints: OpenSSL's key-log line and exports
/// for real TLS 1.3 handshakes.
struct ExporterVectors: Decodable {
    struct Handshake: Decodable {
        let cipher: String
        let keylog: String
        let exports: [Export]
    }
    struct Export: Decodable {
        let label: String
        let context: String
        let length: Int
        let key: String
    }
    let handshakes: [Handshake]

    init(json: String) throws {
        self = try JSONDecoder().decode(Self.self, from: Data(json.utf8))
    }
}

/// The output of one run of Tests/TockCryptoTests/exporter_vectors.py (pyOpenSSL 26.4.0 over
/// the OpenSSL 4.0.3 in the cryptography 50.0.2 wheel): handshakes with TLS_AES_128_GCM_SHA256 and
/// TLS_AES_256_GCM_SHA384, the client's `EXPORTER_SECRET` key-log line, and what OpenSSL's
/// `SSL_export_keying_material` gave for the NTS keys of AEAD 15 and 17 (RFC 8915 §5.1) and for
/// two other labels and contexts. Re-run the script and paste its output here to renew them.
let recordedExporterVectors = #"""
{
 "handshakes": [
  {
   "cipher": "TLS_AES_128_GCM_SHA256",
   "keylog": "EXPORTER_SECRET 1f794e13a4ec441b4cd8afa05d2566f2545669cf5bc3fc958d98e3b2989389a5 c8e2584a0a0837aac0e0ee94d52e92bb77bcd8a660470b111644fbe8f836d910",
   "exports": [
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000000f00",
     "length": 32,
     "key": "432bdc551b01ab8201911c0b9cb799afb43559e02982acd9e5689c975a2ce575"
    },
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000000f01",
     "length": 32,
     "key": "6ba3c7dc9b1932280af1fbb240a622d085a9d9e09810e0081d8e3ac097bdf2ef"
    },
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000001100",
     "length": 64,
     "key": "4b159fb790ccbe980bb93c275004c662901ac6d8fbb546fde03b312d05662fc87bed49360cd49691107de5b719e0703f30b6a15c416364dbf365223bb9cb067f"
    },
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000001101",
     "length": 64,
     "key": "65f07ea50ce176f8663ddf274147112249d2285dfc53502b93fa9d37c6c16ea291d02d98ae075af47c6ae55628d53f29bc4b117dd439a4c9b9057a5d1bc8d5b7"
    },
    {
     "label": "EXPORTER-tock-test",
     "context": "",
     "length": 16,
     "key": "7e3e510acd8aa40d758863e085dbe715"
    },
    {
     "label": "EXPORTER-tock-test",
     "context": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627",
     "length": 100,
     "key": "6a4ca779e442990e1f64cf4adb37001962c99ba58027b74b71d93ebd55889d1bddbc524fee6cb376d7bf696e32b4fcac9524d8ac5dc6c575ada2e6b31f3b8e30cd6f9e6bf64b6b1282a3dfde701f9c0ccec893ae0eb3f23e3b9ad8d1307c8d993eed1e88"
    }
   ]
  },
  {
   "cipher": "TLS_AES_256_GCM_SHA384",
   "keylog": "EXPORTER_SECRET 3dd35710eaca84ffd3d7529a178a4d4bb41af5b393e969887e319988b76d3c84 71123155dd186f333d939890eec20024801f85227e28dc40e19f9ba69f01f2c68dbb2e1f8143434038f0330a57d9753d",
   "exports": [
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000000f00",
     "length": 32,
     "key": "c7c79d0f6caa7f4d09fb61faa18bcbf9eaa1b4d0ca582016e10ac0a88f7dac92"
    },
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000000f01",
     "length": 32,
     "key": "c5f7a836de05001693054afd98b6c9da8add0aaca4639b032adcdd71286cd627"
    },
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000001100",
     "length": 64,
     "key": "7086e410031700814ab0d749a759ef6118a49c5d689698f1bef97227e0c6f35250507effd6d552d31d0f486ad3b1fa71e9b27269e5bec9a4d9e569b2d379d72c"
    },
    {
     "label": "EXPORTER-network-time-security",
     "context": "0000001101",
     "length": 64,
     "key": "8198965f984369f0eb988fe5b88e964adb33854603eea06f52540ce252a37a1d685a01d90a76fd9679c53bd90cff5d50004dca160d18d8574db6b51cec3da4d8"
    },
    {
     "label": "EXPORTER-tock-test",
     "context": "",
     "length": 16,
     "key": "6068d5c6fe883e5430829378d68f7559"
    },
    {
     "label": "EXPORTER-tock-test",
     "context": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627",
     "length": 100,
     "key": "63a6bf6841245558f4dc4c2365d9f663cd8b24bbe7c37f81432fa4504414ba47ece1c267da57f0302ef9b2dffe5b208a8859305fcabc5a998cef2b25240e130a3e8afdb4cd3491e0a511e7a68dc9336e15131aeebf52526f6dc3af4170a17beafc9f4207"
    }
   ]
  }
 ]
}
"""#

/// Checks every export of every handshake in `vectors` against TLSExporter.
func checkExporter(against vectors: ExporterVectors) {
    #expect(vectors.handshakes.count == 2)
    for handshake in vectors.handshakes {
        guard let exporter = TLSExporter(keyLogLine: handshake.keylog) else {
            Issue.record("\(handshake.cipher): key-log line not read: \(handshake.keylog)")
            continue
        }
        #expect(exporter.hash == (handshake.cipher.hasSuffix("SHA384") ? .sha384 : .sha256), "\(handshake.cipher)")
        for export in handshake.exports {
            let key = exporter.export(label: export.label, context: hex(export.context), length: export.length)
            #expect(hexString(key) == export.key, "\(handshake.cipher) \(export.label) \(export.context) \(export.length)")
        }
        // ntsKeys builds the RFC 8915 §5.1 contexts itself; they must give the same keys.
        let nts = handshake.exports.filter { $0.label == TLSExporter.ntsLabel }
        for aead: UInt16 in [15, 17] {
            let keys = exporter.ntsKeys(aead: aead)
            let c2s = nts.first { $0.context == hexString([0, 0, 0, UInt8(aead), 0]) }
            let s2c = nts.first { $0.context == hexString([0, 0, 0, UInt8(aead), 1]) }
            #expect(hexString(keys.c2s) == c2s?.key, "\(handshake.cipher) AEAD \(aead) C2S")
            #expect(hexString(keys.s2c) == s2c?.key, "\(handshake.cipher) AEAD \(aead) S2C")
        }
    }
}

/// The Python that has pyOpenSSL, found once: `python3` on PATH.
enum PyOpenSSL {
    /// Whether `python3 -c "import OpenSSL, cryptography"` succeeds.
    static let available: Bool = {
        guard let result = try? run(["-c", "import OpenSSL, cryptography"]) else { return false }
        return result.status == 0
    }()

    /// Runs python3 with `arguments`; returns its exit status and standard output. Through
    /// TockTestSupport's posix_spawn, not Foundation's Process, whose run() crashed here (SIGSEGV
    /// in memcpy) while other tests ran in parallel.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = spawn("python3", arguments, searchPath: true, timeout: 60)
        return (result.timedOut ? -1 : result.status, result.output)
    }
}

@Suite struct TLSExporterTests {
    @Test func recordedOpenSSLExports() throws {
        checkExporter(against: try ExporterVectors(json: recordedExporterVectors))
    }

    /// A fresh handshake each run, so the check does not rest on one recorded secret.
    @Test(.enabled(if: PyOpenSSL.available, "python3 with pyOpenSSL is not installed (scripts/install-test-deps installs it)"))
    func liveOpenSSLExports() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("exporter_vectors.py")
        let result = try PyOpenSSL.run([script.path])
        try #require(result.status == 0, "exporter_vectors.py failed")
        checkExporter(against: try ExporterVectors(json: result.output))
    }

    @Test func keyLogLineParsing() throws {
        let random = String(repeating: "ab", count: 32)
        let secret = String(repeating: "0F", count: 32)
        let exporter = try #require(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random) \(secret)\n"))
        #expect(exporter.clientRandom == [UInt8](repeating: 0xAB, count: 32))
        #expect(exporter.exporterMasterSecret == [UInt8](repeating: 0x0F, count: 32))
        #expect(exporter.hash == .sha256)
        #expect(!"\(exporter)".lowercased().contains("0f0f0f0f"), "the secret must not be printed")
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random) \(String(repeating: "00", count: 48))")?.hash == .sha384)

        // Other labels, comments and malformed lines are not exporter secrets.
        #expect(TLSExporter(keyLogLine: "CLIENT_HANDSHAKE_TRAFFIC_SECRET \(random) \(secret)") == nil)
        #expect(TLSExporter(keyLogLine: "SERVER_TRAFFIC_SECRET_0 \(random) \(secret)") == nil)
        #expect(TLSExporter(keyLogLine: "# EXPORTER_SECRET \(random) \(secret)") == nil)
        #expect(TLSExporter(keyLogLine: "") == nil)
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random)") == nil)
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random) \(secret) extra") == nil)
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET abcd \(secret)") == nil)
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random) \(secret.dropLast())") == nil)
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random) \(String(repeating: "zz", count: 32))") == nil)
        #expect(TLSExporter(keyLogLine: "EXPORTER_SECRET \(random) \(String(repeating: "00", count: 40))") == nil)
    }

    @Test func secretLengthChoosesTheHash() {
        #expect(TLSExporter(exporterMasterSecret: [UInt8](repeating: 1, count: 32))?.hash == .sha256)
        #expect(TLSExporter(exporterMasterSecret: [UInt8](repeating: 1, count: 48))?.hash == .sha384)
        #expect(TLSExporter(exporterMasterSecret: [UInt8](repeating: 1, count: 64)) == nil)
        #expect(TLSExporter(exporterMasterSecret: []) == nil)
    }

    /// Keys have the AEAD's key length, and the two directions differ.
    @Test func ntsKeyLengths() throws {
        let exporter = try #require(TLSExporter(exporterMasterSecret: [UInt8](repeating: 7, count: 32)))
        let k15 = exporter.ntsKeys(aead: 15)
        #expect(k15.c2s.count == 32 && k15.s2c.count == 32 && k15.c2s != k15.s2c)
        let k17 = exporter.ntsKeys(aead: 17)
        #expect(k17.c2s.count == 64 && k17.s2c.count == 64 && k17.c2s != k17.s2c)
        #expect(Array(k17.c2s.prefix(32)) != k15.c2s)
    }
}

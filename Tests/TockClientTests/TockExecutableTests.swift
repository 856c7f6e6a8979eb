import Foundation
import Glibc
import Testing
import TockProtocol
import TockSockets

/// `tock query`'s exit statuses against fake servers.
@Suite("The tock executable")
struct TockExecutableTests {
    /// The built `tock` next to the test binary; the test fails if it is missing.
    func tock() throws -> URL {
        let url = buildProductsDirectory().appendingPathComponent("tock")
        try #require(
            FileManager.default.isExecutableFile(atPath: url.path),
            "the tock executable is not at \(url.path) (next to the test binary \(CommandLine.arguments[0])): build the package's products first (swift build)"
        )
        return url
    }

    @Test("Silent server: exit 2 (timeout)")
    func timeout() async throws {
        let tock = try tock()
        await FakeUDPServer.with({ _, _ in nil }) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)", "--timeout", "0.2"])
            #expect(r.status == 2, "exit \(r.status): \(r.errors)")
            #expect(!r.timedOut)
            #expect(r.errors.contains("no reply"), "\(r.errors)")
        }
    }

    @Test("Kiss-o'-death: exit 3")
    func kissOfDeath() async throws {
        let tock = try tock()
        await FakeUDPServer.with(Replies.kissOfDeath("RATE")) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)", "--timeout", "1", "-n", "3", "--interval", "0"])
            #expect(r.status == 3, "exit \(r.status): \(r.errors)")
            #expect(server.requests.count == 1, "a kiss-o'-death must stop the query")
            #expect(r.errors.contains("RATE"), "\(r.errors)")
        }
    }

    @Test("Kiss-o'-death with --json: exit 3 and an error object with the kiss code")
    func kissOfDeathJSON() async throws {
        let tock = try tock()
        await FakeUDPServer.with(Replies.kissOfDeath("DENY")) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)", "--timeout", "1", "--json"])
            #expect(r.status == 3, "exit \(r.status): \(r.errors)")
            let object = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(r.output.debugDescription)")
            #expect(object?["kiss_code"] as? String == "DENY")
            #expect(object?["synchronized"] as? Bool == false)
        }
    }

    @Test("Leap indicator 3: exit 4")
    func unsynchronized() async throws {
        let tock = try tock()
        await FakeUDPServer.with(Replies.unsynchronized()) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)", "--timeout", "1"])
            #expect(r.status == 4, "exit \(r.status): \(r.errors)")
        }
    }

    @Test("Bogus origin: exit 5")
    func bogusOrigin() async throws {
        let tock = try tock()
        await FakeUDPServer.with(Replies.wrongOrigin()) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)", "--timeout", "0.2"])
            #expect(r.status == 5, "exit \(r.status): \(r.errors)")
        }
    }

    @Test("Unresolvable name: exit 6")
    func resolution() async throws {
        let r = await run(try tock(), ["query", "nonexistent.invalid", "--timeout", "0.5"])
        #expect(r.status == 6, "exit \(r.status): \(r.errors)")
        #expect(r.errors.contains("nonexistent.invalid"))
    }

    @Test("Connection refused: exit 7")
    func refused() async throws {
        let r = await run(try tock(), ["query", "127.0.0.1:\(unusedUDPPort())", "--timeout", "1"])
        #expect(r.status == 7, "exit \(r.status): \(r.errors)")
    }

    @Test("Usage errors: exit 64")
    func usage() async throws {
        let tock = try tock()
        for arguments in [["query", "127.0.0.1", "--ntp-version", "5"], ["query", "127.0.0.1", "--tcp"], ["query", "[::1"], ["query", "127.0.0.1", "-n", "0"]] {
            let r = await run(tock, arguments)
            #expect(r.status == 64, "\(arguments): exit \(r.status): \(r.errors)")
        }
    }

    @Test("A good answer: exit 0; --json prints offset, delay, stratum and leap")
    func json() async throws {
        let tock = try tock()
        await FakeUDPServer.with(Replies.correct()) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)", "--json", "-n", "2", "--interval", "0"])
            #expect(r.status == 0, "exit \(r.status): \(r.errors)")
            let parsed = try? JSONSerialization.jsonObject(with: Data(r.output.utf8))
            guard let object = parsed as? [String: Any] else {
                Issue.record("not a JSON object: \(r.output.debugDescription)")
                return
            }
            for key in ["offset", "delay", "stratum", "leap"] {
                #expect(object[key] != nil, "missing \(key) in \(r.output)")
            }
            // Client and server share one clock, so the true offset is 0, and RFC 5905's bound
            // says the measured one is within half the delay (plus the precisions): the error
            // tock reports. A busy machine can stretch the delay, never break the bound.
            let offset = (object["offset"] as? NSNumber)?.doubleValue
            let error = (object["error"] as? NSNumber)?.doubleValue
            #expect(offset != nil && error != nil && abs(offset!) <= error!, "offset \(String(describing: offset)) outside ± \(String(describing: error))")
            #expect((object["delay"] as? NSNumber).map { $0.doubleValue >= 0 } == true)
            #expect((object["stratum"] as? NSNumber)?.intValue == 2)
            #expect((object["leap"] as? NSNumber)?.intValue == 0)
            #expect(object["synchronized"] as? Bool == true)
            #expect((object["samples"] as? NSNumber)?.intValue == 2)
            #expect(object["address"] as? String == "127.0.0.1:\(server.address.port)")
        }
    }

    @Test("A good answer as text: exit 0")
    func text() async throws {
        let tock = try tock()
        await FakeUDPServer.with(Replies.correct()) { server in
            let r = await run(tock, ["query", "127.0.0.1:\(server.address.port)"])
            #expect(r.status == 0, "exit \(r.status): \(r.errors)")
            #expect(r.output.contains("stratum       2"), "\(r.output)")
            #expect(r.output.contains("offset        "), "\(r.output)")
        }
    }
}

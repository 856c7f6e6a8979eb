import ArgumentParser
import TockClient

@main
struct Tock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock",
        abstract: "Query NTP, Daytime, Time and Roughtime servers, and load-test them.",
        subcommands: [Query.self, Bench.self, Status.self, Roughtime.self],
        defaultSubcommand: nil
    )
}

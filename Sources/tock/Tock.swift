import ArgumentParser
import TockClient

@main
struct Tock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock",
        abstract: "Query NTP, Daytime and Time servers, and load-test them.",
        subcommands: [Query.self, Bench.self, Status.self],
        defaultSubcommand: nil
    )
}

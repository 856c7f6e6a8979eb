import ArgumentParser
import TockClient

@main
struct Tock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock",
        abstract: "Query NTP, Daytime and Time servers.",
        subcommands: [Query.self],
        defaultSubcommand: nil
    )
}

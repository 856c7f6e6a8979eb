import Glibc

/// A failed system call: which one, on what, and errno.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `bind`.
    public var operation: String
    /// errno.
    public var errorNumber: Int32

    public init(_ operation: String, errorNumber: Int32 = errno) {
        self.operation = operation
        self.errorNumber = errorNumber
    }

    /// strerror(errno).
    public var reason: String { SystemError.describe(errorNumber) }

    public var description: String { "\(operation): \(reason)" }

    /// The text of an errno value.
    public static func describe(_ errorNumber: Int32) -> String {
        String(cString: strerror(errorNumber))
    }
}

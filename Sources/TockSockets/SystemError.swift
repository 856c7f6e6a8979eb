import Glibc

/// A failed system call: which one, on what, and errno.
package struct SystemError: Error, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `bind`.
    package var operation: String
    /// errno.
    package var errorNumber: Int32

    package init(_ operation: String, errorNumber: Int32 = errno) {
        self.operation = operation
        self.errorNumber = errorNumber
    }

    /// strerror(errno).
    package var reason: String { SystemError.describe(errorNumber) }

    package var description: String { "\(operation): \(reason)" }

    /// The text of an errno value.
    package static func describe(_ errorNumber: Int32) -> String {
        String(cString: strerror(errorNumber))
    }
}

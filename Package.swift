// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "tock",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tockd", targets: ["tockd"]),
        .executable(name: "tock", targets: ["tock"]),
        .library(name: "TockProtocol", targets: ["TockProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .target(
            name: "TockProtocol",
            dependencies: []
        ),
        .target(name: "CTockShims"),
        .target(
            name: "TockSockets",
            dependencies: ["CTockShims", "TockProtocol"]
        ),
        .target(
            name: "TockServer",
            dependencies: [
                "TockProtocol",
                "TockSockets",
                "TockCrypto",
                "CTockShims",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "TockConfig",
            dependencies: [
                "CTockShims",
                "TockCrypto",
                "TockServer",
                "TockProtocol",
                "TockSockets",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "TockClient",
            dependencies: [
                "TockProtocol",
                "TockSockets",
                "CTockShims",
                "TockCrypto",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "tockd",
            dependencies: [
                "TockServer",
                "TockConfig",
                "TockProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "tock",
            dependencies: [
                "TockClient",
                "TockCrypto",
                "TockProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .systemLibrary(
            name: "CNettle",
            path: "Sources/CNettle",
            pkgConfig: "nettle",
            providers: [.apt(["nettle-dev"])]
        ),
        .target(
            name: "TockCrypto",
            dependencies: [
                "CNettle",
                "TockProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/TockCrypto"
        ),
        .target(name: "TockTestSupport", dependencies: ["TockSockets"], path: "Tests/TockTestSupport"),
        .testTarget(name: "TockProtocolTests", dependencies: ["TockProtocol"]),
        .testTarget(
            name: "TockServerTests",
            dependencies: [
                "TockServer", "TockClient", "TockProtocol", "TockTestSupport", "TockConfig", "TockCrypto",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "TockConfigTests", dependencies: [
            "TockConfig", "TockServer", "TockProtocol", "TockSockets",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "TockClientTests", dependencies: ["TockClient", "TockCrypto", "TockProtocol", "TockSockets", "TockTestSupport"]),
        .testTarget(name: "RoughtimeTests", dependencies: ["TockProtocol", "TockCrypto"], exclude: ["Vectors"]),
        .testTarget(
            name: "TockCryptoTests",
            dependencies: ["TockCrypto", "TockTestSupport"],
            exclude: ["make_vectors.py", "exporter_vectors.py"]
        ),
    ],
    swiftLanguageModes: [.v6]
)

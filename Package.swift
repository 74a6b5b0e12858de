// swift-tools-version:6.0
//
// LabGallery runs on Linux only: the C shim is built on epoll and eventfd, so no Apple platform
// is declared. Benchmarks are a package of their own (Benchmarks/Package.swift), so building the
// product never builds them.
//
// Every target, bottom to top (a layer depends only on the ones above it in this list):
//   CNGHTTP2, CProtobufC      system libraries (pkg-config; Debian libnghttp2-dev, libprotobuf-c-dev)
//   CZlib                     system zlib (Debian zlib1g-dev): gzip and deflate message compression
//   CH2Shim                   C: sockets, epoll loops, nghttp2 sessions, gRPC framing, flow control
//   CLinuxFiles               C: copy_file_range, sync_file_range (GNU calls Glibc's module hides)
//   GeneratedCProtos          protoc-c output for Protos/ (generated, committed)
//   Blocking                  threads for blocking work (never Swift's cooperative pool)
//   BuildInfo                 the version and the git commit of the build (`--version`; the
//                             commit written at build time by the plugin BuildCommitPlugin)
//   H2RPC                     RPC core, no C: status, metadata, deadlines, router, server and client
//                             calls, interceptors, the transport protocols and their part enums
//   H2RPCNGHTTP2Transport     the HTTP/2 transport on CH2Shim (the only Swift code that knows gRPC framing
//                             and compression)
//   H2RPCInProcessTransport   client and server in one process, no C (tests, embedding)
//   H2RPCProtobuf             bridge from generated value types to protobuf-c encode/decode
//   GeneratedProtos           Swift messages, service protocols, client stubs (generated, committed)
//   H2RPCHealth               grpc.health.v1.Health
//   H2RPCReflection           grpc.reflection.v1 (and v1alpha) ServerReflection, from the embedded descriptors
//   Interop                   grpc's interop TestService and test cases
//   InteropServer, InteropClient   executables `interop-server`, `interop-client`
//   LabGalleryCore            the domain: use cases, storage, blobs, replication, billing (no RPC)
//   CLibPQ                    system libpq (pkg-config; Debian libpq-dev), the PostgreSQL client
//   LabGalleryPostgres        Storage on PostgreSQL: libpq connections, a bounded pool, migrations
//   LabGalleryServer          API <-> domain mapping, auth, wiring of a transport
//   LabGalleryServerApp       executable `labgallery-server` (serve, token, fsck)
//   LabGalleryClient          the typed Swift client library
//   LabGalleryCLIKit          the operator CLI as a library: commands, parsing, output (its JSON shape), prompts
//   LabGalleryCLI             executable `labgallery` (Clients/labgallery): its entry point alone
// Tests:
//   TestSupport               shared by every test target: bytes, SHA-256, eventually, the bearer
//                             interceptor, a live gallery server
//   H2RPCTests, LabGalleryCoreTests, LabGalleryServerTests, LabGalleryClientTests, LabGalleryCLITests,
//   LabGalleryServerAppTests (the server executable's log handlers)
import PackageDescription

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6)
]

let package = Package(
    name: "LabGallery",
    products: [
        .library(name: "H2RPC", targets: ["H2RPC", "H2RPCProtobuf"]),
        .library(name: "H2RPCNGHTTP2Transport", targets: ["H2RPCNGHTTP2Transport"]),
        .library(name: "H2RPCInProcessTransport", targets: ["H2RPCInProcessTransport"]),
        .library(name: "LabGalleryProtos", targets: ["GeneratedProtos"]),
        .executable(name: "interop-server", targets: ["InteropServer"]),
        .executable(name: "interop-client", targets: ["InteropClient"]),
        .executable(name: "labgallery-server", targets: ["LabGalleryServerApp"]),
        .library(name: "LabGalleryClient", targets: ["LabGalleryClient"]),
        .executable(name: "labgallery", targets: ["LabGalleryCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // MARK: C layer
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        .target(
            name: "CH2Shim",
            dependencies: ["CNGHTTP2"],
            // TLS (h2_tls.c): Debian's libssl-dev.
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        .target(
            name: "CLinuxFiles"
        ),
        .target(
            name: "GeneratedCProtos",
            dependencies: ["CProtobufC"]
        ),

        // MARK: Threads for blocking work (database, files, fsync, process waits), shared by the
        // domain core, the client library and the tests: never Swift's cooperative pool.
        .target(
            name: "Blocking",
            swiftSettings: strictSwift
        ),

        // MARK: `--version`: the version, and the commit `git rev-parse` gives at build time.
        .target(
            name: "BuildInfo",
            swiftSettings: strictSwift,
            plugins: ["BuildCommitPlugin"]
        ),
        .plugin(
            name: "BuildCommitPlugin",
            capability: .buildTool()
        ),

        // MARK: RPC core
        .target(
            name: "H2RPC",
            swiftSettings: strictSwift
        ),
        .target(
            name: "H2RPCNGHTTP2Transport",
            dependencies: ["H2RPC", "CH2Shim", "CZlib", "Blocking"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "H2RPCInProcessTransport",
            dependencies: ["H2RPC"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "H2RPCProtobuf",
            dependencies: ["H2RPC", "CProtobufC"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "GeneratedProtos",
            dependencies: ["H2RPC", "H2RPCProtobuf", "GeneratedCProtos", "CProtobufC"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "H2RPCHealth",
            dependencies: ["H2RPC", "GeneratedProtos"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "H2RPCReflection",
            dependencies: ["H2RPC", "GeneratedProtos"],
            swiftSettings: strictSwift
        ),

        // MARK: gRPC interop
        .target(
            name: "Interop",
            dependencies: ["H2RPC", "GeneratedProtos"],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "InteropServer",
            dependencies: [
                "Interop", "H2RPCHealth", "H2RPCReflection", "H2RPCNGHTTP2Transport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "InteropClient",
            dependencies: [
                "Interop", "H2RPCNGHTTP2Transport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift
        ),

        // MARK: Domain
        .target(
            name: "LabGalleryCore",
            dependencies: [
                "Blocking",
                "CLinuxFiles",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSwift
        ),

        // MARK: PostgreSQL storage (libpq kept out of the core)
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .target(
            name: "LabGalleryPostgres",
            dependencies: [
                "LabGalleryCore", "Blocking", "CLibPQ", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),

        .target(
            name: "LabGalleryServer",
            dependencies: [
                "Blocking",
                "LabGalleryCore", "LabGalleryPostgres", "H2RPC", "H2RPCNGHTTP2Transport", "H2RPCHealth",
                "H2RPCReflection",
                "GeneratedProtos",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "LabGalleryServerApp",
            dependencies: [
                "Blocking", "BuildInfo",
                "LabGalleryServer", "LabGalleryPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),

        // MARK: Clients
        .target(
            name: "LabGalleryClient",
            dependencies: ["H2RPC", "H2RPCNGHTTP2Transport", "GeneratedProtos", "Blocking"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "LabGalleryCLIKit",
            dependencies: [
                "LabGalleryClient", "Blocking", "BuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Clients/LabGalleryCLIKit",
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "LabGalleryCLI",
            dependencies: ["LabGalleryCLIKit"],
            path: "Clients/labgallery",
            swiftSettings: strictSwift
        ),

        // MARK: Tests
        .target(
            name: "TestSupport",
            dependencies: [
                "Blocking", "H2RPC", "LabGalleryCore", "LabGalleryServer", "LabGalleryClient", "LabGalleryPostgres",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "H2RPCTests",
            dependencies: [
                "TestSupport", "H2RPC", "H2RPCNGHTTP2Transport", "H2RPCInProcessTransport", "H2RPCHealth",
                "GeneratedProtos", "Interop", "CH2Shim",
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LabGalleryServerTests",
            dependencies: [
                "TestSupport", "Blocking", "LabGalleryServer", "H2RPC", "H2RPCNGHTTP2Transport",
                "H2RPCInProcessTransport", "GeneratedProtos", "LabGalleryCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LabGalleryClientTests",
            dependencies: [
                "TestSupport", "Blocking", "LabGalleryClient", "LabGalleryServer", "LabGalleryCore", "H2RPC",
                "H2RPCNGHTTP2Transport", "GeneratedProtos",
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LabGalleryCLITests",
            dependencies: [
                "TestSupport", "Blocking", "BuildInfo", "LabGalleryCLIKit", "LabGalleryClient", "LabGalleryServer",
                "LabGalleryCore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LabGalleryServerAppTests",
            dependencies: ["LabGalleryServerApp", "LabGalleryCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LabGalleryCoreTests",
            dependencies: [
                "TestSupport", "Blocking", "LabGalleryCore", "LabGalleryPostgres",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strictSwift
        ),
    ]
)

// swift-tools-version:6.0
//
// The benchmarks, a package of their own so that building the product never builds them.
// They depend on LabGallery (the package one folder up) by path:
//   H2RPCBench        executable `h2rpc-bench`: unary client load, server streaming and
//                     cancellation (run.sh)
//   LabGalleryBench   executable `labgallery-bench`: uploads, replication with watchers,
//                     CreateLab / SaveLabTemplateImage on big images (replication.sh)
//   GRPCSwift2Bench   executable `grpc-swift2-bench`: grpc-swift-2's server and client (the
//                     Swift user's alternative) for the side-by-side rows of run.sh; grpc-swift-2
//                     is a dependency of this package only, never of the product
//   PGDriverBench     executable `pg-driver-bench`: the gallery's attach transaction on
//                     PostgreSQL through libpq (CLibPQBench) or postgres-nio, for the driver choice
//                     of issue 12 (pg_drivers.sh); postgres-nio is a dependency of this
//                     package only, never of the product
// Build: swift build -c release --package-path Benchmarks (run.sh and replication.sh do).
import PackageDescription

let package = Package(
    name: "LabGalleryBenchmarks",
    products: [
        .executable(name: "h2rpc-bench", targets: ["H2RPCBench"]),
        .executable(name: "labgallery-bench", targets: ["LabGalleryBench"]),
        .executable(name: "grpc-swift2-bench", targets: ["GRPCSwift2Bench"]),
        .executable(name: "pg-driver-bench", targets: ["PGDriverBench"]),
    ],
    dependencies: [
        .package(name: "LabGallery", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // The closed-loop unary load and its statistics, shared by every client benchmark.
        .target(name: "UnaryLoad", swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(
            name: "H2RPCBench",
            dependencies: [
                .product(name: "H2RPC", package: "LabGallery"),
                .product(name: "H2RPCNGHTTP2Transport", package: "LabGallery"),
                .product(name: "LabGalleryProtos", package: "LabGallery"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "UnaryLoad",
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "LabGalleryBench",
            dependencies: [
                .product(name: "H2RPC", package: "LabGallery"),
                .product(name: "H2RPCNGHTTP2Transport", package: "LabGallery"),
                .product(name: "LabGalleryProtos", package: "LabGallery"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "GRPCSwift2Bench",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "UnaryLoad",
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // libpq through pkg-config (Debian's libpq-dev), this package's own module map (named apart
        // from any libpq module of the product, which this package depends on).
        .systemLibrary(
            name: "CLibPQBench", path: "Sources/CLibPQBench", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]
        ),
        .executableTarget(
            name: "PGDriverBench",
            dependencies: [
                "CLibPQBench",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)

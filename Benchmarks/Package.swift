// swift-tools-version:6.0
//
// The benchmarks, a package of their own so that building the product never builds them.
// They depend on LabGallery (the package one folder up) by path:
//   H2RPCBench        executable `h2rpc-bench`: server streaming and cancellation (run.sh)
//   LabGalleryBench   executable `labgallery-bench`: uploads, replication with watchers,
//                     CreateLab / SaveLabTemplateImage on big images (replication.sh)
// Build: swift build -c release --package-path Benchmarks (run.sh and replication.sh do).
import PackageDescription

let package = Package(
    name: "LabGalleryBenchmarks",
    products: [
        .executable(name: "h2rpc-bench", targets: ["H2RPCBench"]),
        .executable(name: "labgallery-bench", targets: ["LabGalleryBench"]),
    ],
    dependencies: [
        .package(name: "LabGallery", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "H2RPCBench",
            dependencies: [
                .product(name: "H2RPC", package: "LabGallery"),
                .product(name: "H2RPCNGHTTP2Transport", package: "LabGallery"),
                .product(name: "LabGalleryProtos", package: "LabGallery"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
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
    ]
)

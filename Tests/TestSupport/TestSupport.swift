import Blocking
import Crypto
import Foundation
import Testing

// Helpers every Swift test target shares. None of them blocks Swift's cooperative pool: the
// servers under test share it with the tests.

/// Runs blocking test work (database files, directory scans, process waits) on `BlockingExecutor`.
public func blocking<T>(_ body: () throws -> T) async throws -> T {
    try await BlockingExecutor.shared.run(body)
}

/// Waits until `condition` holds, checking every few milliseconds: the one way a test waits
/// for an event it cannot be told about. The time-out only catches a hang (the event never
/// comes); it is not a performance bound.
public func eventually(
    _ what: String, timeout: Duration = .seconds(120), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let end = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < end else {
            Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// SHA-256 of `bytes`, lowercase hex (swift-crypto), computed on a thread made for blocking work.
public func sha256Hex(_ bytes: [UInt8]) async throws -> String {
    try await blocking { hex(SHA256.hash(data: bytes)) }
}

/// SHA-256 of a file's bytes, lowercase hex (swift-crypto), read and hashed in 1 MiB chunks on a
/// thread made for blocking work.
public func sha256Hex(of url: URL) async throws -> String {
    try await blocking {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hex(hasher.finalize())
    }
}

private func hex(_ digest: SHA256.Digest) -> String {
    digest.map { String(format: "%02x", $0) }.joined()
}

/// Waits for a child process to end on a thread made for blocking.
public func waitUntilExit(_ process: Process) async {
    _ = try? await BlockingExecutor.shared.run { process.waitUntilExit() }
}

/// `count` pseudo-random bytes: one 64 KiB block, repeated with each copy stamped with its
/// index, so no two blocks (and no two seeds) are alike and identical bytes are never
/// deduplicated by accident. Built with block copies: a per-byte loop over megabytes takes
/// seconds in a debug build.
public func testBytes(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
    let blockSize = 64 << 10
    var state = seed
    var block = [UInt8](repeating: 0, count: min(count, blockSize))
    for i in block.indices {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        block[i] = UInt8(truncatingIfNeeded: state >> 33)
    }
    var out: [UInt8] = []
    out.reserveCapacity(count)
    var index: UInt64 = 0
    while out.count < count {
        let start = out.count
        out.append(contentsOf: block[0..<min(blockSize, count - start)])
        withUnsafeBytes(of: index.littleEndian) { stamp in
            for (k, byte) in stamp.enumerated() where start + k < out.count { out[start + k] ^= byte }
        }
        index += 1
    }
    return out
}

/// `count` bytes where byte k is `UInt8(truncatingIfNeeded: k * multiplier + offset)`: one
/// 256-byte period repeated with block copies.
public func pattern(_ count: Int, multiplier: Int, offset: Int) -> [UInt8] {
    let period = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* multiplier &+ offset) }
    var out: [UInt8] = []
    out.reserveCapacity(count)
    while out.count < count { out.append(contentsOf: period[0..<min(256, count - out.count)]) }
    return out
}

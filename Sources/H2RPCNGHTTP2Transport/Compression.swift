import CZlib
import H2RPC
import Synchronization

/// The algorithms this transport compresses with, as `grpc-accept-encoding` lists them (the
/// response header blocks carry the same value, see `HeaderBlock.swift`).
let acceptEncodingValue = "identity,deflate,gzip"

/// The algorithms named in a `grpc-accept-encoding` value (unknown names skipped).
func parseAcceptEncoding(_ value: UnsafeBufferPointer<UInt8>) -> [CompressionAlgorithm] {
    var result: [CompressionAlgorithm] = []
    for name in value.split(separator: UInt8(ascii: ",")) {
        let trimmed = name.drop { $0 == UInt8(ascii: " ") }.reversed().drop { $0 == UInt8(ascii: " ") }.reversed()
        if let algorithm = CompressionAlgorithm(name: String(decoding: trimmed, as: UTF8.self)) {
            result.append(algorithm)
        }
    }
    return result
}

/// Per-message compression with zlib. Messages are compressed on the sending task (the handler's
/// or the client caller's) and inflated on the reading task (see `CompressedMessageBuffer`):
/// never by the transport itself on the event loop's thread, which must keep serving every other
/// stream (handlers that run there, `H2Configuration.runHandlersOnEventLoop`, take theirs along).
/// Inflating 4 MiB takes about 10 ms, compressing it tens of milliseconds (README, "Compression").
enum Zlib {
    /// zlib's window bits for the algorithm: 15 (32 KiB window), +16 for the gzip wrapper.
    private static func windowBits(_ algorithm: CompressionAlgorithm) -> Int32 {
        algorithm == .gzip ? 15 + 16 : 15
    }

    /// `bytes` compressed with `algorithm`, at zlib's fastest level (1): about twice as fast as
    /// the default level for a few percent more bytes, the better trade for messages compressed
    /// on a task of the cooperative pool.
    static func compress(_ bytes: UnsafeRawBufferPointer, _ algorithm: CompressionAlgorithm) throws(RPCError) -> [UInt8]
    {
        var stream = z_stream()
        guard czlib_deflate_init2(&stream, Z_BEST_SPEED, windowBits(algorithm)) == Z_OK else {
            throw RPCError(.resourceExhausted, "could not start \(algorithm.name) compression (zlib)")
        }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(bytes.count)))
        var rc: Int32 = Z_OK
        let output = [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
            stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(bytes.count)
            stream.next_out = out.baseAddress
            stream.avail_out = uInt(bound)
            rc = deflate(&stream, Z_FINISH)
            initialized = rc == Z_STREAM_END ? Int(stream.total_out) : 0
        }
        guard rc == Z_STREAM_END else {
            throw RPCError(.internal, "\(algorithm.name) compression failed (zlib error \(rc))")
        }
        return output
    }

    /// `bytes` inflated with `algorithm`; RESOURCE_EXHAUSTED as soon as the output would pass
    /// `limit` bytes. The buffer grows by doubling up to `limit` (never past it), so a small
    /// message that would inflate to gigabytes costs at most `limit` bytes and stops there.
    static func decompress(
        _ bytes: UnsafeRawBufferPointer, _ algorithm: CompressionAlgorithm, limit: Int, what: String
    ) throws(RPCError) -> [UInt8] {
        var stream = z_stream()
        guard czlib_inflate_init2(&stream, windowBits(algorithm)) == Z_OK else {
            throw RPCError(.resourceExhausted, "could not start \(algorithm.name) decompression (zlib)")
        }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(bytes.count)
        var capacity = min(limit, max(4096, bytes.count * 4))
        var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, capacity))
        defer { buffer.deallocate() }
        var produced = 0
        while true {
            if produced == capacity {
                if capacity >= limit {
                    // Full at the limit: one byte more means the message is over it.
                    var probe: UInt8 = 0
                    let rc = withUnsafeMutablePointer(to: &probe) { p -> Int32 in
                        stream.next_out = p
                        stream.avail_out = 1
                        return inflate(&stream, Z_NO_FLUSH)
                    }
                    if stream.avail_out == 0 {
                        throw RPCError(
                            .resourceExhausted, "\(what) inflates (\(algorithm.name)) past the limit of \(limit) bytes")
                    }
                    if rc == Z_STREAM_END { break }
                    throw corrupt(algorithm, rc, what)
                }
                capacity = min(limit, capacity * 2)
                let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
                grown.update(from: buffer, count: produced)
                buffer.deallocate()
                buffer = grown
            }
            stream.next_out = buffer + produced
            stream.avail_out = uInt(capacity - produced)
            let rc = inflate(&stream, Z_NO_FLUSH)
            produced = capacity - Int(stream.avail_out)
            if rc == Z_STREAM_END { break }
            if rc == Z_OK { continue }
            if rc == Z_BUF_ERROR && produced == capacity { continue }  // needs room only
            throw corrupt(algorithm, rc, what)
        }
        if stream.avail_in != 0 {
            throw RPCError(
                .internal, "\(what) has \(stream.avail_in) bytes after the end of its \(algorithm.name) data")
        }
        return [UInt8](UnsafeBufferPointer(start: buffer, count: produced))
    }

    private static func corrupt(_ algorithm: CompressionAlgorithm, _ rc: Int32, _ what: String) -> RPCError {
        let reason = rc == Z_BUF_ERROR ? "truncated" : "corrupt (zlib error \(rc))"
        return RPCError(.internal, "\(what) has the compressed flag set but its \(algorithm.name) data is \(reason)")
    }
}

/// A message to send compressed as `compression` asks; nil when it is not to be, or when
/// compression fails (it then goes out uncompressed, which the compressed flag allows per message).
/// The call reserved the uncompressed size for its back-pressure, and the shim reports the
/// compressed bytes as they drain: the difference goes to `credit`.
func compressedForSending(_ message: MessageBytes, credit: DrainCredit) -> MessageBytes? {
    guard let algorithm = message.compression,
        let packed = try? message.withUnsafeBytes({ (raw) throws(RPCError) -> MessageBytes in
            MessageBytes(try Zlib.compress(raw, algorithm))
        })
    else { return nil }
    credit.bytes.add(message.count - packed.count, ordering: .relaxed)
    return packed
}

/// Bytes a stream's next drain report adds (see `compressedForSending`): written by the sending
/// task before it sends, taken by the loop thread when the shim reports a drain.
final class DrainCredit: Sendable {
    let bytes = Atomic<Int>(0)

    /// `drained` plus the credit gathered since the last report.
    func adjust(_ drained: Int) -> Int {
        max(0, drained + bytes.exchange(0, ordering: .relaxed))
    }
}

/// A received message with the compressed flag, as it arrived: inflated by the call that reads it.
final class H2CompressedMessage: CompressedMessageBuffer {
    let algorithm: CompressionAlgorithm
    /// The compressed bytes: the shim's buffer, or a copy of bytes that were only lent.
    private let wire: any MessageBuffer
    /// The transport's receive limit: the cap when the call has none of its own.
    private let transportLimit: Int
    /// "a request message" or "a response message", for the error messages.
    private let what: String

    init(_ wire: any MessageBuffer, algorithm: CompressionAlgorithm, transportLimit: Int, what: String) {
        self.wire = wire
        self.algorithm = algorithm
        self.transportLimit = transportLimit
        self.what = what
    }

    var count: Int { wire.count }
    var bytes: UnsafeRawBufferPointer { wire.bytes }

    func decompressed(limit: Int?) throws(RPCError) -> MessageBytes {
        let cap = min(limit ?? transportLimit, transportLimit)
        return MessageBytes(try Zlib.decompress(wire.bytes, algorithm, limit: cap, what: what))
    }
}

/// A copy of bytes the shim only lent for the duration of a callback.
final class CopiedBytes: MessageBuffer {
    /// The memory's address (a plain integer, so the class is Sendable; it never changes).
    private let address: UInt
    let count: Int

    init(_ source: UnsafeBufferPointer<UInt8>) {
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, source.count), alignment: 1)
        if let base = source.baseAddress { storage.copyMemory(from: base, byteCount: source.count) }
        address = UInt(bitPattern: storage)
        count = source.count
    }

    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: count)
    }

    deinit { UnsafeMutableRawPointer(bitPattern: address)!.deallocate() }
}

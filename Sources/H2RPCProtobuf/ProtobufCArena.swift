public import CProtobufC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Scratch C memory for encoding one message through protobuf-c.
///
/// Generated `serializedBytes()` builds the protobuf-c C struct tree (strings, bytes,
/// sub-messages, repeated arrays) in an arena, packs it, and drops the arena. The arena is a
/// bump allocator over malloc'd chunks: most messages need one chunk, and everything is freed
/// at once by `release()` or `deinit`.
///
/// Not `Sendable`: an arena belongs to one encode call on one thread.
public final class ProtobufCArena {
    // `@exclusivity(unchecked)`: an arena serves one encode on one thread, and no access to
    // these overlaps another (no inout escapes); the runtime checks cost more than the bump.

    /// The first block malloc'd (most encodes need no other: no array to allocate), then the
    /// others; the last chunk is the current bump region.
    @exclusivity(unchecked) @usableFromInline var first: UnsafeMutableRawPointer? = nil
    @exclusivity(unchecked) @usableFromInline var more: [UnsafeMutableRawPointer] = []
    @exclusivity(unchecked) @usableFromInline var cursor: UnsafeMutableRawPointer? = nil
    @exclusivity(unchecked) @usableFromInline var remaining: Int = 0

    /// The size of a regular chunk; larger requests get a chunk of their own.
    /// It fits glibc's tcache (≤ 1032 bytes): the common encode costs no slow-path malloc.
    @usableFromInline static let chunkSize = 1008

    /// Creates an empty arena (allocates nothing until first used).
    @inlinable
    public init() {}

    deinit { release() }

    /// Frees every allocation made so far; the arena can be reused afterwards.
    public func release() {
        if let first { free(first) }
        first = nil
        for chunk in more { free(chunk) }
        more.removeAll(keepingCapacity: true)
        cursor = nil
        remaining = 0
    }

    /// Raw memory of `byteCount` bytes aligned to `alignment` (a power of two ≤ 16),
    /// valid until the arena is released.
    @inlinable
    public func allocateBytes(_ byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer {
        if let cursor {
            let aligned = cursor.alignedUp(toMultipleOf: alignment)
            let padding = aligned - cursor
            if padding + byteCount <= remaining {
                self.cursor = aligned + byteCount
                remaining -= padding + byteCount
                return aligned
            }
        }
        return allocateSlow(byteCount)
    }

    @usableFromInline
    func allocateSlow(_ byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount > Self.chunkSize / 4 {
            // A big block (typically a bytes payload) gets its own malloc; the bump region stays.
            guard let block = malloc(max(byteCount, 1)) else { fatalError("out of memory") }
            keep(block)
            return block
        }
        guard let chunk = malloc(Self.chunkSize) else { fatalError("out of memory") }
        keep(chunk)
        cursor = chunk + byteCount
        remaining = Self.chunkSize - byteCount
        return chunk  // malloc memory is aligned for any type
    }

    private func keep(_ block: UnsafeMutableRawPointer) {
        if first == nil { first = block } else { more.append(block) }
    }

    /// Uninitialized memory for `count` values of `T` (a trivial C type).
    @inlinable
    public func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        allocateBytes(MemoryLayout<T>.stride * count, alignment: MemoryLayout<T>.alignment)
            .bindMemory(to: T.self, capacity: count)
    }

    /// A NUL-terminated copy of `string` (protobuf-c `char *` fields). Never NULL, also for "".
    @inlinable
    public func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        var string = string
        return string.withUTF8 { utf8 in
            let p = allocateBytes(utf8.count + 1, alignment: 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
            if let base = utf8.baseAddress, utf8.count > 0 {
                UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: utf8.count)
            }
            p[utf8.count] = 0
            return p
        }
    }

    /// A protobuf-c `bytes` value holding a copy of `bytes`.
    @inlinable
    public func binaryData(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        if bytes.isEmpty { return ProtobufCBinaryData(len: 0, data: nil) }
        let p = allocateBytes(bytes.count, alignment: 1)
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return ProtobufCBinaryData(len: bytes.count, data: p.assumingMemoryBound(to: UInt8.self))
    }

    /// A C array holding `values` (same memory layout: Int32, UInt32, Float, Double).
    @inlinable
    public func array<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let p = allocate(T.self, count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { p.initialize(from: base, count: src.count) }
        }
        return p
    }

    /// A C array of integers converted to the C field's type (e.g. `Int64` → `int64_t`,
    /// which is `Int` on LP64 Linux). Same-width values are copied bit for bit.
    @inlinable
    public func integers<S: FixedWidthInteger, D: FixedWidthInteger>(_ values: [S], as: D.Type = D.self)
        -> UnsafeMutablePointer<D>
    {
        let p = allocate(D.self, count: values.count)
        for i in values.indices { p[i] = D(truncatingIfNeeded: values[i]) }
        return p
    }

    /// A C array of `protobuf_c_boolean` (int).
    @inlinable
    public func booleans(_ values: [Bool]) -> UnsafeMutablePointer<protobuf_c_boolean> {
        let p = allocate(protobuf_c_boolean.self, count: values.count)
        for i in values.indices { p[i] = values[i] ? 1 : 0 }
        return p
    }

    /// A C array of `char *` (repeated string).
    @inlinable
    public func cStrings(_ values: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let p = allocate(UnsafeMutablePointer<CChar>?.self, count: values.count)
        for i in values.indices { p[i] = cString(values[i]) }
        return p
    }

    /// A C array of `ProtobufCBinaryData` (repeated bytes).
    @inlinable
    public func binaryDatas(_ values: [[UInt8]]) -> UnsafeMutablePointer<ProtobufCBinaryData> {
        let p = allocate(ProtobufCBinaryData.self, count: values.count)
        for i in values.indices { p[i] = binaryData(values[i]) }
        return p
    }

    /// A C array of enum values (repeated enum field); `make` converts one value.
    @inlinable
    public func map<S, D>(_ values: [S], _ make: (S) -> D) -> UnsafeMutablePointer<D> {
        let p = allocate(D.self, count: values.count)
        for i in values.indices { p[i] = make(values[i]) }
        return p
    }

    /// A C array of sub-message pointers (repeated message field). `fill` initializes the
    /// arena-allocated struct at the given pointer from one element.
    @inlinable
    public func messages<S, C>(_ values: [S], _ type: C.Type, _ fill: (S, UnsafeMutablePointer<C>) -> Void)
        -> UnsafeMutablePointer<UnsafeMutablePointer<C>?>
    {
        let pointers = allocate(UnsafeMutablePointer<C>?.self, count: values.count)
        let structs = allocate(C.self, count: values.count)
        for i in values.indices {
            fill(values[i], structs + i)
            pointers[i] = structs + i
        }
        return pointers
    }
}

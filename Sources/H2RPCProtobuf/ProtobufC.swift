public import CProtobufC
public import H2RPC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Thrown when bytes are not a valid protobuf encoding of the expected message, or one this
/// bridge refuses to unpack (see ``Reason``).
///
/// It knows its gRPC status (``RPCErrorConvertible``), so a server answers a request message
/// that does not decode with: INTERNAL for a malformed encoding, INVALID_ARGUMENT naming the
/// field for a string that is not valid UTF-8 or contains NUL, RESOURCE_EXHAUSTED for too many
/// unknown fields.
public struct ProtobufDecodingError: Error, Sendable, Hashable, CustomStringConvertible, RPCErrorConvertible {
    /// Why the bytes were refused.
    public enum Reason: Sendable, Hashable {
        /// Not a valid protobuf encoding (protobuf-c or the pre-scan rejected it).
        case malformed
        /// A string field's contents are not valid UTF-8 or contain NUL. `field` is the dotted
        /// path of proto field names from the top-level message (e.g. `gallery.display_name`).
        case invalidString(field: String)
        /// More unknown fields (in the message and its sub-messages together) than `limit`.
        case tooManyUnknownFields(limit: Int)
    }

    /// The Swift message type that failed to decode.
    public let messageType: String
    /// How many bytes were offered.
    public let byteCount: Int
    /// Why.
    public let reason: Reason

    /// Creates an error.
    public init(messageType: String, byteCount: Int, reason: Reason = .malformed) {
        self.messageType = messageType
        self.byteCount = byteCount
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .malformed:
            return "invalid protobuf encoding of \(messageType) (\(byteCount) bytes)"
        case .invalidString(let field):
            return "field '\(field)' of \(messageType) is not valid UTF-8 or contains NUL"
        case .tooManyUnknownFields(let limit):
            return "\(messageType) (\(byteCount) bytes) has more than \(limit) unknown fields"
        }
    }

    /// INTERNAL (malformed), INVALID_ARGUMENT (a string's contents) or RESOURCE_EXHAUSTED (unknown fields).
    public var rpcError: RPCError {
        switch reason {
        case .malformed: return RPCError(.internal, description)
        case .invalidString: return RPCError(.invalidArgument, description)
        case .tooManyUnknownFields: return RPCError(.resourceExhausted, description)
        }
    }
}

/// Pack/unpack and field-reading helpers over protobuf-c, used by generated code.
public enum ProtobufC {
    /// Packs a protobuf-c message struct (any generated `Foo__Bar`, whose first member is
    /// `ProtobufCMessage base`) into a new array. One copy: protobuf-c writes straight into
    /// the array's storage.
    @inlinable
    public static func pack<C>(_ message: UnsafePointer<C>) -> [UInt8] {
        let base = UnsafeRawPointer(message).assumingMemoryBound(to: ProtobufCMessage.self)
        let size = protobuf_c_message_get_packed_size(base)
        if size == 0 { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = protobuf_c_message_pack(base, buffer.baseAddress)
        }
    }

    /// Packs a protobuf-c message struct into memory from `allocate` (called once, with the
    /// packed size): protobuf-c writes straight into the caller's buffer.
    @inlinable
    public static func pack<C>(
        _ message: UnsafePointer<C>, into allocate: (Int) throws -> UnsafeMutableRawBufferPointer
    ) throws {
        let base = UnsafeRawPointer(message).assumingMemoryBound(to: ProtobufCMessage.self)
        let size = protobuf_c_message_get_packed_size(base)
        let target = try allocate(size)
        precondition(target.count >= size, "allocate returned a buffer smaller than requested")
        if size > 0 {
            let written = protobuf_c_message_pack(base, target.baseAddress!.assumingMemoryBound(to: UInt8.self))
            precondition(written == size, "protobuf-c packed \(written) bytes, sized \(size)")
        }
    }

    // MARK: messages that are one length-delimited field

    /// Reads a varint of at most `maxBytes` bytes at `index`; nil if it does not end there.
    @inlinable
    static func varint(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, maxBytes: Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var i = index
        while i < bytes.count && i - index < maxBytes {
            let b = bytes[i]
            value |= UInt64(b & 0x7f) << shift
            i += 1
            if b & 0x80 == 0 {
                index = i
                return value
            }
            shift += 7
        }
        return nil
    }

    /// If `bytes` is exactly one length-delimited field (tag, length, contents, nothing else),
    /// its field number and contents. Accepts only what protobuf-c accepts (tag and length of at
    /// most 5 bytes, length at most `Int32.max`), so a message decoded from the contents equals
    /// protobuf-c's.
    @inlinable
    public static func singleLengthDelimitedField(_ bytes: UnsafeRawBufferPointer) -> (
        number: Int, contents: UnsafeRawBufferPointer
    )? {
        var i = 0
        guard let tag = varint(bytes, &i, maxBytes: 5), tag & 7 == 2, tag <= UInt64(UInt32.max), tag >> 3 >= 1,
            let length = varint(bytes, &i, maxBytes: 5), length <= UInt64(Int32.max),
            Int(length) == bytes.count - i
        else { return nil }
        return (Int(tag >> 3), UnsafeRawBufferPointer(rebasing: bytes[i...]))
    }

    @inlinable
    static func varintSize(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    @inlinable
    static func writeVarint(_ value: UInt64, _ p: UnsafeMutableRawPointer, _ index: inout Int) {
        var v = value
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: index, as: UInt8.self)
            v >>= 7
            index += 1
        }
        p.storeBytes(of: UInt8(v), toByteOffset: index, as: UInt8.self)
        index += 1
    }

    /// Writes the wire form of a message whose only field is `contents` in length-delimited
    /// field `number` (what protobuf-c writes for it) into memory from `allocate`.
    @inlinable
    public static func encodeLengthDelimitedField(
        _ number: Int, _ contents: [UInt8],
        into allocate: (Int) throws -> UnsafeMutableRawBufferPointer
    ) throws {
        let tag = UInt64(number) << 3 | 2
        let size = varintSize(tag) + varintSize(UInt64(contents.count)) + contents.count
        let target = try allocate(size)
        precondition(target.count >= size, "allocate returned a buffer smaller than requested")
        let p = target.baseAddress!
        var i = 0
        writeVarint(tag, p, &i)
        writeVarint(UInt64(contents.count), p, &i)
        contents.withUnsafeBytes { src in
            if let base = src.baseAddress { (p + i).copyMemory(from: base, byteCount: src.count) }
        }
    }

    /// The wire form of a message whose only field is `contents` in length-delimited field `number`.
    @inlinable
    public static func encodeLengthDelimitedField(_ number: Int, _ contents: [UInt8]) -> [UInt8] {
        let tag = UInt64(number) << 3 | 2
        let size = varintSize(tag) + varintSize(UInt64(contents.count)) + contents.count
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            try! encodeLengthDelimitedField(number, contents) { _ in UnsafeMutableRawBufferPointer(buffer) }
            count = size
        }
    }

    /// Unpacks `bytes` as the message described by `descriptor` (C struct type `C`), hands
    /// the C message to `body`, then frees it. An empty buffer is a valid empty message.
    /// Throws `ProtobufDecodingError` when protobuf-c rejects the bytes.
    @inlinable
    public static func unpack<C, R>(
        _ bytes: UnsafeRawBufferPointer,
        as messageType: Any.Type,
        _ descriptor: MessageDescriptor,
        _ cType: C.Type,
        _ body: (UnsafePointer<C>) throws -> R
    ) throws -> R {
        var result: R? = nil
        try withUnpacked(bytes, as: messageType, descriptor) { message in
            result = try body(message.assumingMemoryBound(to: C.self))
        }
        return result!
    }

    /// protobuf-c builds the unpacked message in scratch memory on the stack (a bump
    /// allocator; what does not fit comes from malloc), so decoding a small message costs no
    /// heap allocation, and freeing it is nothing unless something spilled to malloc.
    @usableFromInline
    static func withUnpacked(
        _ bytes: UnsafeRawBufferPointer, as messageType: Any.Type, _ descriptor: MessageDescriptor,
        _ body: (UnsafeRawPointer) throws -> Void
    ) throws {
        try withUnsafeTemporaryAllocation(byteCount: 1024, alignment: 16) { scratch in
            var region = ScratchRegion(
                start: scratch.baseAddress!, next: scratch.baseAddress!,
                end: scratch.baseAddress! + scratch.count, spilled: 0)
            try withUnsafeMutablePointer(to: &region) { r in
                var allocator = ProtobufCAllocator(
                    alloc: { data, size in
                        let region = data!.assumingMemoryBound(to: ScratchRegion.self)
                        let rounded = (size + 15) & ~15
                        if rounded <= region.pointee.end - region.pointee.next {
                            let p = region.pointee.next
                            region.pointee.next += rounded
                            return p
                        }
                        region.pointee.spilled += 1
                        return malloc(max(size, 1))
                    },
                    free: { data, pointer in
                        guard let pointer else { return }
                        let region = data!.assumingMemoryBound(to: ScratchRegion.self)
                        // Scratch: dropped with it.
                        if pointer >= region.pointee.start && pointer < region.pointee.end { return }
                        free(pointer)
                    }, allocator_data: UnsafeMutableRawPointer(r))
                // protobuf-c keeps every unknown field as a struct plus a malloc'd copy of its
                // bytes (about 64 bytes of heap for 2 bytes of wire): cap how many it may see.
                // Each field takes at least 2 bytes, so only a longer message can exceed the cap.
                let limit = unknownFieldLimit
                if bytes.count > 2 * limit, !unknownFieldsWithin(bytes, descriptor.pointer, limit: limit) {
                    throw ProtobufDecodingError(
                        messageType: String(describing: messageType), byteCount: bytes.count,
                        reason: .tooManyUnknownFields(limit: limit))
                }
                var empty: UInt8 = 0
                let message = withUnsafePointer(to: &empty) { emptyPointer in
                    let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyPointer
                    return protobuf_c_message_unpack(descriptor.pointer, &allocator, bytes.count, base)
                }
                guard let message else {
                    throw ProtobufDecodingError(messageType: String(describing: messageType), byteCount: bytes.count)
                }
                defer { if r.pointee.spilled > 0 { protobuf_c_message_free_unpacked(message, &allocator) } }
                try body(UnsafeRawPointer(message))
            }
        }
    }

    /// The bump region of `withUnpacked`.
    struct ScratchRegion {
        let start: UnsafeMutableRawPointer
        var next: UnsafeMutableRawPointer
        let end: UnsafeMutableRawPointer
        /// Allocations that came from malloc.
        var spilled: Int
    }

    /// The protobuf-c descriptor of a generated message type, found through its generated
    /// `…__init` function (which stores the descriptor's address in `base.descriptor`).
    /// protoc-c emits `…__unpack` only for top-level messages; the descriptor works for all.
    @inlinable
    public static func descriptor<C>(_ cType: C.Type, _ initialize: (UnsafeMutablePointer<C>?) -> Void)
        -> MessageDescriptor
    {
        withUnsafeTemporaryAllocation(of: C.self, capacity: 1) { buffer in
            initialize(buffer.baseAddress!)
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: ProtobufCMessage.self)
            return MessageDescriptor(pointer: base.pointee.descriptor)
        }
    }

    /// The address of a protobuf-c message descriptor.
    ///
    /// `@unchecked Sendable` is safe: it points to a `const` descriptor in the generated C
    /// code, static data that is never written and never freed.
    public struct MessageDescriptor: @unchecked Sendable {
        /// The descriptor.
        public let pointer: UnsafePointer<ProtobufCMessageDescriptor>

        /// Wraps a descriptor address.
        @inlinable
        public init(pointer: UnsafePointer<ProtobufCMessageDescriptor>) {
            self.pointer = pointer
        }
    }

    /// A `char *` field as a String ("" for NULL). Generated decoders run `validate` first,
    /// so the bytes are valid UTF-8 without NUL (nothing is repaired or truncated).
    @inlinable
    public static func string(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    /// A `bytes` field as an array.
    @inlinable
    public static func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
        guard data.len > 0, let p = data.data else { return [] }
        return [UInt8](UnsafeBufferPointer(start: p, count: data.len))
    }

    /// Bytes read straight from the wire, as an array.
    @inlinable
    public static func bytes(_ contents: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](contents)
    }

    /// A repeated field with the same memory layout in Swift and C.
    @inlinable
    public static func array<T>(_ pointer: UnsafePointer<T>?, _ count: Int) -> [T] {
        guard count > 0, let pointer else { return [] }
        return [T](UnsafeBufferPointer(start: pointer, count: count))
    }

    /// A repeated integer field, converted from the C type (e.g. `Int` for `int64_t`).
    @inlinable
    public static func integers<S: FixedWidthInteger, D: FixedWidthInteger>(
        _ pointer: UnsafePointer<S>?, _ count: Int, as: D.Type = D.self
    ) -> [D] {
        guard count > 0, let pointer else { return [] }
        return UnsafeBufferPointer(start: pointer, count: count).map { D(truncatingIfNeeded: $0) }
    }

    /// A repeated field of any other kind, converting each element.
    @inlinable
    public static func map<S, D>(_ pointer: UnsafePointer<S>?, _ count: Int, _ convert: (S) -> D) -> [D] {
        guard count > 0, let pointer else { return [] }
        return UnsafeBufferPointer(start: pointer, count: count).map(convert)
    }
}

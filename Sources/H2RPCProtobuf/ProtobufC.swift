public import CProtobufC

/// Thrown when bytes are not a valid protobuf encoding of the expected message.
public struct ProtobufDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The Swift message type that failed to decode.
    public let messageType: String
    /// How many bytes were offered.
    public let byteCount: Int

    /// Creates an error.
    public init(messageType: String, byteCount: Int) {
        self.messageType = messageType
        self.byteCount = byteCount
    }

    public var description: String {
        "invalid protobuf encoding of \(messageType) (\(byteCount) bytes)"
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
        var empty: UInt8 = 0
        let message = withUnsafePointer(to: &empty) { emptyPointer in
            let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyPointer
            return protobuf_c_message_unpack(descriptor.pointer, nil, bytes.count, base)
        }
        guard let message else {
            throw ProtobufDecodingError(messageType: String(describing: messageType), byteCount: bytes.count)
        }
        defer { protobuf_c_message_free_unpacked(message, nil) }
        return try body(UnsafeRawPointer(message).assumingMemoryBound(to: C.self))
    }

    /// The protobuf-c descriptor of a generated message type, found through its generated
    /// `…__init` function (which stores the descriptor's address in `base.descriptor`).
    /// protoc-c emits `…__unpack` only for top-level messages; the descriptor works for all.
    @inlinable
    public static func descriptor<C>(_ cType: C.Type, _ initialize: (UnsafeMutablePointer<C>?) -> Void) -> MessageDescriptor {
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

    /// A `char *` field as a String ("" for NULL); invalid UTF-8 is repaired.
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

    /// A repeated field with the same memory layout in Swift and C.
    @inlinable
    public static func array<T>(_ pointer: UnsafePointer<T>?, _ count: Int) -> [T] {
        guard count > 0, let pointer else { return [] }
        return [T](UnsafeBufferPointer(start: pointer, count: count))
    }

    /// A repeated integer field, converted from the C type (e.g. `Int` for `int64_t`).
    @inlinable
    public static func integers<S: FixedWidthInteger, D: FixedWidthInteger>(_ pointer: UnsafePointer<S>?, _ count: Int, as: D.Type = D.self) -> [D] {
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

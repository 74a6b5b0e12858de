internal import CProtobufC

// Unknown fields, map fields and recursive fields of generated messages.

extension ProtobufC {
    /// The unknown fields protobuf-c kept while unpacking the message at `message` (any
    /// generated `Foo__Bar`), in their wire form (tag, then the field's bytes), in order.
    /// Generated code calls it only when `n_unknown_fields > 0`.
    ///
    /// A field numbered 0 is dropped: no valid message has one, yet protobuf-c 1.4 keeps it
    /// when its key is written in more than one byte (`80 00`), and its wire form (key `00`)
    /// would then be bytes that protobuf-c itself rejects (found by Tests/Fuzz).
    public static func unknownFields(_ message: UnsafeRawPointer) -> [UInt8] {
        let base = message.assumingMemoryBound(to: ProtobufCMessage.self).pointee
        guard base.n_unknown_fields > 0, let fields = base.unknown_fields else { return [] }
        var size = 0
        for k in 0..<Int(base.n_unknown_fields) where fields[k].tag != 0 {
            size += varintSize(UInt64(fields[k].tag) << 3) + fields[k].len
        }
        guard size > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            let p = UnsafeMutableRawPointer(buffer.baseAddress!)
            var i = 0
            for k in 0..<Int(base.n_unknown_fields) where fields[k].tag != 0 {
                let field = fields[k]
                writeVarint(UInt64(field.tag) << 3 | UInt64(field.wire_type.rawValue), p, &i)
                if field.len > 0, let data = field.data {
                    (p + i).copyMemory(from: data, byteCount: field.len)
                    i += field.len
                }
            }
            count = i
        }
    }

    /// The length of the field starting at `index` (after its tag) of wire type `wireType`,
    /// or nil when it is not complete.
    static func fieldLength(_ bytes: UnsafeRawBufferPointer, _ index: Int, wireType: UInt64) -> Int? {
        var i = index
        switch wireType {
        case 0: guard varint(bytes, &i, maxBytes: 10) != nil else { return nil }
        case 1: i += 8
        case 5: i += 4
        case 2:
            guard let length = varint(bytes, &i, maxBytes: 10), length <= UInt64(bytes.count - i) else { return nil }
            i += Int(length)
        default: return nil
        }
        return i <= bytes.count ? i - index : nil
    }

    /// A dictionary from a protobuf-c map field (a C array of entry-message pointers); a key
    /// that appears twice keeps its last value, as protobuf's parsers do.
    @inlinable
    public static func dictionary<E, K: Hashable, V>(
        _ entries: UnsafePointer<UnsafeMutablePointer<E>?>?, _ count: Int,
        _ convert: (UnsafePointer<E>) -> (K, V)
    ) -> [K: V] {
        guard count > 0, let entries else { return [:] }
        var result = [K: V](minimumCapacity: count)
        for i in 0..<count {
            guard let entry = entries[i] else { continue }
            let (key, value) = convert(entry)
            result[key] = value
        }
        return result
    }
}

extension ProtobufCArena {
    /// Sets the unknown fields of the protobuf-c message at `message` from their wire form
    /// (as `ProtobufC.unknownFields` returns it) so that protobuf-c packs them after the known
    /// fields. Bytes that do not parse as fields (never the case for decoded ones) are dropped.
    public func setUnknownFields(_ wire: [UInt8], _ message: UnsafeMutableRawPointer) {
        let base = message.assumingMemoryBound(to: ProtobufCMessage.self)
        let copy = binaryData(wire)
        guard let data = copy.data else { return }
        let bytes = UnsafeRawBufferPointer(start: data, count: wire.count)
        var count = 0
        var i = 0
        while i < bytes.count, let key = ProtobufC.varint(bytes, &i, maxBytes: 5),
            let length = ProtobufC.fieldLength(bytes, i, wireType: key & 7)
        {
            count += 1
            i += length
        }
        guard count > 0 else { return }
        let fields = allocate(ProtobufCMessageUnknownField.self, count: count)
        i = 0
        for k in 0..<count {
            let key = ProtobufC.varint(bytes, &i, maxBytes: 5)!
            let length = ProtobufC.fieldLength(bytes, i, wireType: key & 7)!
            fields[k] = ProtobufCMessageUnknownField(
                tag: UInt32(truncatingIfNeeded: key >> 3),
                wire_type: ProtobufCWireType(rawValue: UInt32(key & 7)),
                len: length, data: data + i)
            i += length
        }
        base.pointee.n_unknown_fields = UInt32(count)
        base.pointee.unknown_fields = fields
    }

    /// A C array of entry-message pointers for a map field. `fill` initializes the
    /// arena-allocated entry struct at the given pointer from one key and value.
    @inlinable
    public func entries<K, V, C>(_ values: [K: V], _ type: C.Type, _ fill: (K, V, UnsafeMutablePointer<C>) -> Void)
        -> UnsafeMutablePointer<UnsafeMutablePointer<C>?>
    {
        let pointers = allocate(UnsafeMutablePointer<C>?.self, count: values.count)
        let structs = allocate(C.self, count: values.count)
        var i = 0
        for (key, value) in values {
            fill(key, value, structs + i)
            pointers[i] = structs + i
            i += 1
        }
        return pointers
    }
}

/// The storage of a message field whose type contains the message itself (a recursive
/// message): a value type cannot contain itself inline. Immutable; a new value is a new box.
public final class ProtobufCBox<Value: Hashable & Sendable>: Hashable, Sendable {
    /// The boxed value.
    public let value: Value

    /// Boxes `value`.
    public init(_ value: Value) {
        self.value = value
    }

    public static func == (lhs: ProtobufCBox, rhs: ProtobufCBox) -> Bool {
        lhs === rhs || lhs.value == rhs.value
    }

    public func hash(into hasher: inout Hasher) {
        value.hash(into: &hasher)
    }
}

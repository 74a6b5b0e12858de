public import CProtobufC
import H2RPC

extension ProtobufC {
    /// How deep messages may nest on decode: protobuf's usual recursion limit (C++ and upb
    /// accept 100 levels of sub-messages below the top-level message, and reject 101).
    public static let maximumDepth = 100

    /// Checks what protobuf-c does not before it unpacks `bytes` as the message described by
    /// `descriptor`: every string field (also in sub-messages and map entries) is valid UTF-8
    /// without NUL — protobuf-c's `char *` would silently truncate at a NUL, and Swift would
    /// repair invalid UTF-8 — and sub-messages nest at most `maximumDepth` levels, so neither
    /// protobuf-c's recursive unpack nor the Swift copy can overflow the stack. Throws
    /// `ProtobufDecodingError`, as a protobuf-c rejection does. One pass over the bytes,
    /// allocating nothing; bytes fields and unknown fields are skipped without looking inside.
    /// Generated code calls it only for messages that can contain a string or are recursive.
    /// A string field's failure is ``ProtobufDecodingError/Reason/invalidString(field:)`` naming
    /// the field (INVALID_ARGUMENT on a server); anything else is `.malformed`.
    @inlinable
    public static func validate(
        _ bytes: UnsafeRawBufferPointer, as messageType: Any.Type, _ descriptor: MessageDescriptor
    ) throws {
        switch check(bytes, descriptor.pointer, depth: 0) {
        case .ok: return
        case .malformed:
            throw ProtobufDecodingError(messageType: String(describing: messageType), byteCount: bytes.count)
        case .badString(let path):
            throw ProtobufDecodingError(
                messageType: String(describing: messageType), byteCount: bytes.count,
                reason: .invalidString(field: path.reversed().joined(separator: ".")))
        }
    }

    /// What `check` found.
    @usableFromInline
    enum WireCheck {
        case ok
        case malformed
        /// A string field's contents; the field names from the innermost out.
        case badString([String])
    }

    @usableFromInline
    static func check(
        _ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, depth: Int
    ) -> WireCheck {
        guard depth <= maximumDepth else { return .malformed }
        var i = 0
        while i < bytes.count {
            guard let key = varint(bytes, &i, maxBytes: 10) else { return .malformed }
            switch key & 7 {
            case 0: guard varint(bytes, &i, maxBytes: 10) != nil else { return .malformed }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let length = varint(bytes, &i, maxBytes: 10), length <= UInt64(bytes.count - i) else {
                    return .malformed
                }
                let contents = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + Int(length))])
                i += Int(length)
                guard key >> 3 <= UInt64(UInt32.max),
                    let field = protobuf_c_message_descriptor_get_field(descriptor, UInt32(key >> 3))
                else { continue }
                if field.pointee.type == PROTOBUF_C_TYPE_STRING {
                    guard isUTF8WithoutNUL(contents) else { return .badString([fieldName(field)]) }
                } else if field.pointee.type == PROTOBUF_C_TYPE_MESSAGE, let sub = field.pointee.descriptor {
                    switch check(
                        contents, sub.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), depth: depth + 1)
                    {
                    case .ok: break
                    case .malformed: return .malformed
                    case .badString(let path): return .badString(path + [fieldName(field)])
                    }
                }
            default: return .malformed  // groups (protobuf-c rejects them too) and invalid wire types
            }
        }
        return i == bytes.count ? .ok : .malformed
    }

    @usableFromInline
    static func fieldName(_ field: UnsafePointer<ProtobufCFieldDescriptor>) -> String {
        field.pointee.name.map { String(cString: $0) } ?? "#\(field.pointee.id)"
    }

    // MARK: unknown fields

    /// The most unknown fields a message (with its sub-messages) may carry to be unpacked:
    /// `RPCMessageLimits.maxUnknownFields` (default 1,000; process-wide). More is
    /// ``ProtobufDecodingError/Reason/tooManyUnknownFields(limit:)`` (RESOURCE_EXHAUSTED on a server).
    public static var unknownFieldLimit: Int { RPCMessageLimits.maxUnknownFields }

    /// Whether `bytes` (and the sub-messages protobuf-c would unpack) hold at most `limit`
    /// unknown fields: one pass over the tags, skipping contents, allocating nothing. A malformed
    /// encoding answers true (protobuf-c then rejects it as such).
    static func unknownFieldsWithin(
        _ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, limit: Int
    ) -> Bool {
        var budget = limit
        return countUnknown(bytes, descriptor, budget: &budget, depth: 0)
    }

    /// Counts unknown fields down from `budget`; false once it goes below zero.
    private static func countUnknown(
        _ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
        budget: inout Int, depth: Int
    ) -> Bool {
        guard depth <= maximumDepth else { return true }
        var i = 0
        while i < bytes.count {
            guard let key = varint(bytes, &i, maxBytes: 10) else { return true }
            var contents: UnsafeRawBufferPointer? = nil
            switch key & 7 {
            case 0: guard varint(bytes, &i, maxBytes: 10) != nil else { return true }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let length = varint(bytes, &i, maxBytes: 10), length <= UInt64(bytes.count - i) else {
                    return true
                }
                contents = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + Int(length))])
                i += Int(length)
            default: return true
            }
            guard key >> 3 <= UInt64(UInt32.max),
                let field = protobuf_c_message_descriptor_get_field(descriptor, UInt32(key >> 3))
            else {
                budget -= 1
                if budget < 0 { return false }
                continue
            }
            if let contents, field.pointee.type == PROTOBUF_C_TYPE_MESSAGE, let sub = field.pointee.descriptor,
                contents.count > 1
            {
                let subDescriptor = sub.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                guard countUnknown(contents, subDescriptor, budget: &budget, depth: depth + 1) else { return false }
            }
        }
        return true
    }

    /// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or code points past
    /// U+10FFFF) and contains no NUL.
    @usableFromInline
    static func isUTF8WithoutNUL(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let lead = bytes[i]
            if lead < 0x80 {
                if lead == 0 { return false }
                i += 1
                continue
            }
            let length: Int
            var scalar: UInt32
            let minimum: UInt32
            if lead & 0xE0 == 0xC0 {
                (length, scalar, minimum) = (2, UInt32(lead & 0x1F), 0x80)
            } else if lead & 0xF0 == 0xE0 {
                (length, scalar, minimum) = (3, UInt32(lead & 0x0F), 0x800)
            } else if lead & 0xF8 == 0xF0 {
                (length, scalar, minimum) = (4, UInt32(lead & 0x07), 0x1_0000)
            } else {
                return false
            }
            guard n - i >= length else { return false }
            for k in 1..<length {
                let b = bytes[i + k]
                guard b & 0xC0 == 0x80 else { return false }
                scalar = scalar << 6 | UInt32(b & 0x3F)
            }
            guard scalar >= minimum, scalar <= 0x10_FFFF, !(0xD800...0xDFFF).contains(scalar) else { return false }
            i += length
        }
        return true
    }
}

// libFuzzer target: the Swift messages' decoders (GeneratedProtos through the H2RPCProtobuf
// bridge and protobuf-c), on every request and response message of the API.
//
// Input: one selector byte (message number = selector % count, the table of
// Tests/Fuzz/messages.py, generated into messages_swift.swift), then the bytes to decode.
// When `init(serializedBytes:)` accepts them:
//   - `serializedBytes()` and `serialize(into:)` write the same bytes, exactly as many as
//     `serialize(into:)` asked for;
//   - those bytes decode again, to an equal message (a NaN float field is never equal to
//     itself: then only the decoding is checked).
// Built with -sanitize=fuzzer,address (Tests/Fuzz/run.sh), like the C targets.

import H2RPC

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    decoders[Int(data[0]) % decoders.count](UnsafeRawBufferPointer(start: data + 1, count: size - 1))
    return 0
}

func roundTrip<M: RPCMessage & Hashable>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer) {
    guard let message = try? M(serializedBytes: bytes) else { return }
    let encoded: [UInt8]
    do {
        encoded = try message.serializedBytes()
    } catch {
        fatalError("\(M.self): serializedBytes() of a decoded message threw \(error)")
    }
    var into: UnsafeMutableRawBufferPointer? = nil
    do {
        try message.serialize { count in
            precondition(into == nil, "\(M.self): serialize(into:) allocated twice")
            into = .allocate(byteCount: count, alignment: 1)
            return into!
        }
    } catch {
        fatalError("\(M.self): serialize(into:) of a decoded message threw \(error)")
    }
    defer { into?.deallocate() }
    // A message with a map may list its entries in another order each time it is encoded;
    // compare bytes only without one (the decoded messages are compared below either way).
    precondition(into!.count == encoded.count, "\(M.self): serialize(into:) and serializedBytes() differ in size")
    if !UnsafeRawBufferPointer(into!).elementsEqual(encoded) && !containsDictionary(message) {
        fatalError("\(M.self): serialize(into:) and serializedBytes() differ for the input \(Array(bytes))")
    }
    let again: M
    do {
        again = try encoded.withUnsafeBytes { try M(serializedBytes: $0) }
    } catch {
        fatalError("\(M.self): cannot decode its own encoding \(encoded) of the input \(Array(bytes)): \(error)")
    }
    if again != message && !containsNaN(message) {
        fatalError("\(M.self): decode(encode(m)) != m for the input \(Array(bytes)):\n\(message)\n\(again)")
    }
}

/// Whether a float or double field anywhere in `value` is NaN.
func containsNaN(_ value: Any) -> Bool {
    if let f = value as? Float { return f.isNaN }
    if let d = value as? Double { return d.isNaN }
    return Mirror(reflecting: value).children.contains { containsNaN($0.value) }
}

/// Whether `value` holds a non-empty dictionary (a map field) anywhere.
func containsDictionary(_ value: Any) -> Bool {
    let mirror = Mirror(reflecting: value)
    if mirror.displayStyle == .dictionary && mirror.children.count > 1 { return true }
    return mirror.children.contains { containsDictionary($0.value) }
}

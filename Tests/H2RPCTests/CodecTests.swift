import Foundation
import GeneratedProtos
import H2RPC
import TestSupport
import Testing

/// The generated messages (Protos/h2rpc/fixture/fixture.proto) bridged to protobuf-c:
/// round trips, defaults, unknown enum values, invalid input, and wire compatibility with
/// Python's protobuf implementation.
@Suite struct CodecTests {
    typealias Envelope = H2rpc_Fixture_Envelope
    typealias Scalars = H2rpc_Fixture_Scalars
    typealias Item = H2rpc_Fixture_Item

    static let scalars = Scalars(
        i32: -123_456, i64: Int64.min, u32: UInt32.max, u64: UInt64.max,
        s32: -7, s64: -9_000_000_000, f32: 0xDEAD_BEEF, f64: 0x0123_4567_89AB_CDEF,
        sf32: Int32.min, sf64: -1, flag: true, real32: 1.5, real64: -2.25,
        text: "héllo, wörld ✓", data: [0, 1, 2, 255, 0], color: .green,
        rI32: [1, -2, Int32.max], rI64: [Int64.max, -3], rU32: [0, 7], rU64: [UInt64.max, 1],
        rS32: [-1, 1], rS64: [-5, 5], rF32: [9], rF64: [10, 11], rSf32: [-12], rSf64: [13, -14],
        rFlag: [true, false, true], rReal32: [0.5, -0.25], rReal64: [1e100, -0.0],
        rText: ["", "a", "ünïcode"], rData: [[], [1], [2, 3]], rColor: [.red, .blue, .unspecified]
    )

    static let envelope = Envelope(
        header: .init(id: "h-1", kind: .complexThing, trace: .init(span: 42)),
        scalars: scalars,
        items: [Item(name: "x", count: 1), Item(), Item(name: "z", count: -3)],
        headers: [.init(id: "a"), .init(kind: .simple)],
        body: .item(Item(name: "in-oneof", count: 9)),
        maybeText: "", maybeInt: 0, maybeFlag: false, maybeColor: .unspecified, maybeData: [],
        nothing: Google_Protobuf_Empty()
    )

    private func roundTrip<M: RPCMessage & Equatable>(_ message: M) throws -> M {
        let bytes = try message.serializedBytes()
        return try bytes.withUnsafeBytes { try M(serializedBytes: $0) }
    }

    @Test func everyScalarKindRoundTrips() throws {
        #expect(try roundTrip(Self.scalars) == Self.scalars)
    }

    @Test func nestedRepeatedOneofAndOptionalRoundTrip() throws {
        let decoded = try roundTrip(Self.envelope)
        #expect(decoded == Self.envelope)
        // proto3 `optional` keeps presence even for default values.
        #expect(decoded.maybeText == "")
        #expect(decoded.maybeInt == 0)
        #expect(decoded.maybeFlag == false)
        #expect(decoded.maybeColor == .unspecified)
        #expect(decoded.maybeData == [])
        #expect(decoded.nothing != nil)
    }

    @Test(arguments: [
        Envelope.OneOf_Body.item(Item(name: "i", count: 2)),
        .item(Item()),
        .note("a note"),
        .note(""),
        .blob([9, 8, 7]),
        .blob([]),
        .bodyKind(.simple),
        .bodyKind(.unspecified),
        .number(-1),
        .number(0),
        .trace(.init(span: UInt64.max)),
    ])
    func everyOneofMemberRoundTrips(body: Envelope.OneOf_Body) throws {
        let message = Envelope(body: body)
        #expect(try roundTrip(message).body == body)
    }

    @Test func emptyAndDefaultMessages() throws {
        #expect(Envelope().serializedBytes() == [])
        #expect(Scalars().serializedBytes() == [])
        #expect(H2rpc_Fixture_Nothing().serializedBytes() == [])
        #expect(Google_Protobuf_Empty().serializedBytes() == [])
        // An empty buffer (nil base address) is a valid empty message.
        let empty = try Envelope(serializedBytes: UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(empty == Envelope())
        #expect(empty.header == nil)
        #expect(empty.body == nil)
        #expect(empty.maybeText == nil)
        #expect(empty.items.isEmpty)
        let scalars = try [UInt8]().withUnsafeBytes { try Scalars(serializedBytes: $0) }
        #expect(
            scalars.text == "" && scalars.data == [] && scalars.color == .unspecified && scalars.i64 == 0
                && !scalars.flag)
        // Explicit defaults are not written (proto3 implicit presence).
        #expect(Scalars(i32: 0, text: "", data: [], color: .unspecified).serializedBytes() == [])
    }

    @Test func knownEncoding() throws {
        #expect(Item(name: "a", count: 1).serializedBytes() == [0x0A, 0x01, 0x61, 0x10, 0x01])
        let item = try [UInt8]([0x10, 0x96, 0x01, 0x0A, 0x02, 0x68, 0x69]).withUnsafeBytes {
            try Item(serializedBytes: $0)
        }
        #expect(item == Item(name: "hi", count: 150))
    }

    @Test func unknownEnumValuesArePreserved() throws {
        let message = Scalars(color: .UNRECOGNIZED(42), rColor: [.UNRECOGNIZED(-7), .red])
        let decoded = try roundTrip(message)
        #expect(decoded.color == .UNRECOGNIZED(42))
        #expect(decoded.rColor == [.UNRECOGNIZED(-7), .red])
        #expect(H2rpc_Fixture_Color(rawValue: 3) == .blue)
        #expect(H2rpc_Fixture_Color(rawValue: 99).rawValue == 99)
        #expect(H2rpc_Fixture_Color.allCases == [.unspecified, .red, .green, .blue])
        #expect(Envelope.Kind() == .unspecified)
    }

    @Test(arguments: [
        [0xFF, 0xFF, 0xFF] as [UInt8],  // bad tag varint
        [0x0A, 0x05, 0x61],  // length beyond the end
        [0x12, 0x03, 0xFF, 0xFF, 0xFF],  // sub-message with a bad tag
        [0x0B],  // start-group wire type
    ])
    func garbageThrows(bytes: [UInt8]) {
        #expect(throws: (any Error).self) {
            try bytes.withUnsafeBytes { try Envelope(serializedBytes: $0) }
        }
    }

    @Test func largeBytesField() throws {
        let big = pattern(300_000, multiplier: 31, offset: 0)
        let message = Envelope(body: .blob(big), maybeData: big)
        #expect(try roundTrip(message) == message)
    }

    /// A message whose only field is a singular bytes field is encoded and decoded without
    /// protobuf-c; the result must be exactly protobuf-c's (canonical tag and length).
    @Test func singleBytesFieldMessagesSkipProtobufC() throws {
        let big = pattern(70_000, multiplier: 13, offset: 0)
        let cases: [(any RPCMessage, [UInt8])] = [
            (Envelope(body: .blob([1, 2, 3])), [0x62, 0x03, 1, 2, 3]),  // oneof member
            (Envelope(body: .blob([])), [0x62, 0x00]),  // set, even empty
            (Envelope(maybeData: [9]), [0xC2, 0x01, 0x01, 9]),  // proto3 optional, two-byte tag
            (Envelope(maybeData: []), [0xC2, 0x01, 0x00]),
            (Scalars(data: [7, 7]), [0x7A, 0x02, 7, 7]),  // implicit presence
            (Envelope(body: .blob(big)), [0x62, 0xF0, 0xA2, 0x04] + big),  // three-byte length
            (Labgallery_V1_UploadImageRequest(data: .chunk(big)), [0x12, 0xF0, 0xA2, 0x04] + big),
        ]
        for (message, wire) in cases {
            #expect(try message.serializedBytes() == wire)
        }
        func decode<M: RPCMessage>(_ type: M.Type, _ wire: [UInt8]) throws -> M {
            try wire.withUnsafeBytes { try M(serializedBytes: $0) }
        }
        #expect(try decode(Envelope.self, [0x62, 0x03, 1, 2, 3]) == Envelope(body: .blob([1, 2, 3])))
        #expect(try decode(Envelope.self, [0x62, 0x00]) == Envelope(body: .blob([])))
        #expect(try decode(Envelope.self, [0xC2, 0x01, 0x01, 9]) == Envelope(maybeData: [9]))
        #expect(try decode(Scalars.self, [0x7A, 0x02, 7, 7]) == Scalars(data: [7, 7]))
        #expect(try decode(Envelope.self, [0x62, 0xF0, 0xA2, 0x04] + big) == Envelope(body: .blob(big)))
        #expect(try decode(Labgallery_V1_UploadImageRequest.self, [0x12, 0xF0, 0xA2, 0x04] + big).data == .chunk(big))
        // Non-canonical length varint: accepted, as protobuf-c does.
        #expect(try decode(Envelope.self, [0x62, 0x83, 0x00, 1, 2, 3]) == Envelope(body: .blob([1, 2, 3])))
        // Anything else goes through protobuf-c: a repeated field (last wins), a string field,
        // a length past the end, trailing bytes.
        #expect(try decode(Envelope.self, [0x62, 0x01, 9, 0x62, 0x01, 8]) == Envelope(body: .blob([8])))
        #expect(try decode(Envelope.self, [0x5A, 0x02, 0x68, 0x69]) == Envelope(body: .note("hi")))
        #expect(throws: (any Error).self) { try decode(Envelope.self, [0x62, 0x05, 1, 2]) }
        #expect(throws: (any Error).self) { try decode(Envelope.self, [0x62, 0x01, 1, 0xFF]) }
        // Another field set: protobuf-c path. A negative zero float is not written (protobuf-c
        // tests `== 0`), so it does not count as set.
        let mixed = Scalars(real32: 1.5, data: [1])
        #expect(mixed.serializedBytes() == [0x65, 0x00, 0x00, 0xC0, 0x3F, 0x7A, 0x01, 0x01])
        #expect(try roundTrip(mixed) == mixed)
        #expect(Scalars(real32: -0.0, real64: -0.0, data: [1]).serializedBytes() == [0x7A, 0x01, 0x01])
        #expect(try roundTrip(Envelope(body: .blob([1]), maybeData: [2])) == Envelope(body: .blob([1]), maybeData: [2]))
        #expect(
            try roundTrip(Labgallery_V1_UploadImageRequest(data: .header(.init(gallery: "g")))).data
                == .header(.init(gallery: "g")))
    }

    /// `serialize(into:)` writes exactly what `serializedBytes()` returns, into the caller's memory.
    @Test func serializeIntoMatchesSerializedBytes() throws {
        let messages: [any RPCMessage] = [
            Self.envelope, Self.scalars, Envelope(), Item(name: "a", count: 1), Envelope(body: .blob([1, 2])),
            Labgallery_V1_UploadImageRequest(data: .chunk([UInt8](repeating: 3, count: 100_000))),
        ]
        for message in messages {
            var sizes: [Int] = []
            let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 200_000, alignment: 8)
            defer { storage.deallocate() }
            try message.serialize { size in
                sizes.append(size)
                return UnsafeMutableRawBufferPointer(rebasing: storage[0..<size])
            }
            let expected = try message.serializedBytes()
            #expect(sizes == [expected.count])
            #expect([UInt8](storage[0..<expected.count]) == expected)
        }
    }

    /// Large bytes messages through the HTTP/2 transports: encoded into shim buffers, sent by
    /// reference, assembled, handed over and decoded without protobuf-c.
    @Test(arguments: [TransportKind.http2, .http2OnLoop])
    func largeBytesMessagesOverHTTP2(kind: TransportKind) async throws {
        let h = try Harness(kind, services: [FixtureService()])
        let client = H2rpc_Fixture_FixtureService.Client(wrapping: h.client)
        let sizes = [0, 1, 16_383, 16_384, 70_000, 1 << 20, (3 << 20) + 7]
        for size in sizes {
            let blob = pattern(size, multiplier: 7, offset: size)
            #expect(try await client.echo(Envelope(body: .blob(blob))).body == .blob(blob))
        }
        let chat = client.chat()
        var replies = chat.makeAsyncIterator()
        for size in sizes + sizes.reversed() {
            let blob = pattern(size, multiplier: 3, offset: size)
            try await chat.send(Envelope(maybeData: blob))
            #expect(try await replies.next()?.maybeData == blob)
        }
        chat.finish()
        #expect(try await replies.next() == nil)
        await h.stop()
    }

    @Test func serviceRegistersEveryMethod() {
        var router = RPCRouter()
        FixtureService().registerMethods(with: &router)
        #expect(
            Set(router.methods.map(\.path)) == [
                "/h2rpc.fixture.FixtureService/Echo", "/h2rpc.fixture.FixtureService/Delete",
                "/h2rpc.fixture.FixtureService/List", "/h2rpc.fixture.FixtureService/Upload",
                "/h2rpc.fixture.FixtureService/Chat",
            ])
        #expect(H2rpc_Fixture_FixtureService.descriptorName == "h2rpc.fixture.FixtureService")
        #expect(H2rpc_Fixture_FixtureService.Method.echo.path == "/h2rpc.fixture.FixtureService/Echo")
        #expect(
            Grpc_Testing_TestService.Method.unaryCall
                == MethodDescriptor(service: "grpc.testing.TestService", method: "UnaryCall"))
        #expect(Grpc_Health_V1_HealthCheckResponse.ServingStatus.serviceUnknown.rawValue == 3)
    }

    /// Encodes in Swift, decodes in Python (and the reverse): both sides build the same
    /// message and compare. Fails (not skips) when python3 or its protobuf package is missing.
    @Test func wireCompatibleWithPythonProtobuf() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("h2rpc-codec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }

        try await run([
            "python3", "-m", "grpc_tools.protoc", "-I", root.appendingPathComponent("Protos").path,
            "--python_out=\(tmp.path)", "h2rpc/fixture/fixture.proto",
        ])
        let fromSwift = tmp.appendingPathComponent("from-swift.bin")
        let fromPython = tmp.appendingPathComponent("from-python.bin")
        try Data(Self.envelope.serializedBytes()).write(to: fromSwift)
        let script = tmp.appendingPathComponent("check.py")
        try Self.pythonScript.write(to: script, atomically: true, encoding: .utf8)
        try await run(["python3", script.path, tmp.path, fromSwift.path, fromPython.path])

        let pythonBytes = [UInt8](try Data(contentsOf: fromPython))
        let decoded = try pythonBytes.withUnsafeBytes { try Envelope(serializedBytes: $0) }
        #expect(decoded == Self.envelope)
    }

    // MARK: maps, unknown fields, strings, recursion

    typealias Maps = H2rpc_Fixture_Maps
    typealias ItemV2 = H2rpc_Fixture_ItemV2
    typealias Node = H2rpc_Fixture_Node

    static let maps = Maps(
        labels: ["a": "x", "": "empty key", "ünï": ""],
        items: [1: Item(name: "one", count: 1), -7: Item(), Int32.max: Item(name: "max")],
        blobs: ["b": [0, 1, 255], "none": []],
        colors: [0: .red, UInt64.max: .UNRECOGNIZED(77)],
        flags: [-1: true, 0: false, Int64.min: true],
        note: "n"
    )

    static let itemV2 = ItemV2(
        name: "v2", count: 5, tags: ["t1", "", "t3"], inner: Item(name: "in", count: -1),
        f32: 0xCAFE_BABE, f64: 1, big: Int64.min)

    /// A chain of nodes `levels` sub-messages deep below the root ("0" … "levels").
    static func chain(_ levels: Int) -> Node {
        var node = Node(name: "\(levels)")
        for level in stride(from: levels - 1, through: 0, by: -1) { node = Node(name: "\(level)", child: node) }
        return node
    }

    private func decode<M: RPCMessage>(_ type: M.Type, _ wire: [UInt8]) throws -> M {
        try wire.withUnsafeBytes { try M(serializedBytes: $0) }
    }

    /// Expects `wire` to be rejected as malformed: the bridge's decoding error, the one
    /// protobuf-c rejections give (the server answers it as it does any undecodable message).
    private func expectMalformed<M: RPCMessage>(
        _ type: M.Type, _ wire: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try decode(type, wire)
            Issue.record("decoded malformed bytes \(wire.prefix(32))", sourceLocation: sourceLocation)
        } catch {
            #expect(
                String(describing: error).hasPrefix("invalid protobuf encoding of \(M.self)"),
                sourceLocation: sourceLocation)
        }
    }

    /// A string field's bad contents: INVALID_ARGUMENT naming the field's path.
    private func expectBadString<M: RPCMessage>(
        _ type: M.Type, _ wire: [UInt8], field: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try decode(type, wire)
            Issue.record("decoded a bad string \(wire.prefix(32))", sourceLocation: sourceLocation)
        } catch {
            // ProtobufDecodingError, seen as the core sees it.
            let e = (error as? any RPCErrorConvertible)?.rpcError
            #expect(e?.code == .invalidArgument, sourceLocation: sourceLocation)
            #expect(
                String(describing: error) == "field '\(field)' of \(M.self) is not valid UTF-8 or contains NUL",
                sourceLocation: sourceLocation)
        }
    }

    @Test func mapFieldsRoundTripAsDictionaries() throws {
        #expect(try roundTrip(Self.maps) == Self.maps)
        #expect(Maps().serializedBytes() == [])
        #expect(Maps(labels: [:], note: "").serializedBytes() == [])
        // One entry: tag 1, entry { key "k", value "v" }.
        #expect(Maps(labels: ["k": "v"]).serializedBytes() == [0x0A, 0x06, 0x0A, 0x01, 0x6B, 0x12, 0x01, 0x76])
        // A key twice: the last value wins; an entry without key or value gets the defaults.
        let twice: [UInt8] = [
            0x0A, 0x06, 0x0A, 0x01, 0x6B, 0x12, 0x01, 0x31, 0x0A, 0x06, 0x0A, 0x01, 0x6B, 0x12, 0x01, 0x32,
        ]
        #expect(try decode(Maps.self, twice).labels == ["k": "2"])
        #expect(try decode(Maps.self, [0x0A, 0x00, 0x12, 0x00]) == Maps(labels: ["": ""], items: [0: Item()]))
        // Maps inside a recursive message.
        let tree = Node(named: ["left": Node(name: "l"), "right": Node(named: ["deeper": Node(payload: [1])])])
        #expect(try roundTrip(tree) == tree)
    }

    @Test func unknownFieldsArePreservedAndReEmitted() throws {
        let wire = Self.itemV2.serializedBytes()
        let old = try decode(Item.self, wire)
        #expect(old.name == "v2" && old.count == 5)
        #expect(!old.unknownFields.isEmpty)
        // protobuf-c writes known fields in number order, then the unknown ones: the same bytes.
        #expect(old.serializedBytes() == wire)
        #expect(try decode(ItemV2.self, old.serializedBytes()) == Self.itemV2)
        // Changing a known field keeps the unknown ones.
        var renamed = old
        renamed.name = "renamed"
        var expected = Self.itemV2
        expected.name = "renamed"
        #expect(try decode(ItemV2.self, renamed.serializedBytes()) == expected)
        // A message without fields keeps everything; serialize(into:) writes them too.
        let nothing = try decode(H2rpc_Fixture_Nothing.self, Self.envelope.serializedBytes())
        #expect(nothing != H2rpc_Fixture_Nothing())
        #expect(try decode(Envelope.self, nothing.serializedBytes()) == Self.envelope)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { storage.deallocate() }
        var size = 0
        try nothing.serialize { count in
            size = count
            return UnsafeMutableRawBufferPointer(rebasing: storage[0..<count])
        }
        #expect([UInt8](storage[0..<size]) == nothing.serializedBytes())
        // Nested: an Item inside an Envelope, and a message whose only known field is bytes
        // (the direct bytes path must not drop the unknown ones).
        let nested: [UInt8] = [0x1A, UInt8(wire.count)] + wire
        let envelope = try decode(Envelope.self, nested)
        #expect(envelope.items.first?.unknownFields == old.unknownFields)
        #expect(envelope.serializedBytes() == nested)
        // body.blob + unknown field 127 = 5
        let withBlob = try decode(Envelope.self, [0x62, 0x01, 7, 0xF8, 0x07, 0x05])
        #expect(withBlob.body == .blob([7]) && withBlob.unknownFields == [0xF8, 0x07, 0x05])
        #expect(withBlob.serializedBytes() == [0x62, 0x01, 7, 0xF8, 0x07, 0x05])
        // Unknown fields count for equality, as in swift-protobuf.
        #expect(Item(name: "v2", count: 5) != old)
    }

    @Test(arguments: [
        [0xFF] as [UInt8],  // not UTF-8
        [0x61, 0x00, 0x62],  // NUL inside
        [0x00],  // NUL alone
        [0xC0, 0x80],  // overlong NUL
        [0xE0, 0x80, 0xAF],  // overlong '/'
        [0xED, 0xA0, 0x80],  // surrogate
        [0xF4, 0x90, 0x80, 0x80],  // past U+10FFFF
        [0xE2, 0x82],  // truncated sequence
        [0x80],  // lone continuation byte
    ])
    func stringsThatAreNotUTF8OrHoldNULAreInvalidNamingTheField(text: [UInt8]) {
        let field: (UInt8, [UInt8]) -> [UInt8] = { tag, contents in [tag, UInt8(contents.count)] + contents }
        expectBadString(Item.self, field(0x0A, text), field: "name")  // singular
        expectBadString(Scalars.self, [0x92, 0x02, UInt8(text.count)] + text, field: "r_text")  // repeated
        expectBadString(Envelope.self, field(0x0A, field(0x0A, text)), field: "header.id")  // nested
        expectBadString(Envelope.self, field(0x5A, text), field: "note")  // oneof member
        expectBadString(Envelope.self, [0xA2, 0x01, UInt8(text.count)] + text, field: "maybe_text")  // proto3 optional
        expectBadString(Maps.self, field(0x0A, field(0x0A, text)), field: "labels.key")  // map key
        expectBadString(Maps.self, field(0x0A, field(0x12, text)), field: "labels.value")  // map value
        expectBadString(Node.self, field(0x12, field(0x12, field(0x0A, text))), field: "child.child.name")  // deep
    }

    @Test func unknownFieldsPastTheLimitAreRefusedBeforeUnpacking() throws {
        // Field 15 (unknown to Item), varint 0: two bytes each.
        let unknown: (Int) -> [UInt8] = { n in (0..<n).flatMap { _ in [0x78, 0x00] as [UInt8] } }
        let limit = RPCMessageLimits.maxUnknownFields
        #expect(throws: Never.self) { try decode(Item.self, unknown(limit)) }
        do {
            _ = try decode(Item.self, unknown(limit + 1))
            Issue.record("decoded more unknown fields than the limit")
        } catch {
            let e = (error as? any RPCErrorConvertible)?.rpcError
            #expect(e?.code == .resourceExhausted)
            #expect(e?.message.contains("more than \(limit) unknown fields") == true)
        }
        // Unknown fields inside a sub-message count too: header (field 1 of Envelope) holding them.
        let inner = unknown(limit / 2 + 1)
        var wire: [UInt8] = []
        for _ in 0..<2 {
            var length = inner.count
            var prefix: [UInt8] = [0x0A]
            while length >= 0x80 {
                prefix.append(UInt8(length & 0x7F) | 0x80)
                length >>= 7
            }
            prefix.append(UInt8(length))
            wire += prefix + inner
        }
        #expect { try decode(Envelope.self, wire) } throws: {
            ($0 as? any RPCErrorConvertible)?.rpcError.code == .resourceExhausted
        }
    }

    @Test func validUTF8StringsDecode() throws {
        for text in ["", "a", "é", "€", "𝄞 ✓", "\u{10FFFF}", "\u{FEFF}x"] {
            #expect(try decode(Item.self, Item(name: text).serializedBytes()).name == text)
            #expect(try roundTrip(Maps(labels: [text: text])) == Maps(labels: [text: text]))
        }
        // Bytes fields may hold anything.
        #expect(try decode(Envelope.self, [0x62, 0x02, 0x00, 0xFF]).body == .blob([0x00, 0xFF]))
    }

    /// The wire form of `levels` nested length-delimited fields, level `i` with tag
    /// `tags[i % tags.count]` (default `Node.child`), built in linear time.
    static func nestedChildren(_ levels: Int, tags: [UInt8] = [0x12]) -> [UInt8] {
        var lengths = [Int](repeating: 0, count: levels + 1)
        for level in stride(from: levels - 1, through: 0, by: -1) {
            let inner = lengths[level + 1]
            var size = 1
            var v = inner
            while v >= 0x80 {
                v >>= 7
                size += 1
            }
            lengths[level] = 1 + size + inner
        }
        var wire: [UInt8] = []
        wire.reserveCapacity(lengths[0])
        for level in 0..<levels {
            wire.append(tags[level % tags.count])
            var v = lengths[level + 1]
            while v >= 0x80 {
                wire.append(UInt8(v & 0x7F) | 0x80)
                v >>= 7
            }
            wire.append(UInt8(v))
        }
        return wire
    }

    @Test func recursionIsAllowedToDepth100() throws {
        let deepest = Self.chain(ProtobufLimits.depth)
        #expect(try roundTrip(deepest) == deepest)
        expectMalformed(Node.self, Self.chain(ProtobufLimits.depth + 1).serializedBytes())
        #expect(try decode(Node.self, Self.nestedChildren(100)) != Node())
        expectMalformed(Node.self, Self.nestedChildren(101))
        // Far deeper: rejected, never a stack overflow (protobuf-c's unpack is recursive).
        expectMalformed(Node.self, Self.nestedChildren(1_000_000))
        // Through the oneof (an indirect enum) and through map entries (each entry is a level).
        #expect(try decode(Node.self, Self.nestedChildren(100, tags: [0x2A])) != Node())
        expectMalformed(Node.self, Self.nestedChildren(101, tags: [0x2A]))
        #expect(try decode(Node.self, Self.nestedChildren(100, tags: [0x22, 0x12])) != Node())  // named: entry.value: …
        expectMalformed(Node.self, Self.nestedChildren(101, tags: [0x22, 0x12]))
        expectMalformed(Node.self, Self.nestedChildren(500_000, tags: [0x22, 0x12]))
        var node = Node(name: "leaf")
        for _ in 0..<50 { node = Node(named: ["k": node]) }  // 100 levels with the entries
        #expect(try roundTrip(node) == node)
        expectMalformed(Node.self, Node(named: ["k": node]).serializedBytes())  // 102
    }

    /// Maps, unknown fields and deep nesting against Python's protobuf (upb), the reference:
    /// Python encodes, Swift decodes and re-encodes, Python checks what Swift wrote; Python
    /// also rejects the nesting Swift rejects.
    @Test func mapsUnknownFieldsAndDepthMatchPythonProtobuf() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("h2rpc-codec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        try await run([
            "python3", "-m", "grpc_tools.protoc", "-I", root.appendingPathComponent("Protos").path,
            "--python_out=\(tmp.path)", "h2rpc/fixture/fixture.proto",
        ])
        let script = tmp.appendingPathComponent("features.py")
        try Self.featuresScript.write(to: script, atomically: true, encoding: .utf8)
        try await run(["python3", script.path, tmp.path, "make"])
        func read(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: tmp.appendingPathComponent(name))) }
        func write(_ name: String, _ bytes: [UInt8]) throws {
            try Data(bytes).write(to: tmp.appendingPathComponent(name))
        }

        let maps = try decode(Maps.self, try read("maps.bin"))
        #expect(maps == Self.maps)
        try write("swift-maps.bin", maps.serializedBytes())
        let item = try decode(Item.self, try read("itemv2.bin"))
        #expect(item.name == "v2" && !item.unknownFields.isEmpty)
        try write("swift-item.bin", item.serializedBytes())
        let deep = try decode(Node.self, try read("deep100.bin"))
        #expect(deep == Self.chain(100))
        try write("swift-deep.bin", deep.serializedBytes())
        expectMalformed(Node.self, try read("deep101.bin"))
        try await run(["python3", script.path, tmp.path, "check"])
    }

    static let featuresScript = #"""
        import os, sys
        sys.path.insert(0, sys.argv[1])
        from h2rpc.fixture import fixture_pb2 as f
        d, step = sys.argv[1], sys.argv[2]

        maps = f.Maps(note="n")
        maps.labels.update({"a": "x", "": "empty key", "ünï": ""})
        maps.items[1].CopyFrom(f.Item(name="one", count=1)); maps.items[-7].CopyFrom(f.Item())
        maps.items[2**31 - 1].CopyFrom(f.Item(name="max"))
        maps.blobs.update({"b": bytes([0, 1, 255]), "none": b""})
        maps.colors.update({0: f.COLOR_RED, 2**64 - 1: 77})
        maps.flags.update({-1: True, 0: False, -(2**63): True})
        item = f.ItemV2(name="v2", count=5, tags=["t1", "", "t3"], inner=f.Item(name="in", count=-1),
                        f32=0xCAFEBABE, f64=1, big=-(2**63))

        def chain(levels):
            root = f.Node(name="0"); node = root
            for level in range(1, levels + 1):
                node.child.name = str(level); node = node.child
            return root

        def path(name): return os.path.join(d, name)
        def parse(cls, name):
            m = cls()
            with open(path(name), "rb") as fh: m.ParseFromString(fh.read())
            return m

        if step == "make":
            for name, m in [("maps.bin", maps), ("itemv2.bin", item), ("deep100.bin", chain(100)), ("deep101.bin", chain(101))]:
                with open(path(name), "wb") as fh: fh.write(m.SerializeToString())
            parse(f.Node, "deep100.bin")
            try:
                parse(f.Node, "deep101.bin")
                sys.exit("python accepted 101 levels: the reference limit changed")
            except Exception:
                pass
        else:
            for cls, name, expected in [(f.Maps, "swift-maps.bin", maps), (f.ItemV2, "swift-item.bin", item),
                                        (f.Node, "swift-deep.bin", chain(100))]:
                got = parse(cls, name)
                if got != expected:
                    sys.exit("%s differs:\n--- got\n%s\n--- expected\n%s" % (name, got, expected))
        """#

    /// Runs a command to its end without blocking a cooperative thread (the process's exit is an event).
    private func run(_ arguments: [String]) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let errorsURL = FileManager.default.temporaryDirectory.appendingPathComponent(
            "codec-\(UUID().uuidString).stderr")
        _ = FileManager.default.createFile(atPath: errorsURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorsURL) }
        process.standardError = try FileHandle(forWritingTo: errorsURL)
        let exited = AsyncStream<Void> { continuation in
            process.terminationHandler = { _ in
                continuation.yield()
                continuation.finish()
            }
        }
        try process.run()
        for await _ in exited { break }
        let stderr = (try? Data(contentsOf: errorsURL)) ?? Data()
        #expect(
            process.terminationStatus == 0,
            "\(arguments.joined(separator: " ")) failed: \(String(decoding: stderr, as: UTF8.self))")
        if process.terminationStatus != 0 { throw CancellationError() }
    }

    static let pythonScript = #"""
        import sys
        sys.path.insert(0, sys.argv[1])
        from h2rpc.fixture import fixture_pb2 as f
        from google.protobuf import empty_pb2

        E = f.Envelope
        s = f.Scalars(
            i32=-123456, i64=-(2**63), u32=2**32 - 1, u64=2**64 - 1,
            s32=-7, s64=-9000000000, f32=0xDEADBEEF, f64=0x0123456789ABCDEF,
            sf32=-(2**31), sf64=-1, flag=True, real32=1.5, real64=-2.25,
            text="héllo, wörld ✓", data=bytes([0, 1, 2, 255, 0]), color=f.COLOR_GREEN,
            r_i32=[1, -2, 2**31 - 1], r_i64=[2**63 - 1, -3], r_u32=[0, 7], r_u64=[2**64 - 1, 1],
            r_s32=[-1, 1], r_s64=[-5, 5], r_f32=[9], r_f64=[10, 11], r_sf32=[-12], r_sf64=[13, -14],
            r_flag=[True, False, True], r_real32=[0.5, -0.25], r_real64=[1e100, -0.0],
            r_text=["", "a", "ünïcode"], r_data=[b"", b"\x01", b"\x02\x03"],
            r_color=[f.COLOR_RED, f.BLUE, f.COLOR_UNSPECIFIED],
        )
        expected = E(
            header=E.Header(id="h-1", kind=E.KIND_COMPLEX_THING, trace=E.Header.Trace(span=42)),
            scalars=s,
            items=[f.Item(name="x", count=1), f.Item(), f.Item(name="z", count=-3)],
            headers=[E.Header(id="a"), E.Header(kind=E.KIND_SIMPLE)],
            item=f.Item(name="in-oneof", count=9),
            maybe_text="", maybe_int=0, maybe_flag=False, maybe_color=f.COLOR_UNSPECIFIED, maybe_data=b"",
            nothing=empty_pb2.Empty(),
        )
        got = E()
        with open(sys.argv[2], "rb") as fh:
            got.ParseFromString(fh.read())
        if got != expected:
            sys.exit("Swift-encoded message differs:\n--- got\n%s\n--- expected\n%s" % (got, expected))
        for name in ["maybe_text", "maybe_int", "maybe_flag", "maybe_color", "maybe_data", "header", "nothing"]:
            if not got.HasField(name):
                sys.exit("presence of %s lost" % name)
        if got.WhichOneof("body") != "item":
            sys.exit("oneof member lost: %s" % got.WhichOneof("body"))
        with open(sys.argv[3], "wb") as fh:
            fh.write(expected.SerializeToString())
        """#
}

/// Protobuf's limits the bridge enforces.
enum ProtobufLimits {
    /// Sub-message nesting below the top-level message that decoding accepts.
    static let depth = 100
}

/// Compile-time check of the generated service protocol and client shapes.
struct FixtureService: H2rpc_Fixture_FixtureService.ServiceProtocol {
    func echo(request: H2rpc_Fixture_Envelope, context: ServerContext) async throws -> H2rpc_Fixture_Envelope {
        request
    }
    func delete(request: H2rpc_Fixture_Item, context: ServerContext) async throws -> Google_Protobuf_Empty { .init() }
    func list(request: H2rpc_Fixture_Item, response: ResponseWriter<H2rpc_Fixture_Item>, context: ServerContext)
        async throws
    {
        try await response.write(request)
    }
    func upload(requests: RequestStream<H2rpc_Fixture_Item>, context: ServerContext) async throws
        -> H2rpc_Fixture_Envelope
    {
        var items: [H2rpc_Fixture_Item] = []
        for try await item in requests { items.append(item) }
        return .init(items: items)
    }
    func chat(
        requests: RequestStream<H2rpc_Fixture_Envelope>, response: ResponseWriter<H2rpc_Fixture_Envelope>,
        context: ServerContext
    ) async throws {
        for try await message in requests { try await response.write(message) }
    }
}

/// Never called: type-checks every client stub shape.
func fixtureClientShapes(_ client: H2rpc_Fixture_FixtureService.Client) async throws {
    let _: H2rpc_Fixture_Envelope = try await client.echo(
        .init(), metadata: ["k": .string("v")], options: .init(timeout: .seconds(1)))
    let _: Google_Protobuf_Empty = try await client.delete(.init())
    let list: ClientCall<H2rpc_Fixture_Item, H2rpc_Fixture_Item> = try await client.list(.init())
    for try await _ in list {}
    let upload = client.upload()
    try await upload.send(.init(name: "a"))
    upload.finish()
    let _: H2rpc_Fixture_Envelope = try await upload.response()
    let chat: ClientCall<H2rpc_Fixture_Envelope, H2rpc_Fixture_Envelope> = client.chat(metadata: [:])
    chat.finish()
}

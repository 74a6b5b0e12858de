import CH2Shim
import Testing

@testable import H2RPC
@testable import H2RPCNGHTTP2Transport

@Suite struct CoreTypesTests {
    @Test func statusCodesCoverZeroToSixteen() {
        #expect(Status.Code.allCases.map(\.rawValue) == Array(0...16))
        #expect(Status.Code(wireValue: 99) == .unknown)
        #expect(Status.Code.deadlineExceeded.description == "DEADLINE_EXCEEDED")
    }

    @Test func percentEncodingRoundTrips() {
        let message = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n 100%"
        let encoded = PercentEncoding.encode(message)
        #expect(!encoded.contains("☺"))
        #expect(encoded.contains("%25"))
        #expect(PercentEncoding.decode(Array(encoded.utf8)) == message)
        #expect(PercentEncoding.encode("plain") == "plain")
        // A malformed escape is kept as it is.
        #expect(PercentEncoding.decode(Array("50%zz".utf8)) == "50%zz")
    }

    @Test func grpcMessageIsCappedAtACharacterBoundary() {
        let cap = PercentEncoding.maxEncodedMessage
        #expect(cap == 8 * 1024)
        // Plain text at the cap goes out as it is; one byte more is cut and marked.
        let exact = String(repeating: "a", count: cap)
        #expect(PercentEncoding.encode(exact) == exact)
        let long = PercentEncoding.encode(String(repeating: "a", count: 70_000))
        #expect(long.utf8.count <= cap)
        #expect(long.hasSuffix("%E2%80%A6"))
        #expect(PercentEncoding.decode(Array(long.utf8)) == String(repeating: "a", count: cap - 9) + "…")
        // Escapes and multi-byte characters are never split, whatever the offset.
        for pad in 0..<4 {
            let message = String(repeating: "x", count: pad) + String(repeating: "ä%😈", count: 3000)
            let encoded = PercentEncoding.encode(message)
            #expect(encoded.utf8.count <= cap)
            let decoded = PercentEncoding.decode(Array(encoded.utf8))
            #expect(decoded.hasSuffix("…"))
            #expect(message.hasPrefix(String(decoded.dropLast())))
            #expect(!decoded.contains("\u{FFFD}"))
        }
        // A smaller limit behaves alike.
        #expect(PercentEncoding.encode("äää", limit: 15) == "%C3%A4%E2%80%A6")
    }

    @Test func base64AcceptsPaddedAndUnpadded() {
        let bytes: [UInt8] = [0xab, 0xab, 0xab]
        #expect(Base64.encode([0xab, 0xab], padded: false) == "q6s")
        #expect(Base64.encode([0xab, 0xab], padded: true) == "q6s=")
        #expect(Base64.decode(Array("q6s=".utf8)) == [0xab, 0xab])
        #expect(Base64.decode(Array("q6s".utf8)) == [0xab, 0xab])
        #expect(Base64.decode(Array(Base64.encode(bytes, padded: false).utf8)) == bytes)
        #expect(Base64.decode(Array("!!!".utf8)) == nil)
        for n in 0..<20 {
            let data = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            #expect(Base64.decode(Array(Base64.encode(data, padded: n % 2 == 0).utf8)) == data)
        }
    }

    @Test func binaryMetadataFromTheWire() throws {
        let raw = Array("q6urqw".utf8)
        let entry = raw.withUnsafeBufferPointer { Metadata.wireEntry(key: "x-grpc-test-echo-trailing-bin", value: $0) }
        #expect(entry?.value == .binary([0xab, 0xab, 0xab, 0xab]))
        let bad = Array("@@".utf8).withUnsafeBufferPointer { Metadata.wireEntry(key: "k-bin", value: $0) }
        #expect(bad == nil)
        #expect(Metadata.wireValue(.binary([0xab, 0xab])) == "q6s")
    }

    @Test func oneTableOfReservedHeaders() {
        for name in ReservedHeaders.names {
            #expect(ReservedHeaders.contains(name.description), "\(name)")
        }
        for name in [":path", ":status", ":x"] { #expect(ReservedHeaders.contains(name)) }
        for name in [
            "", "authorization", "user-agent", "x-bin", "grpc-previous-rpc-attempts", "tee", "hos", "grpc-statu",
        ] {
            #expect(!ReservedHeaders.contains(name), "\(name)")
        }
        var user = Metadata()
        user.add("te", "trailers")
        user.add("x-kept", "1")
        #expect(user.filter { !Metadata.isReserved($0.key) }.map(\.key) == ["x-kept"])
    }

    @Test func receivedNamesAreReservedLikeMetadataKeys() {
        let names = [
            "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-status",
            "grpc-message", "grpc-status-details-bin", "content-length", "connection", "transfer-encoding",
            "host", "keep-alive", "upgrade", "proxy-connection", ":path", ":x", "user-agent", "x-bin",
            "authorization", "grpc-previous-rpc-attempts", "tee", "hos", "x-grpc-test-echo-initial",
        ]
        for name in names {
            let bytes = Array(name.utf8)
            bytes.withUnsafeBufferPointer { b in
                let field = HeaderField(h2_nv(name: b.baseAddress, namelen: b.count, value: b.baseAddress, valuelen: 0))
                #expect(field.nameIsReserved == Metadata.isReserved(name), "\(name)")
                #expect(field.nameIsBinary == name.hasSuffix("-bin"), "\(name)")
            }
        }
    }

    @Test(arguments: [
        ("1H", Duration.seconds(3600)), ("2M", .seconds(120)), ("3S", .seconds(3)),
        ("4m", .milliseconds(4)), ("5u", .microseconds(5)), ("6n", .nanoseconds(6)),
        ("99999999S", .seconds(99_999_999)),
    ])
    func grpcTimeoutParsesEveryUnit(raw: String, expected: Duration) {
        #expect(GRPCTimeout.parse(Array(raw.utf8)) == expected)
    }

    @Test(arguments: ["", "1", "S", "1x", "123456789S", "-1S", "1.5S", " 1S"])
    func malformedGrpcTimeoutIsRejected(raw: String) {
        #expect(GRPCTimeout.parse(Array(raw.utf8)) == nil)
    }

    @Test func grpcTimeoutFormatsWithinEightDigits() {
        #expect(GRPCTimeout.format(.milliseconds(1500)) == "1500000u")
        #expect(GRPCTimeout.format(.seconds(10)) == "10000000u")
        #expect(GRPCTimeout.format(.seconds(1000)) == "1000000m")
        let long = GRPCTimeout.format(.seconds(86400 * 365))
        #expect(long.utf8.count <= 9)
        #expect(GRPCTimeout.parse(Array(long.utf8))! >= .seconds(86400 * 365))
    }
}

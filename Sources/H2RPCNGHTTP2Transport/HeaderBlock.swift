import CH2Shim
import H2RPC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A header block being built for the shim: names and values packed in one buffer.
/// `h2_send` copies it, so it only needs to live for the call.
struct HeaderBlock {
    private var bytes: [UInt8] = []
    private var spans: [(name: Int, nameLen: Int, value: Int, valueLen: Int)] = []

    init(capacity: Int = 128) {
        bytes.reserveCapacity(capacity)
        spans.reserveCapacity(8)
    }

    var isEmpty: Bool { spans.isEmpty }

    mutating func add(_ name: StaticString, _ value: StaticString) {
        let n = bytes.count
        bytes.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        let v = bytes.count
        bytes.append(contentsOf: UnsafeBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
        spans.append((n, name.utf8CodeUnitCount, v, value.utf8CodeUnitCount))
    }

    mutating func add(_ name: StaticString, _ value: String) {
        let n = bytes.count
        bytes.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        let v = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((n, name.utf8CodeUnitCount, v, bytes.count - v))
    }

    mutating func add(_ name: String, _ value: String) {
        let n = bytes.count
        bytes.append(contentsOf: name.utf8)
        let v = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((n, v - n, v, bytes.count - v))
    }

    /// Adds user metadata, leaving out the names the transport owns.
    mutating func add(metadata: Metadata) {
        for entry in metadata where !Metadata.isReserved(entry.key) {
            add(entry.key, Metadata.wireValue(entry.value))
        }
    }

    /// Calls `body` with the block as an `h2_nv` array (nil, 0 when empty).
    func withNV<R>(_ body: (UnsafePointer<h2_nv>?, Int) -> R) -> R {
        if spans.isEmpty { return body(nil, 0) }
        return bytes.withUnsafeBufferPointer { buf in
            withUnsafeTemporaryAllocation(of: h2_nv.self, capacity: spans.count) { nv in
                for (i, s) in spans.enumerated() {
                    nv[i] = h2_nv(
                        name: buf.baseAddress! + s.name, namelen: s.nameLen,
                        value: buf.baseAddress! + s.value, valuelen: s.valueLen)
                }
                return body(UnsafePointer(nv.baseAddress), spans.count)
            }
        }
    }
}

/// A received header field, valid during a shim callback.
struct HeaderField {
    let name: UnsafeBufferPointer<UInt8>
    let value: UnsafeBufferPointer<UInt8>

    init(_ nv: h2_nv) {
        name = UnsafeBufferPointer(start: nv.name, count: nv.namelen)
        value = UnsafeBufferPointer(start: nv.value, count: nv.valuelen)
    }

    @inline(__always)
    func nameIs(_ s: StaticString) -> Bool { HeaderField.equal(name, s) }

    @inline(__always)
    func valueIs(_ s: StaticString) -> Bool { HeaderField.equal(value, s) }

    @inline(__always)
    static func equal(_ buf: UnsafeBufferPointer<UInt8>, _ s: StaticString) -> Bool {
        guard buf.count == s.utf8CodeUnitCount else { return false }
        return buf.count == 0 || memcmp(buf.baseAddress!, s.utf8Start, buf.count) == 0
    }

    /// Whether the name is reserved (``ReservedHeaders``, the table user metadata is filtered by).
    var nameIsReserved: Bool { ReservedHeaders.contains(name) }

    /// Whether the name ends in `-bin` (a binary metadata value, base64 on the wire).
    var nameIsBinary: Bool {
        name.count >= 4 && memcmp(name.baseAddress! + name.count - 4, "-bin", 4) == 0
    }

    var nameString: String { String(decoding: name, as: UTF8.self) }
    var valueString: String { String(decoding: value, as: UTF8.self) }
}

@inline(__always)
func forEachHeader(_ nv: UnsafePointer<h2_nv>?, _ count: Int, _ body: (HeaderField) -> Void) {
    guard let nv else { return }
    for i in 0..<count { body(HeaderField(nv[i])) }
}

/// Parses the status of a trailers (or Trailers-Only) block.
func parseStatus(
    _ nv: UnsafePointer<h2_nv>?, _ count: Int
) -> (status: Status?, httpStatus: Int?, trailers: Metadata, encoding: String?) {
    var code: Int? = nil
    var message = ""
    var http: Int? = nil
    var encoding: String? = nil
    var trailers = Metadata()
    forEachHeader(nv, count) { h in
        if h.nameIs("grpc-status") {
            code = Int(h.valueString)
        } else if h.nameIs("grpc-message") {
            message = PercentEncoding.decode(h.value)
        } else if h.nameIs(":status") {
            http = Int(h.valueString)
        } else if h.nameIs("grpc-encoding") {
            if !h.valueIs("identity") { encoding = h.valueString }
        } else if let first = h.name.first, first != UInt8(ascii: ":") {
            let key = h.nameString
            if !Metadata.isReserved(key), let entry = Metadata.wireEntry(key: key, value: h.value) {
                trailers.append(entry)
            }
        }
    }
    let status = code.map { Status(code: Status.Code(wireValue: $0), message: message) }
    return (status, http, trailers, encoding)
}

/// grpc's HTTP-to-gRPC status mapping (http-grpc-status-mapping.md), for responses without grpc-status.
func statusForHTTP(_ http: Int) -> Status.Code {
    switch http {
    case 400: return .internal
    case 401: return .unauthenticated
    case 403: return .permissionDenied
    case 404: return .unimplemented
    case 429, 502, 503, 504: return .unavailable
    default: return .unknown
    }
}

/// The fields that open every gRPC response header block.
private let responseFields: [(StaticString, StaticString)] = [
    (":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity,deflate,gzip"),
]

extension HeaderBlock {
    /// A response header block holding the standard fields; custom metadata follows.
    static func responseHeaders() -> HeaderBlock {
        var block = HeaderBlock()
        for (name, value) in responseFields { block.add(name, value) }
        return block
    }
}

/// Header blocks every successful unary response repeats, built once.
enum StaticBlocks {
    /// The standard response fields (see `HeaderBlock.responseHeaders`).
    nonisolated(unsafe) static let responseHeaders = make(responseFields)
    /// `grpc-status 0`.
    nonisolated(unsafe) static let okTrailers = make([("grpc-status", "0")])
    // nonisolated(unsafe): written once by the lazy initializer (thread-safe), then only
    // read; the bytes are StaticString storage, immortal and immutable.

    private static func make(_ fields: [(StaticString, StaticString)]) -> UnsafeBufferPointer<h2_nv> {
        let nv = UnsafeMutableBufferPointer<h2_nv>.allocate(capacity: fields.count)
        for (i, f) in fields.enumerated() {
            nv[i] = h2_nv(
                name: f.0.utf8Start, namelen: f.0.utf8CodeUnitCount,
                value: f.1.utf8Start, valuelen: f.1.utf8CodeUnitCount)
        }
        return UnsafeBufferPointer(nv)
    }
}

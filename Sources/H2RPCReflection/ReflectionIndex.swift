import GeneratedProtos

/// The file descriptors a server's reflection serves, indexed by file name and by symbol, and
/// the names of the services it registered.
///
/// The descriptors are those `make generate` embedded (`GeneratedFileDescriptors`): every proto
/// file under Protos/ and the well-known types they import, as protoc serialized them.
struct ReflectionIndex: Sendable {
    /// The registered services' full names, sorted.
    let services: [String]
    private let files: [String: GeneratedFileDescriptors.File]
    private let bytes: [String: [UInt8]]
    private let fileOfSymbol: [String: String]

    init(services: [String], files source: [GeneratedFileDescriptors.File] = GeneratedFileDescriptors.files) {
        self.services = Array(Set(services)).sorted()
        var files: [String: GeneratedFileDescriptors.File] = [:]
        var bytes: [String: [UInt8]] = [:]
        var fileOfSymbol: [String: String] = [:]
        for file in source {
            files[file.name] = file
            bytes[file.name] = Base64.decode(file.base64)
            for symbol in file.symbols { fileOfSymbol[symbol] = file.name }
        }
        self.files = files
        self.bytes = bytes
        self.fileOfSymbol = fileOfSymbol
    }

    /// A reflection answer that is not a list of files.
    struct Failure: Error {
        /// A gRPC status code (`grpc::StatusCode`).
        let code: Int32
        let message: String
    }

    /// The file named `name` and every file it imports, directly or not (the file first).
    func file(named name: String) -> Result<[[UInt8]], Failure> {
        guard files[name] != nil else {
            return .failure(
                Failure(code: 5, message: "no file named '\(name)' (reflection knows \(files.count) files)"))
        }
        var order: [String] = []
        var seen: Set<String> = []
        var pending = [name]
        while let next = pending.popLast() {
            guard seen.insert(next).inserted, let file = files[next] else { continue }
            order.append(next)
            pending.append(contentsOf: file.dependencies.reversed())
        }
        return .success(order.compactMap { bytes[$0] })
    }

    /// The file that defines `symbol` (a service, method, message or enum, fully qualified,
    /// with or without a leading dot), with its imports.
    func file(containing symbol: String) -> Result<[[UInt8]], Failure> {
        let name = symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
        guard let file = fileOfSymbol[name] else {
            return .failure(Failure(code: 5, message: "no file defines the symbol '\(symbol)'"))
        }
        return self.file(named: file)
    }

    /// Whether `type` names a message reflection knows.
    func knowsType(_ type: String) -> Bool {
        fileOfSymbol[type.hasPrefix(".") ? String(type.dropFirst()) : type] != nil
    }
}

/// Standard base64 (RFC 4648, with padding), decoding only: the generated descriptors are
/// embedded as base64 string literals (cheap to compile, unlike large array literals).
enum Base64 {
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(c)] = UInt8(i)
        }
        return table
    }()

    /// The bytes of `text` (well-formed, as the generator writes it).
    static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count / 4 * 3)
        var buffer: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            let v = values[Int(c)]
            if v == 0xFF { continue }  // padding
            buffer = buffer << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        return out
    }
}

import CH2Shim
import H2RPC

/// A server's TLS certificates for ``H2ServerTransport``: the certificate chain and private key
/// (PEM files), and optionally a CA whose certificate every client must present (mTLS).
/// TLS 1.2 and 1.3, ALPN `h2` required.
///
/// Creating one and ``reload()`` read files: call them off Swift's cooperative pool (at startup,
/// or on a `BlockingExecutor`).
public final class H2TLSServerContext: @unchecked Sendable {
    // @unchecked: `raw` is set once; the shim's context is thread-safe (reload swaps under a lock).
    let raw: OpaquePointer
    /// The PEM certificate chain (leaf first).
    public let certificateFile: String
    /// The PEM private key of the leaf certificate.
    public let keyFile: String
    /// The PEM CA file client certificates are verified against; nil: no client certificates.
    public let clientCAFile: String?

    /// Loads the files; throws INVALID_ARGUMENT naming the file and OpenSSL's reason.
    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) throws {
        var err = [CChar](repeating: 0, count: 512)
        guard let raw = h2_tls_server_new(certificateFile, keyFile, clientCAFile, &err, err.count) else {
            throw RPCError(.invalidArgument, errorText(err))
        }
        self.raw = raw
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }

    /// Reads the same files again: connections accepted from now on use the new certificates,
    /// open ones keep theirs. On failure the old certificates stay and this throws why.
    public func reload() throws {
        var err = [CChar](repeating: 0, count: 512)
        if h2_tls_server_reload(raw, certificateFile, keyFile, clientCAFile, &err, err.count) != 0 {
            throw RPCError(.invalidArgument, errorText(err))
        }
    }

    deinit { h2_tls_release(raw) }
}

/// TLS for ``H2ClientTransport``: the server's certificate is verified against `caFile` (or the
/// system's trusted certificates) and must name the host (or `serverNameOverride`); with
/// `certificateFile` and `keyFile` the client presents its own certificate (mTLS).
public struct H2TLSClientConfiguration: Sendable, Equatable {
    /// PEM CA certificates to trust; nil: the system's store.
    public var caFile: String?
    /// The client's PEM certificate chain (mTLS); set together with `keyFile`.
    public var certificateFile: String?
    /// The client's PEM private key (mTLS).
    public var keyFile: String?
    /// The name the server's certificate must carry (and the SNI) instead of the host connected to.
    public var serverNameOverride: String?

    /// Creates a configuration.
    public init(
        caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
        serverNameOverride: String? = nil
    ) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverNameOverride = serverNameOverride
    }
}

/// The shim's client context made from an ``H2TLSClientConfiguration`` (reads its files).
final class H2TLSClientContext: @unchecked Sendable {
    // @unchecked: `raw` is set once and the shim's context is thread-safe.
    let raw: OpaquePointer

    init(_ configuration: H2TLSClientConfiguration) throws {
        var err = [CChar](repeating: 0, count: 512)
        guard
            let raw = h2_tls_client_new(
                configuration.caFile, configuration.certificateFile, configuration.keyFile, &err, err.count)
        else {
            throw RPCError(.invalidArgument, errorText(err))
        }
        self.raw = raw
    }

    deinit { h2_tls_release(raw) }
}

/// The NUL-terminated text the shim wrote into `buffer`.
private func errorText(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

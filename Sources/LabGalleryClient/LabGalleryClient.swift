import Foundation
import GeneratedProtos
import H2RPC
import H2RPCNGHTTP2Transport

/// A typed client of a LabGallery server, or of several instances of one (``Configuration/endpoints``).
///
/// Each endpoint has one HTTP/2 connection (h2c, or TLS with ``Configuration/useTLS``), shared by
/// the calls sent there, opened on the first call and re-established on the next call after it
/// drops. Authenticates every call with the bearer token, which it refuses to send in
/// cleartext to a host that is not loopback unless ``Configuration/allowInsecureToken`` is set. Methods take and return the library's own value types
/// (``Gallery``, ``Image``, ``ReplicationStatus``…), accept short names (see ``ResourceName``)
/// and throw only ``LabGalleryClientError``.
///
/// - Deadlines: every unary method takes `timeout` (nil: ``Configuration/defaultTimeout``);
///   it bounds the whole method, retries included.
/// - Cancellation: cancelling the calling task cancels the call (RST_STREAM); the method throws
///   `cancelled`.
/// - Retries: reads (Get/List, and re-opening a dropped watch stream) are retried on
///   `UNAVAILABLE` per ``RetryPolicy``; writes are never retried once sent (a write that may have
///   been applied surfaces its `UNAVAILABLE` to the caller).
/// - Several endpoints: calls are spread round-robin over the endpoints not known to be down. A
///   call whose endpoint could not be reached (connect refused or timed out, TLS handshake
///   failed, stream refused unprocessed) moves on to the next endpoint, whatever the method:
///   nothing reached a server. A call that fails `UNAVAILABLE` after it was sent moves on only
///   if it is a read (Get*/List*/status, watches); a write does not, since it may have been
///   applied before its instance died, and applying it twice (a second create, an enable after
///   a disable) is worse than the error. An endpoint that failed is skipped for
///   ``Configuration/endpointBackoff`` (doubling up to ``Configuration/maxEndpointBackoff``),
///   but tried when the others fail too. An upload from a file that reached no server is read
///   again for the next endpoint; one from a chunk sequence stays on its endpoint (the bytes
///   cannot be replayed). Errors after several endpoints name them.
///
/// ```swift
/// let client = try LabGalleryClient(endpoint: "127.0.0.1:50051", token: token)
/// let gallery = try await client.createGallery(id: "shared", displayName: "Shared", region: "westus2")
/// for try await status in client.watchReplication(image: "shared/ubuntu") { print(status.aggregatedState) }
/// ```
public final class LabGalleryClient: Sendable {
    /// How reads are retried on `UNAVAILABLE`: exponential backoff with jitter, capped.
    public struct RetryPolicy: Sendable, Hashable {
        /// Attempts in all, the first included (1 disables retries).
        public var maxAttempts: Int
        /// The wait before the first retry.
        public var initialBackoff: Duration
        /// The longest wait between attempts.
        public var maxBackoff: Duration

        /// Creates a policy.
        public init(
            maxAttempts: Int = 5, initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(2)
        ) {
            self.maxAttempts = max(1, maxAttempts)
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }

        /// The default: 5 attempts, 100 ms doubling up to 2 s.
        public static let `default` = RetryPolicy()
    }

    /// Where and how to connect.
    public struct Configuration: Sendable {
        /// The server instances to call (at least one): each gets its own connection, calls are
        /// spread over them and fail over between them (see ``LabGalleryClient``). A host name
        /// may resolve to several addresses: they are one endpoint, tried in order.
        public var endpoints: [Endpoint]
        /// The first endpoint's host name or address, or `unix:/path` for a Unix domain socket
        /// (setting it changes the first endpoint, or adds one on port 50051 if there is none).
        public var host: String {
            get { endpoints.first?.host ?? "" }
            set {
                if endpoints.isEmpty { endpoints = [Endpoint(host: newValue)] } else { endpoints[0].host = newValue }
            }
        }
        /// The first endpoint's port (unused for `unix:`; setting it changes the first endpoint,
        /// or adds one on 127.0.0.1 if there is none).
        public var port: Int {
            get { endpoints.first?.port ?? 0 }
            set {
                if endpoints.isEmpty {
                    endpoints = [Endpoint(host: "127.0.0.1", port: newValue)]
                } else {
                    endpoints[0].port = newValue
                }
            }
        }
        /// The bearer token sent as `authorization: Bearer <token>` (nil: none; only health works then).
        public var token: String?
        /// TLS (ALPN h2): the server's certificate is verified against `caFile` (or the system's
        /// trusted certificates) and must name `host`. Default false: cleartext h2c.
        public var useTLS: Bool
        /// With TLS: the PEM CA file to trust instead of the system's store.
        public var caFile: String?
        /// With TLS (mTLS): the client's PEM certificate chain; set together with `keyFile`.
        public var certificateFile: String?
        /// With TLS (mTLS): the client's PEM private key.
        public var keyFile: String?
        /// Send the token in cleartext to a host that is not loopback. Default false: the
        /// initializer throws `failedPrecondition` instead (anyone on the path could read it).
        public var allowInsecureToken: Bool
        /// The deadline of unary calls that pass no `timeout` (nil: none). Streams have none by default.
        public var defaultTimeout: Duration?
        /// How reads are retried.
        public var retryPolicy: RetryPolicy
        /// While calls are open (a watch, say) and nothing arrived for this long, the client sends
        /// an HTTP/2 PING; `.zero`: never. Default 5 minutes: the server's default minimum ping
        /// interval, so a quiet watch never collects ping strikes, and a silently dead connection
        /// is still noticed within minutes instead of never.
        public var keepaliveTime: Duration = .seconds(300)
        /// A PING unanswered this long: the connection is dead; its calls end with UNAVAILABLE
        /// and a watch re-opens on a new connection. Default 20 s.
        public var keepaliveTimeout: Duration = .seconds(20)
        /// How long one address may take to accept the connection before the next address of
        /// the host is tried. Default 2 s.
        public var connectTimeout: Duration = .seconds(2)
        /// How long an endpoint that failed (unreachable, or UNAVAILABLE) is skipped; each failure
        /// after it came back doubles it, up to ``maxEndpointBackoff``; an answer resets it.
        /// Default 1 s.
        public var endpointBackoff: Duration = .seconds(1)
        /// The longest an endpoint is skipped. Default 30 s.
        public var maxEndpointBackoff: Duration = .seconds(30)

        /// Creates a configuration for one endpoint, `host:port`.
        public init(
            host: String = "127.0.0.1", port: Int = 50051, token: String?, useTLS: Bool = false,
            defaultTimeout: Duration? = .seconds(30), retryPolicy: RetryPolicy = .default,
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
            allowInsecureToken: Bool = false
        ) {
            self.init(
                endpoints: [Endpoint(host: host, port: port)], token: token, useTLS: useTLS,
                defaultTimeout: defaultTimeout, retryPolicy: retryPolicy, caFile: caFile,
                certificateFile: certificateFile, keyFile: keyFile, allowInsecureToken: allowInsecureToken)
        }

        /// Creates a configuration for several endpoints (instances of one service); TLS and
        /// the token apply to all of them.
        public init(
            endpoints: [Endpoint], token: String?, useTLS: Bool = false,
            defaultTimeout: Duration? = .seconds(30), retryPolicy: RetryPolicy = .default,
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
            allowInsecureToken: Bool = false
        ) {
            self.endpoints = endpoints
            self.token = token
            self.useTLS = useTLS
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.allowInsecureToken = allowInsecureToken
            self.defaultTimeout = defaultTimeout
            self.retryPolicy = retryPolicy
        }
    }

    /// The configuration the client was created with.
    public let configuration: Configuration
    let pool: EndpointPool

    /// Creates a client; it connects lazily, on the first call to each endpoint. With TLS it
    /// reads the CA and certificate files here (a bad file throws `invalidArgument` naming it).
    /// Throws `invalidArgument` without endpoints, and `failedPrecondition` for a token that
    /// would cross the network in cleartext to any of them (see ``Configuration/allowInsecureToken``).
    public init(configuration: Configuration) throws(LabGalleryClientError) {
        let c = configuration
        guard !c.endpoints.isEmpty else {
            throw LabGalleryClientError(.invalidArgument, "no endpoint to connect to: give at least one host:port")
        }
        if !c.useTLS && (c.caFile != nil || c.certificateFile != nil || c.keyFile != nil) {
            throw LabGalleryClientError(.invalidArgument, "a CA file, client certificate or key needs TLS (--tls)")
        }
        if c.token != nil && !c.useTLS && !c.allowInsecureToken,
            let remote = c.endpoints.first(where: { !Self.isLoopback(host: $0.host) })
        {
            throw LabGalleryClientError(
                .failedPrecondition,
                "refusing to send the bearer token in cleartext to \(remote.host), which is not a loopback address: "
                    + "connect with TLS (--tls), or allow cleartext explicitly (--insecure)")
        }
        self.configuration = configuration
        let tls =
            c.useTLS
            ? H2TLSClientConfiguration(caFile: c.caFile, certificateFile: c.certificateFile, keyFile: c.keyFile) : nil
        var h2 = H2Configuration()
        h2.keepaliveTime = configuration.keepaliveTime
        h2.keepaliveTimeout = configuration.keepaliveTimeout
        h2.connectTimeout = configuration.connectTimeout
        let interceptors: [any ClientInterceptor] = configuration.token.map { [BearerToken(token: $0)] } ?? []
        var members: [EndpointPool.Member] = []
        for endpoint in c.endpoints {
            do {
                let transport = try H2ClientTransport(
                    host: endpoint.host, port: endpoint.port, configuration: h2, tls: tls)
                members.append(
                    .init(endpoint: endpoint, rpc: RPCClient(transport: transport, interceptors: interceptors)))
            } catch {
                throw LabGalleryClientError(error)
            }
        }
        pool = EndpointPool(
            members, initialBackoff: configuration.endpointBackoff, maxBackoff: configuration.maxEndpointBackoff)
    }

    /// Creates a client of `host:port` with `token`.
    public convenience init(host: String = "127.0.0.1", port: Int = 50051, token: String?) throws(LabGalleryClientError)
    {
        try self.init(configuration: Configuration(host: host, port: port, token: token))
    }

    /// Creates a client of `endpoint` (`host:port`, `[v6-address]:port`, `host` for port 50051, or
    /// `unix:/path`).
    public convenience init(endpoint: String, token: String?) throws(LabGalleryClientError) {
        let (host, port) = try Self.parseEndpoint(endpoint)
        try self.init(configuration: Configuration(host: host, port: port, token: token))
    }

    /// Creates a client of several `endpoints` (each in a form ``parseEndpoint(_:)`` accepts;
    /// a malformed one throws `invalidArgument` naming it), all with `token`.
    public convenience init(endpoints: [String], token: String?) throws(LabGalleryClientError) {
        var parsed: [Endpoint] = []
        for e in endpoints { parsed.append(try Endpoint(parsing: e)) }
        try self.init(configuration: Configuration(endpoints: parsed, token: token))
    }

    /// Whether `host` is this machine's loopback: `localhost` (or a name under `.localhost`), an
    /// address in 127.0.0.0/8, `::1`, an IPv4-mapped loopback address, or a `unix:` socket. Names
    /// are not resolved.
    public static func isLoopback(host: String) -> Bool {
        let name = host.lowercased()
        if name.hasPrefix("unix:") { return true }  // a socket on this machine: nothing crosses a network
        if name == "localhost" || name.hasSuffix(".localhost") { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, name, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }  // ::1
        return bytes[..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }

    /// Splits `host:port` or `[v6-address]:port` (port 50051 when omitted); `unix:/path` comes back
    /// whole as the host (port 0). Throws `invalidArgument` when malformed, and for a URL
    /// (`http://…`), saying what to write instead.
    public static func parseEndpoint(_ endpoint: String) throws(LabGalleryClientError) -> (host: String, port: Int) {
        if endpoint.hasPrefix("unix:") {
            guard endpoint.count > 5 else {
                throw LabGalleryClientError(
                    .invalidArgument, "endpoint \"\(endpoint)\": expected unix:/path/to/socket")
            }
            return (endpoint, 0)
        }
        if let scheme = endpoint.range(of: "://") {
            let name = endpoint[..<scheme.lowerBound].lowercased()
            var rest = endpoint[scheme.upperBound...]
            if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
            let tls = name == "https" || name == "grpcs"
            throw LabGalleryClientError(
                .invalidArgument,
                "endpoint \"\(endpoint)\": not a URL; write host:port (e.g. \(rest.isEmpty ? "127.0.0.1:50051" : String(rest))), "
                    + "[v6-address]:port or unix:/path\(tls ? ", and use --tls for TLS" : "; for TLS use --tls")")
        }
        var host = endpoint
        var port = 50051
        if endpoint.hasPrefix("[") {  // [::1]:50051
            guard let close = endpoint.firstIndex(of: "]") else {
                throw LabGalleryClientError(.invalidArgument, "endpoint \"\(endpoint)\": missing \"]\"")
            }
            host = String(endpoint[endpoint.index(after: endpoint.startIndex)..<close])
            let rest = endpoint[endpoint.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else {
                    throw LabGalleryClientError(.invalidArgument, "endpoint \"\(endpoint)\": expected [host]:port")
                }
                port = p
            }
        } else if let colon = endpoint.lastIndex(of: ":") {
            host = String(endpoint[..<colon])
            guard let p = Int(endpoint[endpoint.index(after: colon)...]) else {
                throw LabGalleryClientError(
                    .invalidArgument, "endpoint \"\(endpoint)\": the port is not a number (expected host:port)")
            }
            port = p
        }
        guard !host.isEmpty, (1...65535).contains(port) else {
            throw LabGalleryClientError(
                .invalidArgument, "endpoint \"\(endpoint)\": expected host:port with a port in 1-65535")
        }
        return (host, port)
    }

    /// Closes every connection; calls in flight end with `unavailable`. Later calls reconnect.
    public func close() { pool.close() }

    // MARK: - Lab accounts

    /// How `createLabAccount` gets its gallery.
    public enum GallerySetup: Sendable, Hashable {
        /// Create `galleries/{id}` in the account's region and attach it.
        case createNew(id: String, displayName: String = "")
        /// Attach an existing gallery (`galleries/{id}` or `{id}`).
        case attach(String)
    }

    /// `CreateLabAccount`: creates `labAccounts/{id}` in `region`, optionally with a gallery.
    public func createLabAccount(
        id: String, displayName: String = "", region: String, gallery: GallerySetup? = nil,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> LabAccount {
        var request = Labgallery_V1_CreateLabAccountRequest(
            labAccountId: id, labAccount: .init(displayName: displayName, region: region))
        switch gallery {
        case .createNew(let gid, let name)?: request.gallery = .createGallery(.init(galleryId: gid, displayName: name))
        case .attach(let name)?: request.gallery = .attachGallery(ResourceName.gallery(name))
        case nil: break
        }
        return LabAccount(
            try await write(timeout) { try await $0.labAccounts.createLabAccount(request, options: $1) })
    }

    /// `GetLabAccount`.
    public func getLabAccount(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError)
        -> LabAccount
    {
        let request = Labgallery_V1_GetLabAccountRequest(name: ResourceName.labAccount(name))
        return LabAccount(try await read(timeout) { try await $0.labAccounts.getLabAccount(request, options: $1) })
    }

    /// `ListLabAccounts`: one page.
    public func listLabAccounts(
        pageSize: Int = 0, pageToken: String? = nil,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Page<LabAccount> {
        let request = Labgallery_V1_ListLabAccountsRequest(
            pageSize: Int32(clamping: pageSize), pageToken: pageToken ?? "")
        let r = try await read(timeout) { try await $0.labAccounts.listLabAccounts(request, options: $1) }
        return Page(items: r.labAccounts.map(LabAccount.init), nextPageToken: nonEmpty(r.nextPageToken))
    }

    /// Every lab account (follows `next_page_token`; each page is a retried read).
    public func allLabAccounts(timeout: Duration? = nil) async throws(LabGalleryClientError) -> [LabAccount] {
        try await collect { (token) async throws(LabGalleryClientError) in
            try await self.listLabAccounts(pageToken: token, timeout: timeout)
        }
    }

    /// `DeleteLabAccount`.
    public func deleteLabAccount(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) {
        let request = Labgallery_V1_DeleteLabAccountRequest(name: ResourceName.labAccount(name))
        _ = try await write(timeout) { try await $0.labAccounts.deleteLabAccount(request, options: $1) }
    }

    // MARK: - Galleries

    /// `CreateGallery`: creates `galleries/{id}` in `region`, outside any lab account.
    public func createGallery(
        id: String, displayName: String = "", region: String,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Gallery {
        let request = Labgallery_V1_CreateGalleryRequest(
            galleryId: id, gallery: .init(displayName: displayName, region: region))
        return Gallery(try await write(timeout) { try await $0.galleries.createGallery(request, options: $1) })
    }

    /// `GetGallery`.
    public func getGallery(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) -> Gallery {
        let request = Labgallery_V1_GetGalleryRequest(name: ResourceName.gallery(name))
        return Gallery(try await read(timeout) { try await $0.galleries.getGallery(request, options: $1) })
    }

    /// `ListGalleries`: one page.
    public func listGalleries(
        pageSize: Int = 0, pageToken: String? = nil,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Page<Gallery> {
        let request = Labgallery_V1_ListGalleriesRequest(
            pageSize: Int32(clamping: pageSize), pageToken: pageToken ?? "")
        let r = try await read(timeout) { try await $0.galleries.listGalleries(request, options: $1) }
        return Page(items: r.galleries.map(Gallery.init), nextPageToken: nonEmpty(r.nextPageToken))
    }

    /// Every gallery (follows `next_page_token`).
    public func allGalleries(timeout: Duration? = nil) async throws(LabGalleryClientError) -> [Gallery] {
        try await collect { (token) async throws(LabGalleryClientError) in
            try await self.listGalleries(pageToken: token, timeout: timeout)
        }
    }

    /// `DeleteGallery` (refused while attached to a lab account).
    public func deleteGallery(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) {
        let request = Labgallery_V1_DeleteGalleryRequest(name: ResourceName.gallery(name))
        _ = try await write(timeout) { try await $0.galleries.deleteGallery(request, options: $1) }
    }

    /// `AttachGallery`: attaches `gallery` to `labAccount` (FAILED_PRECONDITION if one is attached).
    public func attachGallery(
        _ gallery: String, to labAccount: String,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> LabAccount {
        let request = Labgallery_V1_AttachGalleryRequest(
            labAccount: ResourceName.labAccount(labAccount), gallery: ResourceName.gallery(gallery))
        return LabAccount(try await write(timeout) { try await $0.galleries.attachGallery(request, options: $1) })
    }

    /// `DetachGallery`: the server refuses (INVALID_ARGUMENT) unless `confirm` is true. With
    /// `gallery` (the one the operator confirmed), the server detaches only that gallery: if another
    /// is attached by then, FAILED_PRECONDITION and nothing changes. `nil`: whatever is attached.
    public func detachGallery(
        from labAccount: String, confirm: Bool, gallery: String? = nil,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> LabAccount {
        let request = Labgallery_V1_DetachGalleryRequest(
            labAccount: ResourceName.labAccount(labAccount), confirm: confirm,
            gallery: gallery.map(ResourceName.gallery) ?? "")
        return LabAccount(try await write(timeout) { try await $0.galleries.detachGallery(request, options: $1) })
    }

    /// `ListRoleAssignments` of a gallery.
    public func listRoleAssignments(gallery: String, timeout: Duration? = nil) async throws(LabGalleryClientError)
        -> [RoleAssignment]
    {
        let request = Labgallery_V1_ListRoleAssignmentsRequest(gallery: ResourceName.gallery(gallery))
        return try await read(timeout) { try await $0.galleries.listRoleAssignments(request, options: $1) }
            .roleAssignments.map(RoleAssignment.init)
    }

    // MARK: - Images (uploads are in Upload.swift)

    /// `GetImage`.
    public func getImage(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) -> Image {
        let request = Labgallery_V1_GetImageRequest(name: ResourceName.image(name))
        return Image(try await read(timeout) { try await $0.images.getImage(request, options: $1) })
    }

    /// `ListImages` of a gallery: one page.
    public func listImages(
        gallery: String, pageSize: Int = 0, pageToken: String? = nil,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Page<Image> {
        let request = Labgallery_V1_ListImagesRequest(
            gallery: ResourceName.gallery(gallery), pageSize: Int32(clamping: pageSize),
            pageToken: pageToken ?? "")
        let r = try await read(timeout) { try await $0.images.listImages(request, options: $1) }
        return Page(items: r.images.map(Image.init), nextPageToken: nonEmpty(r.nextPageToken))
    }

    /// Every image of a gallery (follows `next_page_token`).
    public func allImages(gallery: String, timeout: Duration? = nil) async throws(LabGalleryClientError) -> [Image] {
        try await collect { (token) async throws(LabGalleryClientError) in
            try await self.listImages(gallery: gallery, pageToken: token, timeout: timeout)
        }
    }

    /// `DeleteImage` (refused while a lab uses it as its template).
    public func deleteImage(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) {
        let request = Labgallery_V1_DeleteImageRequest(name: ResourceName.image(name))
        _ = try await write(timeout) { try await $0.images.deleteImage(request, options: $1) }
    }

    /// `ListLabAccountImages`: every image of the account's attached gallery (follows
    /// `next_page_token`), with whether each is enabled and whether `createLab` would accept it
    /// now (``LabAccountImage/available``, with the reason when not).
    public func listLabAccountImages(labAccount: String, timeout: Duration? = nil) async throws(LabGalleryClientError)
        -> [LabAccountImage]
    {
        try await collect { (token) async throws(LabGalleryClientError) in
            try await self.listLabAccountImages(labAccount: labAccount, pageToken: token, timeout: timeout)
        }
    }

    /// `ListLabAccountImages`, one page.
    public func listLabAccountImages(
        labAccount: String, pageSize: Int = 0, pageToken: String?, timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Page<LabAccountImage> {
        let request = Labgallery_V1_ListLabAccountImagesRequest(
            labAccount: ResourceName.labAccount(labAccount), pageSize: Int32(clamping: pageSize),
            pageToken: pageToken ?? "")
        let r = try await read(timeout) { try await $0.images.listLabAccountImages(request, options: $1) }
        return Page(items: r.images.map(LabAccountImage.init), nextPageToken: nonEmpty(r.nextPageToken))
    }

    /// `SetImagesEnabled`: enables or disables `images` for `labAccount`, all or nothing.
    public func setImagesEnabled(
        _ images: [String], enabled: Bool, labAccount: String,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> [LabAccountImage] {
        let request = Labgallery_V1_SetImagesEnabledRequest(
            labAccount: ResourceName.labAccount(labAccount),
            images: images.map(ResourceName.image), enabled: enabled)
        return try await write(timeout) { try await $0.images.setImagesEnabled(request, options: $1) }.images.map(
            LabAccountImage.init)
    }

    /// `SaveLabTemplateImage`: saves the lab's template as a SPECIALIZED image in the account's attached gallery.
    public func saveLabTemplateImage(
        lab: String, imageID: String, displayName: String = "",
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Image {
        let request = Labgallery_V1_SaveLabTemplateImageRequest(
            lab: ResourceName.lab(lab), imageId: imageID, displayName: displayName)
        return Image(try await write(timeout) { try await $0.images.saveLabTemplateImage(request, options: $1) })
    }

    // MARK: - Labs

    /// `CreateLab`: `templateImage` must be in the attached gallery and enabled for the account.
    public func createLab(
        labAccount: String, id: String, displayName: String = "", templateImage: String,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Lab {
        let request = Labgallery_V1_CreateLabRequest(
            labAccount: ResourceName.labAccount(labAccount), labId: id,
            lab: .init(displayName: displayName, templateImage: ResourceName.image(templateImage)))
        return Lab(try await write(timeout) { try await $0.labs.createLab(request, options: $1) })
    }

    /// `GetLab`.
    public func getLab(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) -> Lab {
        let request = Labgallery_V1_GetLabRequest(name: ResourceName.lab(name))
        return Lab(try await read(timeout) { try await $0.labs.getLab(request, options: $1) })
    }

    /// `ListLabs` of a lab account: one page.
    public func listLabs(
        labAccount: String, pageSize: Int = 0, pageToken: String? = nil,
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> Page<Lab> {
        let request = Labgallery_V1_ListLabsRequest(
            labAccount: ResourceName.labAccount(labAccount), pageSize: Int32(clamping: pageSize),
            pageToken: pageToken ?? "")
        let r = try await read(timeout) { try await $0.labs.listLabs(request, options: $1) }
        return Page(items: r.labs.map(Lab.init), nextPageToken: nonEmpty(r.nextPageToken))
    }

    /// Every lab of a lab account (follows `next_page_token`).
    public func allLabs(labAccount: String, timeout: Duration? = nil) async throws(LabGalleryClientError) -> [Lab] {
        try await collect { (token) async throws(LabGalleryClientError) in
            try await self.listLabs(labAccount: labAccount, pageToken: token, timeout: timeout)
        }
    }

    /// `DeleteLab`.
    public func deleteLab(_ name: String, timeout: Duration? = nil) async throws(LabGalleryClientError) {
        let request = Labgallery_V1_DeleteLabRequest(name: ResourceName.lab(name))
        _ = try await write(timeout) { try await $0.labs.deleteLab(request, options: $1) }
    }

    // MARK: - Replication (watch streams are in Watch.swift) and billing

    /// `GetReplicationStatus`.
    public func getReplicationStatus(image: String, timeout: Duration? = nil) async throws(LabGalleryClientError)
        -> ReplicationStatus
    {
        let request = Labgallery_V1_GetReplicationStatusRequest(image: ResourceName.image(image))
        return ReplicationStatus(
            try await read(timeout) { try await $0.replication.getReplicationStatus(request, options: $1) })
    }

    /// `RetryReplication`: restarts the failed copies of `image` (`regions` empty: every failed region).
    public func retryReplication(
        image: String, regions: [String] = [],
        timeout: Duration? = nil
    ) async throws(LabGalleryClientError) -> ReplicationStatus {
        let request = Labgallery_V1_RetryReplicationRequest(image: ResourceName.image(image), regions: regions)
        return ReplicationStatus(
            try await write(timeout) { try await $0.replication.retryReplication(request, options: $1) })
    }

    /// `GetGalleryCost`: one priced line per image replica.
    public func getGalleryCost(gallery: String, timeout: Duration? = nil) async throws(LabGalleryClientError)
        -> GalleryCost
    {
        let request = Labgallery_V1_GetGalleryCostRequest(gallery: ResourceName.gallery(gallery))
        return GalleryCost(try await read(timeout) { try await $0.billing.getGalleryCost(request, options: $1) })
    }

    // MARK: - Plumbing

    /// A write: sent once. It moves to the next endpoint only when its endpoint could not be
    /// reached (nothing reached a server); an UNAVAILABLE after sending reaches the caller (the
    /// write may have been applied even when the reply was lost).
    func write<T: Sendable>(_ timeout: Duration?, _ call: (Stubs, CallOptions) async throws -> T)
        async throws(LabGalleryClientError) -> T
    {
        try await run(isRead: false, timeout, call)
    }

    /// An idempotent read: on UNAVAILABLE it moves to the next endpoint, and after a round of
    /// all of them waits per the retry policy; all attempts within one deadline.
    func read<T: Sendable>(_ timeout: Duration?, _ call: (Stubs, CallOptions) async throws -> T)
        async throws(LabGalleryClientError) -> T
    {
        try await run(isRead: true, timeout, call)
    }

    /// Tries the endpoints in the pool's order, one round after another (a write: one round).
    private func run<T: Sendable>(
        isRead: Bool, _ timeout: Duration?, _ call: (Stubs, CallOptions) async throws -> T
    ) async throws(LabGalleryClientError) -> T {
        let deadline = (timeout ?? configuration.defaultTimeout).map { ContinuousClock.now + $0 }
        var backoff = Backoff(configuration.retryPolicy)
        var rounds = EndpointRounds(pool)
        var attempts = 0
        while true {
            let remaining = deadline.map { $0 - ContinuousClock.now }
            if let remaining, remaining <= .zero {
                throw rounds.naming(
                    LabGalleryClientError(
                        .deadlineExceeded, "the call did not complete within its timeout (after \(attempts) attempts)"))
            }
            let i = rounds.next()
            attempts += 1
            do {
                let result = try await call(Stubs(rpc: pool.members[i].rpc), CallOptions(timeout: remaining))
                pool.answered(i)
                return result
            } catch {
                let e = LabGalleryClientError(error)
                let unprocessed = (error as? RPCError)?.unprocessed ?? false
                rounds.record(i, e)
                guard e.code == .unavailable, !Task.isCancelled, isRead || unprocessed else { throw rounds.naming(e) }
                if rounds.roundDone {
                    // Every endpoint failed this round: a write stops; a read waits, then goes round again.
                    guard isRead, let wait = backoff.next() else { throw rounds.naming(e) }
                    if let deadline, ContinuousClock.now + wait >= deadline { throw rounds.naming(e) }
                    do { try await Task.sleep(for: wait) } catch {
                        throw LabGalleryClientError(
                            .cancelled, "the task was cancelled while waiting to retry: \(rounds.naming(e).message)")
                    }
                    rounds.startRound()
                }
            }
        }
    }

    /// Follows `next_page_token` until the last page.
    func collect<T: Sendable>(_ page: (String?) async throws(LabGalleryClientError) -> Page<T>)
        async throws(LabGalleryClientError) -> [T]
    {
        var items: [T] = []
        var token: String? = nil
        repeat {
            let p = try await page(token)
            items += p.items
            token = p.nextPageToken
        } while token != nil
        return items
    }
}

/// The generated stubs on one endpoint's connection.
struct Stubs {
    let rpc: RPCClient
    var labAccounts: Labgallery_V1_LabAccountService.Client { .init(wrapping: rpc) }
    var galleries: Labgallery_V1_GalleryService.Client { .init(wrapping: rpc) }
    var images: Labgallery_V1_ImageService.Client { .init(wrapping: rpc) }
    var labs: Labgallery_V1_LabService.Client { .init(wrapping: rpc) }
    var replication: Labgallery_V1_ReplicationService.Client { .init(wrapping: rpc) }
    var billing: Labgallery_V1_BillingService.Client { .init(wrapping: rpc) }
}

/// One call's (or one watch's) walk over the endpoints: rounds of the pool's order, each
/// endpoint once per round, and the endpoints tried, for the error.
struct EndpointRounds {
    private let pool: EndpointPool
    private var order: [Int]
    private var position = 0
    /// Each endpoint tried, in the order first tried.
    private(set) var tried: [Int] = []

    init(_ pool: EndpointPool) {
        self.pool = pool
        order = pool.order()
    }

    /// The endpoint to try now.
    mutating func next() -> Int {
        if position >= order.count { startRound() }
        defer { position += 1 }
        if !tried.contains(order[position]) { tried.append(order[position]) }
        return order[position]
    }

    /// Whether every endpoint was tried this round.
    var roundDone: Bool { position >= order.count }

    /// Starts a round in the pool's current order.
    mutating func startRound() {
        order = pool.order()
        position = 0
    }

    /// Starts a new walk after `failed` dropped a stream that had worked: the other endpoints
    /// first, in the pool's order; `failed` again only in the next round (after the back-off),
    /// so a stream that keeps dropping never re-opens in a tight loop.
    mutating func restart(after failed: Int) {
        order = pool.order().filter { $0 != failed }
        position = 0
        tried = [failed]
    }

    /// Notes how endpoint `i` answered: unreachable or UNAVAILABLE marks it down; any status
    /// from the server marks it up (a deadline or cancellation says nothing).
    func record(_ i: Int, _ error: LabGalleryClientError) {
        switch error.code {
        case .unavailable: pool.failed(i)
        case .deadlineExceeded, .cancelled: break
        default: pool.answered(i)
        }
    }

    /// `error`, its message naming the endpoints tried when the client has several.
    func naming(_ error: LabGalleryClientError) -> LabGalleryClientError {
        guard pool.members.count > 1, !tried.isEmpty else { return error }
        var e = error
        e.message +=
            " (endpoints tried: \(tried.map { pool.members[$0].endpoint.description }.joined(separator: ", ")))"
        return e
    }
}

/// Capped exponential backoff with jitter (half to full of the current step).
struct Backoff {
    let policy: LabGalleryClient.RetryPolicy
    private(set) var attempt = 1
    private var step: Duration

    init(_ policy: LabGalleryClient.RetryPolicy) {
        self.policy = policy
        self.step = policy.initialBackoff
    }

    /// The wait before the next attempt, or nil when the attempts are used up.
    mutating func next() -> Duration? {
        guard attempt < policy.maxAttempts else { return nil }
        attempt += 1
        let wait = step * Double.random(in: 0.5...1.0)
        step = min(step * 2, policy.maxBackoff)
        return wait
    }

    /// Starts over (a watch stream delivered a message: the connection works again).
    mutating func reset() {
        attempt = 1
        step = policy.initialBackoff
    }
}

/// Adds `authorization: Bearer <token>` to every call.
struct BearerToken: ClientInterceptor {
    let token: String
    func prepare(_ head: inout ClientRequestHead) throws {
        head.metadata.replace("authorization", "Bearer \(token)")
    }
}

func nonEmpty(_ s: String) -> String? { s.isEmpty ? nil : s }

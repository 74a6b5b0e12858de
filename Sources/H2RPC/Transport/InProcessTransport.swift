import Synchronization

/// A transport pair that connects a client to a server in the same process, without
/// sockets or HTTP/2: for tests of services and of the RPC core itself.
///
/// ```swift
/// let transport = InProcessTransport()
/// let server = RPCServer(transport: transport.server, services: [MyService()])
/// try server.start()
/// let client = RPCClient(transport: transport.client)
/// ```
public struct InProcessTransport: Sendable {
    /// The server half: give it to `RPCServer`.
    public let server: Server
    /// The client half: give it to `RPCClient`.
    public let client: Client

    /// Creates a connected pair.
    public init() {
        let server = Server()
        self.server = server
        self.client = Client(server: server)
    }

    /// The server half.
    public final class Server: ServerTransport {
        fileprivate let acceptor = Mutex<(any ServerCallAcceptor)?>(nil)
        fileprivate let accepting = Atomic<Bool>(false)
        /// Calls in flight, so `stop` can end them as a closed connection would.
        fileprivate let open = Mutex<[ObjectIdentifier: Link]>([:])

        public func start(acceptor: any ServerCallAcceptor) throws {
            self.acceptor.withLock { $0 = acceptor }
            accepting.store(true, ordering: .releasing)
        }

        public func beginGracefulShutdown() {
            accepting.store(false, ordering: .releasing)
        }

        public func stop() {
            accepting.store(false, ordering: .releasing)
            acceptor.withLock { $0 = nil }
            let links = open.withLock { links -> [Link] in
                defer { links.removeAll() }
                return Array(links.values)
            }
            for link in links {
                link.events.receiveStatus(Status(code: .unavailable, message: "the in-process server stopped"), trailers: [:])
                link.close(cancelled: true)
            }
        }
    }

    /// The client half.
    public final class Client: ClientTransport {
        private let server: Server

        fileprivate init(server: Server) { self.server = server }

        public func openStream(_ head: ClientRequestHead, events: ClientCallEvents) -> any ClientStreamOutbound {
            guard server.accepting.load(ordering: .acquiring), let acceptor = server.acceptor.withLock({ $0 }) else {
                events.receiveStatus(Status(code: .unavailable, message: "the in-process server is not serving"), trailers: [:])
                return Outbound(link: nil)
            }
            let link = Link(events: events, server: server)
            server.open.withLock { $0[ObjectIdentifier(link)] = link }
            let request = RequestHead(path: head.method.path, metadata: head.metadata,
                                      timeout: head.timeout.map { .valid($0) } ?? .none, peer: "in-process")
            let call = acceptor.accept(request, outbound: ServerOutbound(link: link))
            link.call.withLock { $0 = call }
            return Outbound(link: link)
        }

        public func close() {}
    }

    /// Shared by both halves of one call.
    fileprivate final class Link: Sendable {
        let events: ClientCallEvents
        let call = Mutex<ServerCall?>(nil)
        let closed = Atomic<Bool>(false)
        weak let server: Server?

        init(events: ClientCallEvents, server: Server) {
            self.events = events
            self.server = server
        }

        var serverCall: ServerCall? { call.withLock { $0 } }

        /// Ends the stream once; tells the server side whether it was cut short.
        func close(cancelled: Bool) {
            if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
            _ = server?.open.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
            serverCall?.closed(cancelled: cancelled)
        }
    }

    fileprivate struct Outbound: ClientStreamOutbound {
        let link: Link?

        func send(message: [UInt8]?, end: Bool) {
            guard let link, !link.closed.load(ordering: .acquiring) else { return }
            if let message {
                link.events.drained(message.count + 5)
                link.serverCall?.receive(message)
            }
            if end { link.serverCall?.receiveEnd() }
        }

        func cancel() {
            guard let link else { return }
            link.events.receiveStatus(Status(code: .cancelled, message: "the call was cancelled"), trailers: [:])
            link.close(cancelled: true)
        }

        func consume(_ bytes: Int) {}
    }

    fileprivate struct ServerOutbound: ServerStreamOutbound {
        let link: Link

        func send(headers: Metadata?, message: [UInt8]?, status: Status?, trailers: Metadata) {
            if let headers { link.events.receiveHeaders(headers) }
            if let message {
                link.serverCall?.drained(message.count + 5)
                link.events.receiveMessage(message)
            }
            if let status {
                link.events.receiveStatus(status, trailers: trailers)
                link.close(cancelled: false)
            }
        }

        func sendTrailersOnly(status: Status, trailers: Metadata) {
            link.events.receiveStatus(status, trailers: trailers)
            link.close(cancelled: false)
        }

        func reset() {
            link.events.receiveStatus(Status(code: .cancelled, message: "the server reset the stream"), trailers: [:])
            link.close(cancelled: true)
        }

        func consume(_ bytes: Int) {}
    }
}

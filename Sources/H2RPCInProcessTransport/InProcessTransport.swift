import H2RPC
import Synchronization

/// A transport pair that connects a client to a server in the same process, without
/// sockets or HTTP/2: for tests of services and of the RPC core itself. It links no C code.
///
/// ```swift
/// let transport = InProcessTransport()
/// let server = RPCServer(transport: transport.server, services: [MyService()])
/// try server.start()
/// let client = RPCClient(transport: transport.client)
/// ```
///
/// Messages cross as ``MessageBytes`` without being copied; metadata is filtered by the same
/// ``ReservedHeaders`` table as on the wire.
public struct InProcessTransport: Sendable {
    /// The server half: give it to `RPCServer`.
    public let server: Server
    /// The client half: give it to `RPCClient`.
    public let client: Client

    /// Another client half on the same server, like a second connection: closing it ends only
    /// the calls opened through it.
    public func makeClient() -> Client { Client(server: server) }

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
        /// Numbers the client halves, so each has a peer name of its own (`in-process:N`).
        fileprivate let clients = Atomic<Int>(0)

        /// Starts accepting calls from the client half.
        public func start(acceptor: any ServerCallAcceptor) throws {
            self.acceptor.withLock { $0 = acceptor }
            accepting.store(true, ordering: .releasing)
        }

        /// Refuses new calls (UNAVAILABLE); calls in flight continue.
        public func beginGracefulShutdown() {
            accepting.store(false, ordering: .releasing)
        }

        /// Ends every call in flight as a lost connection would (UNAVAILABLE for the client,
        /// cancellation for the handler).
        public func stop() {
            accepting.store(false, ordering: .releasing)
            acceptor.withLock { $0 = nil }
            let links = open.withLock { links -> [Link] in
                defer { links.removeAll() }
                return Array(links.values)
            }
            for link in links {
                link.events.receive(.status(Status(code: .unavailable, message: "the in-process server stopped"), [:]))
                link.close(cancelled: true)
            }
        }
    }

    /// The client half.
    public final class Client: ClientTransport {
        private let server: Server
        /// The peer name its calls carry, one per client half as one per connection on the wire.
        private let peer: String
        /// Calls in flight through this client, so `close` can end them as a lost connection would.
        fileprivate let open = Mutex<[ObjectIdentifier: Link]>([:])

        fileprivate init(server: Server) {
            self.server = server
            self.peer = "in-process:\(server.clients.add(1, ordering: .relaxed).newValue)"
        }

        /// Opens a call on the server half (UNAVAILABLE if it is not serving).
        public func openStream(_ head: ClientRequestHead, events: ClientCallEvents) -> any ClientStreamOutbound {
            guard server.accepting.load(ordering: .acquiring), let acceptor = server.acceptor.withLock({ $0 }) else {
                events.receive(
                    .status(Status(code: .unavailable, message: "the in-process server is not serving"), [:]))
                return Outbound(link: nil)
            }
            let link = Link(events: events, server: server, client: self)
            server.open.withLock { $0[ObjectIdentifier(link)] = link }
            open.withLock { $0[ObjectIdentifier(link)] = link }
            let request = RequestHead(
                path: head.method.path, metadata: filtered(head.metadata),
                timeout: head.timeout.map { .valid($0) } ?? .none, peer: peer)
            let call = acceptor.accept(request, outbound: ServerOutbound(link: link))
            link.call.withLock { $0 = call }
            return Outbound(link: link)
        }

        /// Ends the calls in flight through this client as a lost connection would (UNAVAILABLE
        /// for the caller, cancellation for the handler). Later calls open as usual.
        public func close() {
            let links = open.withLock { links -> [Link] in
                defer { links.removeAll() }
                return Array(links.values)
            }
            for link in links {
                link.events.receive(
                    .status(Status(code: .unavailable, message: "the in-process client was closed"), [:]))
                link.close(cancelled: true)
            }
        }
    }

    /// Shared by both halves of one call.
    fileprivate final class Link: Sendable {
        let events: ClientCallEvents
        let call = Mutex<ServerCall?>(nil)
        let closed = Atomic<Bool>(false)
        weak let server: Server?
        weak let client: Client?

        init(events: ClientCallEvents, server: Server, client: Client) {
            self.events = events
            self.server = server
            self.client = client
        }

        var serverCall: ServerCall? { call.withLock { $0 } }

        /// Ends the stream once; tells the server side whether it was cut short.
        func close(cancelled: Bool) {
            if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
            _ = server?.open.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
            _ = client?.open.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
            serverCall?.closed(cancelled: cancelled)
        }
    }

    fileprivate struct Outbound: ClientStreamOutbound {
        let link: Link?

        func write(_ part: RPCRequestPart) {
            guard let link, !link.closed.load(ordering: .acquiring) else { return }
            if case .message(let message) = part { link.events.drained(message.count) }
            link.serverCall?.receive(part)
        }

        func cancel() {
            guard let link else { return }
            link.events.receive(.status(Status(code: .cancelled, message: "the call was cancelled"), [:]))
            link.close(cancelled: true)
        }

        func consume(_ bytes: Int) {}
    }

    fileprivate struct ServerOutbound: ServerStreamOutbound {
        let link: Link

        func write(_ first: RPCResponsePart, _ second: RPCResponsePart?, _ third: RPCResponsePart?) {
            deliver(first)
            if let second { deliver(second) }
            if let third { deliver(third) }
        }

        private func deliver(_ part: RPCResponsePart) {
            switch part {
            case .metadata(let metadata):
                link.events.receive(.metadata(filtered(metadata)))
            case .message(let message):
                link.serverCall?.drained(message.count)
                link.events.receive(part)
            case .status(let status, let trailers), .trailersOnly(let status, let trailers):
                link.events.receive(.status(status, filtered(trailers)))
                link.close(cancelled: false)
            }
        }

        func reset() {
            link.events.receive(.status(Status(code: .cancelled, message: "the server reset the stream"), [:]))
            link.close(cancelled: true)
        }

        func consume(_ bytes: Int) {}
    }
}

/// `metadata` without the names a transport owns, as a peer across HTTP/2 would see it.
private func filtered(_ metadata: Metadata) -> Metadata {
    guard metadata.contains(where: { Metadata.isReserved($0.key) }) else { return metadata }
    var kept = Metadata()
    for entry in metadata where !Metadata.isReserved(entry.key) { kept.append(entry) }
    return kept
}

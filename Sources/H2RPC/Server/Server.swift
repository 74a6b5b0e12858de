import Synchronization

/// A gRPC server: routes calls from its transport to the registered services.
///
/// ```swift
/// let server = RPCServer(transport: try H2ServerTransport(host: "127.0.0.1", port: 0),
///                        services: [MyService()])
/// try server.start()
/// // ...
/// await server.shutdown(gracePeriod: .seconds(5))
/// ```
public final class RPCServer: Sendable {
    private let transport: any ServerTransport
    private let dispatcher: ServerDispatcher

    /// Creates a server with the services it serves, the interceptors every call runs through
    /// (outermost first; those that are ``ServerHeadInterceptor``s also check each call's head as
    /// soon as it arrives), its limits on calls (see ``ServerCallLimits``) and what is told about
    /// every call when it ends (``ServerCallObserver``: an access log).
    public init(
        transport: any ServerTransport, services: [any RegistrableRPCService],
        interceptors: [any ServerInterceptor] = [], limits: ServerCallLimits = ServerCallLimits(),
        observer: (any ServerCallObserver)? = nil
    ) {
        var router = RPCRouter()
        for service in services { service.registerMethods(with: &router) }
        self.transport = transport
        self.dispatcher = ServerDispatcher(
            router: router, interceptors: interceptors, limits: limits, observer: observer)
    }

    /// Starts accepting calls.
    public func start() throws {
        try transport.start(acceptor: dispatcher)
        dispatcher.startSweeping()
    }

    /// Calls whose handler has not started (their head is being checked or their request is not
    /// complete), and the request bytes they hold.
    public var pendingCalls: (calls: Int, heldBytes: Int) {
        let c = dispatcher.pendingCounts
        return (c.calls, c.bytes)
    }

    /// The number of calls in progress.
    public var activeCalls: Int { dispatcher.activeCalls }

    /// Graceful shutdown: stop accepting (GOAWAY), let calls in flight finish for up to
    /// `gracePeriod`, then close every connection (cancelling what is left).
    public func shutdown(gracePeriod: Duration = .seconds(10)) async {
        transport.beginGracefulShutdown()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.dispatcher.drained() }
            group.addTask { try? await Task.sleep(for: gracePeriod) }
            await group.next()
            group.cancelAll()
        }
        transport.stop()
        dispatcher.stopSweeping()
    }
}

/// Validates each request's head, finds its route and creates the call.
final class ServerDispatcher: ServerCallAcceptor {
    let routes: [String: Route]
    let interceptors: [any ServerInterceptor]
    /// The interceptors that check a call's head when it arrives (in order).
    let headInterceptors: [any ServerHeadInterceptor]
    let limits: ServerCallLimits
    /// Told about every call when it ends.
    let observer: (any ServerCallObserver)?
    /// This dispatcher's calls whose handler has not started.
    let pending: PendingCalls
    /// The task that expires pending calls past the request timeout (the root's).
    private let sweeper = Mutex<Task<Void, Never>?>(nil)
    let active = Atomic<Int>(0)
    /// The copies `makeThreadAcceptor` made: their calls count in `activeCalls` too.
    private let threadCopies = Mutex<[ServerDispatcher]>([])
    /// Shared by a dispatcher and its thread copies: wakes `drained()` when the last call ends.
    private let drain: Drain
    /// The dispatcher this one is a thread copy of (nil for the server's own).
    private unowned let root: ServerDispatcher?

    /// Shutdown's wait for the last call: `draining` is set once, then every call that ends
    /// checks the total under `waiter`'s lock (as `drained` does), so no wake-up is lost.
    private final class Drain: Sendable {
        let draining = Atomic<Bool>(false)
        let waiter = Mutex<CheckedContinuation<Void, Never>?>(nil)
    }

    init(
        router: RPCRouter, interceptors: [any ServerInterceptor], limits: ServerCallLimits = ServerCallLimits(),
        observer: (any ServerCallObserver)? = nil
    ) {
        var routes = router.routes
        for (path, route) in routes {
            routes[path]?.maxRequestMessageSize = limits.maxRequestMessageSize(for: path) ?? route.maxRequestMessageSize
        }
        self.routes = routes
        self.interceptors = interceptors
        self.headInterceptors = interceptors.compactMap { $0 as? any ServerHeadInterceptor }
        self.limits = limits
        self.observer = observer
        self.pending = PendingCalls(maxHeldBytes: limits.maxHeldRequestBytes)
        self.drain = Drain()
        self.root = nil
    }

    private init(routes: [String: Route], root: ServerDispatcher) {
        self.routes = routes
        self.interceptors = root.interceptors
        self.headInterceptors = root.headInterceptors
        self.limits = root.limits
        self.observer = root.observer
        self.pending = PendingCalls(maxHeldBytes: root.limits.maxHeldRequestBytes)
        self.drain = root.drain
        self.root = root
    }

    // MARK: pending calls

    /// Starts expiring calls that wait longer than the request timeout: a sweep every eighth of
    /// it (at most every second, at least every 10 ms), so a late call ends within 1/8 of the
    /// timeout (or 1 s) after it.
    func startSweeping() {
        guard let timeout = limits.requestTimeout else { return }
        let period = min(max(timeout / 8, .milliseconds(10)), .seconds(1))
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                guard let self else { return }
                self.sweep(timeout: timeout)
            }
        }
        sweeper.withLock { old in
            old?.cancel()
            old = task
        }
    }

    func stopSweeping() {
        sweeper.withLock { t in
            t?.cancel()
            t = nil
        }
    }

    /// Ends the calls (of this dispatcher and its thread copies) that wait for longer than `timeout`.
    func sweep(timeout: Duration) {
        let cutoff = ContinuousClock.now - timeout
        var late = pending.expired(before: cutoff)
        for copy in threadCopies.withLock({ $0 }) { late += copy.pending.expired(before: cutoff) }
        for call in late { call.requestTimedOut(after: timeout) }
    }

    /// Pending calls and held bytes, on this dispatcher and its thread copies.
    var pendingCounts: (calls: Int, bytes: Int) {
        threadCopies.withLock { copies in
            copies.reduce(pending.counts) { total, copy in
                let c = copy.pending.counts
                return (total.calls + c.calls, total.bytes + c.bytes)
            }
        }
    }

    /// Returns once no call is in progress (after shutdown began); returns early if cancelled.
    func drained() async {
        drain.draining.store(true, ordering: .sequentiallyConsistent)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let idle = drain.waiter.withLock { w -> Bool in
                    if activeCalls == 0 || Task.isCancelled { return true }
                    w = c
                    return false
                }
                if idle { c.resume() }
            }
        } onCancel: {
            drain.waiter.withLock { w in
                defer { w = nil }
                return w
            }?.resume()
        }
    }

    /// Calls in progress, on this dispatcher and its thread copies.
    var activeCalls: Int {
        threadCopies.withLock { copies in
            copies.reduce(active.load(ordering: .relaxed)) { $0 + $1.active.load(ordering: .relaxed) }
        }
    }

    /// A dispatcher for one event loop: every call retains its route's path string and handler
    /// closure, and counts itself in `active`; with its own copies of those, calls on different
    /// loops do not bounce the same cache lines between cores.
    func makeThreadAcceptor() -> any ServerCallAcceptor {
        var copies: [String: Route] = [:]
        for route in routes.values {
            let copy = route.threadCopy()
            copies[copy.descriptor.path] = copy
        }
        let dispatcher = ServerDispatcher(routes: copies, root: root ?? self)
        threadCopies.withLock { copies in
            copies.append(dispatcher)
            // The budget of held request bytes is the server's: each loop gets its share.
            let share = max(1, limits.maxHeldRequestBytes / copies.count)
            for copy in copies { copy.pending.maxHeldBytes.store(share, ordering: .relaxed) }
        }
        return dispatcher
    }

    func accept(_ head: RequestHead, outbound: any ServerStreamOutbound) -> ServerCall? {
        func reject(_ error: RPCError) -> ServerCall? {
            outbound.write(.trailersOnly(error.status, error.metadata))
            observer?.callEnded(
                ServerCallSummary(
                    path: head.path, peer: head.peer, status: error.status, duration: .zero, requestBytes: 0,
                    responseBytes: 0, context: nil))
            return nil
        }
        guard let route = routes[head.path] else {
            return reject(RPCError(.unimplemented, "unknown method \(head.path)"))
        }
        guard head.hasTE else {
            return reject(
                RPCError(.internal, "the request lacks the 'te: trailers' header that gRPC over HTTP/2 requires"))
        }
        var deadline: ContinuousClock.Instant? = nil
        switch head.timeout {
        case .none: break
        case .valid(let timeout): deadline = .now + timeout
        case .malformed(let raw):
            return reject(
                RPCError(
                    .internal, "malformed grpc-timeout '\(raw)': expected 1-8 digits and a unit of H, M, S, m, u or n"))
        }
        if let encoding = head.encoding, CompressionAlgorithm(name: encoding) == nil {
            // The transport announces grpc-accept-encoding on every response.
            let supported = (["identity"] + CompressionAlgorithm.allCases.map(\.name)).joined(separator: ", ")
            return reject(
                RPCError(
                    .unimplemented, "grpc-encoding '\(encoding)' is not supported; this server accepts \(supported)"))
        }
        let context = ServerContext(
            descriptor: route.descriptor, metadata: head.metadata, deadline: deadline, peer: head.peer,
            acceptedCompression: head.acceptedCompression)
        active.add(1, ordering: .relaxed)
        let call = ServerCall(
            context: context, route: route, outbound: outbound, dispatcher: self, executor: head.executor,
            startsInline: head.deliversEventsOnExecutor && head.executor != nil, checksHead: !headInterceptors.isEmpty)
        call.begin()
        return call
    }

    func callEnded() {
        active.subtract(1, ordering: .sequentiallyConsistent)
        if drain.draining.load(ordering: .sequentiallyConsistent) {
            let counter = root ?? self
            drain.waiter.withLock { w -> CheckedContinuation<Void, Never>? in
                guard counter.activeCalls == 0 else { return nil }
                defer { w = nil }
                return w
            }?.resume()
        }
    }

    /// Runs `body` inside every interceptor.
    func intercept(_ context: ServerContext, _ body: @escaping () async throws -> Void) async throws {
        try await chain(0, context, body)
    }

    private func chain(_ index: Int, _ context: ServerContext, _ body: @escaping () async throws -> Void) async throws {
        if index == interceptors.count { return try await body() }
        try await interceptors[index].intercept(context: context) {
            try await self.chain(index + 1, context, body)
        }
    }
}

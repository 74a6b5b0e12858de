import GeneratedProtos
import H2RPC

extension LabGalleryClient {
    /// `WatchReplication`: the image's full status at once, then one per change; the sequence
    /// ends when the aggregated state is COMPLETED or FAILED.
    ///
    /// ```swift
    /// for try await status in client.watchReplication(image: "shared/ubuntu") { … }
    /// ```
    /// The call opens on the first iteration. A stream that ends `UNAVAILABLE` (its instance
    /// stopped, its connection died or went silent) re-opens at once on the next endpoint, and
    /// after a round of all of them per the retry policy — every message is a complete status,
    /// so nothing is lost, and the sequence ends only on a terminal state the server sent.
    /// Cancelling the iterating task (or leaving the loop) cancels the call.
    public func watchReplication(image: String) -> ReplicationWatch {
        ReplicationWatch(client: self, target: .image(ResourceName.image(image)))
    }

    /// `WatchGalleryReplication`: the current status of every image of the gallery, then every
    /// change, until the iterating task is cancelled. Re-opened after a drop like ``watchReplication(image:)``.
    public func watchGalleryReplication(gallery: String) -> ReplicationWatch {
        ReplicationWatch(client: self, target: .gallery(ResourceName.gallery(gallery)))
    }
}

/// A replication watch: an `AsyncSequence` of ``ReplicationStatus`` that throws ``LabGalleryClientError``.
public struct ReplicationWatch: AsyncSequence, Sendable {
    /// Each message is a complete status of one image.
    public typealias Element = ReplicationStatus
    /// The one error type of the library.
    public typealias Failure = LabGalleryClientError

    enum Target: Sendable {
        case image(String)
        case gallery(String)
    }

    let client: LabGalleryClient
    let target: Target

    /// Iterates the statuses; not shared between tasks.
    public struct AsyncIterator: AsyncIteratorProtocol {
        /// A complete status of one image.
        public typealias Element = ReplicationStatus
        /// The one error type of the library.
        public typealias Failure = LabGalleryClientError

        let client: LabGalleryClient
        let target: Target
        private var stream: (any StatusStream)? = nil
        /// The endpoint the stream is open on.
        private var endpoint = 0
        private var backoff: Backoff
        private var rounds: EndpointRounds
        /// A message arrived since the walk began: the next failure starts a new one.
        private var walkIsStale = false
        private var finished = false

        init(client: LabGalleryClient, target: Target) {
            self.client = client
            self.target = target
            self.backoff = Backoff(client.configuration.retryPolicy)
            self.rounds = EndpointRounds(client.pool)
        }

        /// The next status; nil when the watch ended (an image watch at COMPLETED or FAILED).
        public mutating func next() async throws(LabGalleryClientError) -> ReplicationStatus? {
            guard !finished else { return nil }
            while true {
                do {
                    if stream == nil {
                        endpoint = rounds.next()
                        stream = try await open(on: client.pool.members[endpoint].rpc)
                    }
                    if let message = try await stream?.nextStatus() {
                        // The endpoint works: later drops get a fresh budget and a fresh walk.
                        client.pool.answered(endpoint)
                        backoff.reset()
                        walkIsStale = true
                        return ReplicationStatus(message)
                    }
                    finished = true
                    stream = nil
                    return nil
                } catch {
                    stream = nil  // drops the call, which cancels it if still open
                    let e = LabGalleryClientError(error)
                    rounds.record(endpoint, e)
                    if walkIsStale {
                        rounds.restart(after: endpoint)
                        walkIsStale = false
                    }
                    guard e.code == .unavailable, !Task.isCancelled else {
                        finished = true
                        throw rounds.naming(e)
                    }
                    // Another endpoint not tried since the last message: re-open there at once.
                    guard rounds.roundDone else { continue }
                    guard let wait = backoff.next() else {
                        finished = true
                        throw rounds.naming(e)
                    }
                    rounds.startRound()
                    do { try await Task.sleep(for: wait) } catch {
                        finished = true
                        throw LabGalleryClientError(
                            .cancelled, "the task was cancelled while waiting to re-open the watch: \(e.message)")
                    }
                }
            }
        }

        private func open(on rpc: RPCClient) async throws -> any StatusStream {
            let replication = Stubs(rpc: rpc).replication
            switch target {
            case .image(let image):
                return try await replication.watchReplication(.init(image: image)).makeAsyncIterator()
            case .gallery(let gallery):
                return try await replication.watchGalleryReplication(.init(gallery: gallery)).makeAsyncIterator()
            }
        }
    }

    /// Starts iterating (the call opens on the first `next()`).
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(client: client, target: target) }
}

/// A server stream of replication statuses, whatever its request type.
protocol StatusStream {
    mutating func nextStatus() async throws -> Labgallery_V1_ReplicationStatus?
}

extension ClientCall.AsyncIterator: StatusStream where Response == Labgallery_V1_ReplicationStatus {
    mutating func nextStatus() async throws -> Labgallery_V1_ReplicationStatus? { try await next() }
}

import Synchronization

/// How the use cases reach the replication engine: they report new and deleted images, and route
/// status, watches and retries to it. Without an engine (core-only tests, token commands) events
/// are dropped, replication rows simply stay PENDING and statuses come from the database.
public final class ReplicationHooks: Sendable {
    private let engine = Mutex<ReplicationEngine?>(nil)

    init() {}

    /// The engine now serving (set by ``ReplicationEngine/start()``).
    var current: ReplicationEngine? { engine.withLock { $0 } }

    /// Installs `e` (replacing any engine before it).
    func attach(_ e: ReplicationEngine) { engine.withLock { $0 = e } }

    /// Removes `e` if it is the engine installed (a stopped engine never removes its successor).
    func detach(_ e: ReplicationEngine) { engine.withLock { if $0 === e { $0 = nil } } }

    func imageStored(_ image: ImageName, rows: [ReplicationRow]) { current?.imageStored(image, rows: rows) }
    func imageDeleted(_ image: ImageName) { current?.imageDeleted(image) }
    func galleryDeleted(_ gallery: GalleryName) { current?.galleryDeleted(gallery) }
}

import Blocking
import Foundation
import LabGalleryCore
import LabGalleryPostgres

extension LabGalleryService {
    /// Opens the core on `database` (a PostgreSQL URL: `postgresql://USER@HOST:PORT/DB`,
    /// `postgresql:///DB?host=SOCKETDIR`, or anything libpq accepts) with a pool of `poolSize`
    /// connections, or, when `database` is `nil`, on SQLite in the data directory as always. The
    /// region blob stores and `admin.token` stay under `dataDirectory` either way.
    public static func open(
        dataDirectory: URL, database: String?, poolSize: Int = PostgresPool.defaultSize,
        configuration: LabGalleryConfiguration = .init(), executor: BlockingExecutor = .shared
    ) throws(LabGalleryError) -> LabGalleryService {
        guard let database else {
            return try open(dataDirectory: dataDirectory, configuration: configuration, executor: executor)
        }
        let storage = try PostgresStorage(url: database, poolSize: poolSize)
        return try open(
            dataDirectory: dataDirectory, storage: storage, configuration: configuration, executor: executor)
    }
}

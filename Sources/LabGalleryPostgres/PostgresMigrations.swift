/// The PostgreSQL schema: the same logical schema as the SQLite migrations (as of SQLite's v4),
/// versioned in `labgallery_migrations`. Never edit a shipped migration; add a new one.
///
/// Text columns collate "C" (byte order) so ids sort and page as in SQLite, whatever the
/// database's default collation.
enum PostgresMigrations {
    /// Version → SQL, applied in order.
    static let all: [(version: String, sql: String)] = [
        (
            "v1",
            """
            CREATE TABLE gallery (
                id TEXT COLLATE "C" PRIMARY KEY,
                displayName TEXT NOT NULL,
                region TEXT COLLATE "C" NOT NULL,
                geography TEXT NOT NULL
            );
            CREATE TABLE labAccount (
                id TEXT COLLATE "C" PRIMARY KEY,
                displayName TEXT NOT NULL,
                region TEXT COLLATE "C" NOT NULL,
                attachedGalleryId TEXT COLLATE "C" REFERENCES gallery(id) ON DELETE RESTRICT
            );
            CREATE INDEX labAccount_attached ON labAccount(attachedGalleryId);
            CREATE TABLE roleAssignment (
                galleryId TEXT COLLATE "C" NOT NULL REFERENCES gallery(id) ON DELETE CASCADE,
                principal TEXT COLLATE "C" NOT NULL,
                role TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (galleryId, principal, role)
            );
            CREATE TABLE image (
                galleryId TEXT COLLATE "C" NOT NULL REFERENCES gallery(id) ON DELETE CASCADE,
                id TEXT COLLATE "C" NOT NULL,
                displayName TEXT NOT NULL,
                osType TEXT NOT NULL,
                osState TEXT NOT NULL,
                source TEXT NOT NULL,
                sourceLab TEXT,
                sizeBytes BIGINT NOT NULL,
                sha256 TEXT COLLATE "C" NOT NULL,
                region TEXT COLLATE "C" NOT NULL,
                author TEXT NOT NULL,
                blobPath TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (galleryId, id)
            );
            CREATE INDEX image_blob ON image(blobPath);
            CREATE TABLE replication (
                galleryId TEXT COLLATE "C" NOT NULL,
                imageId TEXT COLLATE "C" NOT NULL,
                region TEXT COLLATE "C" NOT NULL,
                state TEXT NOT NULL,
                bytesCopied BIGINT NOT NULL,
                bytesTotal BIGINT NOT NULL,
                error TEXT,
                attempts INTEGER NOT NULL,
                blobPath TEXT COLLATE "C",
                partialPath TEXT COLLATE "C",
                PRIMARY KEY (galleryId, imageId, region),
                FOREIGN KEY (galleryId, imageId) REFERENCES image(galleryId, id) ON DELETE CASCADE
            );
            CREATE INDEX replication_blob ON replication(blobPath);
            CREATE TABLE imageDisabled (
                labAccountId TEXT COLLATE "C" NOT NULL REFERENCES labAccount(id) ON DELETE CASCADE,
                galleryId TEXT COLLATE "C" NOT NULL,
                imageId TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (labAccountId, galleryId, imageId),
                FOREIGN KEY (galleryId, imageId) REFERENCES image(galleryId, id) ON DELETE CASCADE
            );
            CREATE INDEX imageDisabled_image ON imageDisabled(galleryId, imageId);
            CREATE TABLE lab (
                labAccountId TEXT COLLATE "C" NOT NULL REFERENCES labAccount(id) ON DELETE RESTRICT,
                id TEXT COLLATE "C" NOT NULL,
                displayName TEXT NOT NULL,
                templateGalleryId TEXT COLLATE "C" NOT NULL,
                templateImageId TEXT COLLATE "C" NOT NULL,
                templateOsType TEXT NOT NULL,
                templatePath TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (labAccountId, id),
                FOREIGN KEY (templateGalleryId, templateImageId) REFERENCES image(galleryId, id) ON DELETE RESTRICT
            );
            CREATE INDEX lab_template ON lab(templateGalleryId, templateImageId);
            CREATE INDEX lab_blob ON lab(templatePath);
            CREATE TABLE blob (
                path TEXT COLLATE "C" PRIMARY KEY,
                region TEXT COLLATE "C" NOT NULL,
                sha256 TEXT COLLATE "C" NOT NULL,
                sizeBytes BIGINT NOT NULL,
                state TEXT COLLATE "C" NOT NULL  -- writing | live | doomed
            );
            CREATE INDEX blob_content ON blob(region, sha256, state);
            CREATE TABLE token (
                seq BIGSERIAL UNIQUE,  -- creation order (SQLite's rowid)
                id TEXT COLLATE "C" PRIMARY KEY,
                secretHash TEXT COLLATE "C" NOT NULL UNIQUE,
                principal TEXT NOT NULL,
                role TEXT NOT NULL,
                createdAt TIMESTAMPTZ NOT NULL,
                revoked BOOLEAN NOT NULL DEFAULT false
            );
            """
        ),
        (
            // Replication leases (SQLite's v4): lease times are the database's clock.
            "v2",
            """
            ALTER TABLE replication ADD COLUMN lease_owner TEXT COLLATE "C",
                ADD COLUMN lease_expires_at TIMESTAMPTZ, ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
            CREATE INDEX replication_runnable ON replication(state, lease_expires_at);
            """
        ),
    ]

    /// Any number, the same in every instance: the advisory lock migrations run under.
    static let lockKey: Int64 = 0x4C47_5F4D_4947  // "LG_MIG"

    /// Applies the migrations `c`'s database lacks, in one transaction under the advisory lock:
    /// an instance starting meanwhile waits, then finds them applied.
    static func migrate(_ c: PostgresConnection) throws(PostgresError) {
        try c.run("BEGIN")
        do {
            try c.query("SELECT pg_advisory_xact_lock($1)", [.int(lockKey)])
            try c.run(
                "CREATE TABLE IF NOT EXISTS labgallery_migrations (version TEXT PRIMARY KEY, appliedAt TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            let applied = Set(try c.query("SELECT version FROM labgallery_migrations").rows.compactMap { $0[0] })
            for migration in all where !applied.contains(migration.version) {
                try c.run(migration.sql)
                try c.query("INSERT INTO labgallery_migrations (version) VALUES ($1)", [.string(migration.version)])
            }
            try c.run("COMMIT")
        } catch {
            if !c.isBroken { try? c.run("ROLLBACK") }
            throw error
        }
    }
}

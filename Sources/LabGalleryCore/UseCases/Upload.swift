import Foundation
import Synchronization

/// The header message of an UploadImage stream.
public struct ImageUploadHeader: Sendable, Equatable {
    /// Target gallery name, `galleries/{id}` (field `gallery`).
    public var gallery: String
    /// New image id (field `image_id`).
    public var imageID: String
    /// Display name (field `display_name`).
    public var displayName: String
    /// OS type; `nil` = unspecified, which is invalid (field `os_type`).
    public var osType: OSType?
    /// OS state; `nil` = unspecified, which is invalid (field `os_state`).
    public var osState: OSState?
    /// Optional expected SHA-256 (64 hex characters, any case); empty or `nil` = not checked (field `sha256`).
    public var sha256: String?
    /// Memberwise initializer.
    public init(
        gallery: String, imageID: String, displayName: String, osType: OSType?, osState: OSState?, sha256: String? = nil
    ) {
        self.gallery = gallery
        self.imageID = imageID
        self.displayName = displayName
        self.osType = osType
        self.osState = osState
        self.sha256 = sha256
    }
}

/// One image upload in progress, created by ``LabGalleryService/beginUpload(_:caller:)``.
///
/// Bytes are streamed to a temp file in the home region's blob store and hashed incrementally;
/// nothing is held in memory beyond the chunk being written. Call ``append(_:)-(ContiguousBytes)``
/// for every chunk, then exactly one of ``finish()`` or ``abort()``. If the session is dropped
/// without either, its temp file is removed (and startup recovery removes it after a crash).
///
/// Thread safety: all state sits behind a `Mutex`, so the session is `Sendable` and may be driven
/// from an async loop that hops threads; calls are serialized, not meant to be concurrent.
public final class ImageUpload: Sendable {
    private enum State {
        case open(BlobWriter)
        case closed
    }

    /// The image being uploaded (`galleries/{g}/images/{i}`).
    public let imageName: String
    private let name: ImageName
    /// The image row to store, minus `sizeBytes` and `sha256` (known at finish).
    private let draft: Image
    private let expectedSHA256: String?
    private let service: LabGalleryService
    private let state: Mutex<State>

    init(name: ImageName, draft: Image, expectedSHA256: String?, service: LabGalleryService, writer: sending BlobWriter)
    {
        self.name = name
        self.imageName = name.description
        self.draft = draft
        self.expectedSHA256 = expectedSHA256
        self.service = service
        self.state = Mutex(.open(writer))
    }

    deinit {
        state.withLock { state in
            if case .open(var w) = state {
                w.discard()
                state = .closed
            }
        }
    }

    /// Bytes received so far.
    public var bytesReceived: Int64 {
        state.withLock { state in
            if case .open(let w) = state { return w.size }
            return 0
        }
    }

    /// Appends a chunk (written and hashed on the service's blocking threads). Throws
    /// `failedPrecondition` after finish/abort, `internal` on I/O errors and `cancelled` when the
    /// calling task is cancelled (the upload is then aborted).
    public func append(_ chunk: some ContiguousBytes) async throws(LabGalleryError) {
        try await service.blocking { () throws(LabGalleryError) in
            let result: Result<Void, LabGalleryError> = chunk.withUnsafeBytes { bytes in
                do throws(LabGalleryError) {
                    try write(bytes)
                    return .success(())
                } catch { return .failure(error) }
            }
            try result.get()
        }
    }

    /// Appends a chunk from raw memory (no copy); the memory must stay valid until this returns.
    /// Same errors as the `ContiguousBytes` overload.
    public func append(_ bytes: UnsafeRawBufferPointer) async throws(LabGalleryError) {
        try await service.blocking { () throws(LabGalleryError) in try write(bytes) }
    }

    private func write(_ bytes: UnsafeRawBufferPointer) throws(LabGalleryError) {
        try state.withLock { (state) throws(LabGalleryError) in
            guard case .open(var w) = state else {
                throw LabGalleryError.failedPrecondition(
                    message: "upload of \(imageName) is already finished or aborted")
            }
            // Take the writer out so its hash context is uniquely referenced (no copy-on-write per chunk).
            state = .closed
            do throws(LabGalleryError) {
                try w.write(bytes)
                state = .open(w)
            } catch {
                w.discard()
                state = .closed
                throw error
            }
        }
    }

    /// Verifies the checksum, makes the blob durable (or shares an identical blob of the region),
    /// and records the image with its replication records in one transaction. On any error or
    /// cancellation nothing is stored: no row, no file.
    ///
    /// - Throws: `invalidArgument(field: "sha256")` on checksum mismatch; `invalidArgument(field: "chunk")`
    ///   if no bytes were sent; `alreadyExists`/`notFound` if the image appeared or the gallery vanished
    ///   meanwhile; `failedPrecondition` if already finished or aborted.
    public func finish() async throws(LabGalleryError) -> Image {
        try await service.blocking { () throws(LabGalleryError) in try finishNow() }
    }

    private func finishNow() throws(LabGalleryError) -> Image {
        try state.withLock { (state) throws(LabGalleryError) -> Image in
            guard case .open(var w) = state else {
                throw LabGalleryError.failedPrecondition(
                    message: "upload of \(imageName) is already finished or aborted")
            }
            state = .closed
            guard w.size > 0 else {
                w.discard()
                throw LabGalleryError.invalid(
                    "chunk",
                    "no image bytes were received for \(imageName); send the image bytes in chunk messages after the header"
                )
            }
            let actual = w.sha256
            if let expected = expectedSHA256, expected != actual {
                w.discard()
                throw LabGalleryError.invalid(
                    "sha256",
                    "checksum mismatch for \(imageName): header says \(expected) but the received \(w.size) bytes hash to \(actual); nothing was stored, upload again"
                )
            }
            var image = draft
            image.sizeBytes = w.size
            image.sha256 = actual
            return try service.storeImage(image, name: name, writer: &w)
        }
    }

    /// Abandons the upload and removes its temp file. Idempotent; a no-op after ``finish()``.
    public func abort() {
        state.withLock { state in
            if case .open(var w) = state { w.discard() }
            state = .closed
        }
    }
}

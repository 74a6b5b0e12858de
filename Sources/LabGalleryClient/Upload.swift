import Blocking
import Foundation
import GeneratedProtos
import H2RPC

extension LabGalleryClient {
    /// The largest chunk sent in one message (the server's default receive limit is 4 MiB).
    static let maxChunk = 1 << 20

    /// `UploadImage` from a file: streams its bytes after the header, reporting progress.
    ///
    /// - Parameters:
    ///   - chunkSize: bytes per message (at most 1 MiB).
    ///   - timeout: a deadline for the whole upload; nil for none (uploads can be long).
    ///   - progress: called after each chunk is handed to the connection (flow control paces it,
    ///     so the count follows what the server has taken).
    /// - Throws: `invalidArgument` when the file cannot be read; the server's status otherwise
    ///   (a wrong `sha256` is `invalidArgument` and stores nothing). With several endpoints it
    ///   goes to the next in turn; if that one cannot be reached (nothing reached a server), the
    ///   file is read again from the start for the next endpoint. Once sent, never retried (a
    ///   write).
    public func uploadImage(
        _ upload: ImageUpload, from fileURL: URL, chunkSize: Int = 256 * 1024, timeout: Duration? = nil,
        progress: (@Sendable (UploadProgress) -> Void)? = nil
    ) async throws(LabGalleryClientError) -> Image {
        let handle: FileHandle
        let size: Int64
        do {
            (handle, size) = try await BlockingExecutor.shared.run {
                let handle = try FileHandle(forReadingFrom: fileURL)
                let size = Int64(try handle.seekToEnd())
                try handle.seek(toOffset: 0)
                return (handle, size)
            }
        } catch {
            throw LabGalleryClientError(.invalidArgument, "cannot read \(fileURL.path): \(error.localizedDescription)")
        }
        defer { try? handle.close() }
        let chunks = FileChunks(handle: handle, chunkSize: min(max(chunkSize, 1), Self.maxChunk))
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var rounds = EndpointRounds(pool)
        while true {
            let endpoint = rounds.next()
            let remaining = deadline.map { $0 - ContinuousClock.now }
            if let remaining, remaining <= .zero {
                throw rounds.naming(
                    LabGalleryClientError(.deadlineExceeded, "the upload did not complete within its timeout"))
            }
            do {
                return try await uploadOnce(
                    upload, on: endpoint, chunks: chunks, totalBytes: size, timeout: remaining, progress: progress)
            } catch {
                guard error.unprocessed, !rounds.roundDone else { throw rounds.naming(error.error) }
                do { try await BlockingExecutor.shared.run { try handle.seek(toOffset: 0) } } catch {
                    throw LabGalleryClientError(.invalidArgument, "cannot read \(fileURL.path) again: \(error)")
                }
            }
        }
    }

    /// `UploadImage` from any `AsyncSequence` of byte chunks (chunks above 1 MiB are split).
    ///
    /// If `chunks` throws, the call is cancelled (the server stores nothing) and the error is
    /// rethrown as a ``LabGalleryClientError``. `totalBytes` only feeds `progress`.
    public func uploadImage<Chunks: AsyncSequence>(
        _ upload: ImageUpload, chunks: Chunks, totalBytes: Int64? = nil, timeout: Duration? = nil,
        progress: (@Sendable (UploadProgress) -> Void)? = nil
    ) async throws(LabGalleryClientError) -> Image where Chunks.Element == [UInt8] {
        do {
            return try await uploadOnce(
                upload, on: pool.order()[0], chunks: chunks, totalBytes: totalBytes, timeout: timeout,
                progress: progress)
        } catch {
            throw error.error
        }
    }

    /// How one upload attempt failed, and whether it reached no server (safe to send elsewhere).
    struct UploadAttemptError: Error {
        let error: LabGalleryClientError
        let unprocessed: Bool
    }

    /// One `UploadImage` call to `endpoint`.
    private func uploadOnce<Chunks: AsyncSequence>(
        _ upload: ImageUpload, on endpoint: Int, chunks: Chunks, totalBytes: Int64?, timeout: Duration?,
        progress: (@Sendable (UploadProgress) -> Void)?
    ) async throws(UploadAttemptError) -> Image where Chunks.Element == [UInt8] {
        let header = Labgallery_V1_UploadImageRequest.Header(
            gallery: ResourceName.gallery(upload.gallery), imageId: upload.imageID, displayName: upload.displayName,
            osType: upload.osType.proto, osState: upload.osState.proto, sha256: upload.sha256 ?? "")
        let call = Stubs(rpc: pool.members[endpoint].rpc).images.uploadImage(options: CallOptions(timeout: timeout))
        var sent: Int64 = 0
        do {
            try await call.send(.init(data: .header(header)))
            progress?(UploadProgress(bytesSent: 0, totalBytes: totalBytes))
            for try await chunk in chunks {
                var offset = 0
                while offset < chunk.count {
                    let end = min(offset + Self.maxChunk, chunk.count)
                    // A chunk that fits is sent as is (no copy); larger ones are split.
                    let part = offset == 0 && end == chunk.count ? chunk : Array(chunk[offset..<end])
                    try await call.send(.init(data: .chunk(part)))
                    sent += Int64(end - offset)
                    offset = end
                    progress?(UploadProgress(bytesSent: sent, totalBytes: totalBytes))
                }
            }
        } catch let error as RPCError {
            // The call ended early (the server refused, or the deadline passed): its status,
            // read below, is the real reason.
            _ = error
        } catch {
            call.cancel()
            throw UploadAttemptError(error: LabGalleryClientError(error), unprocessed: false)
        }
        call.finish()
        do {
            let image = Image(try await call.response())
            pool.answered(endpoint)
            return image
        } catch {
            let e = LabGalleryClientError(error)
            if e.code == .unavailable { pool.failed(endpoint) }
            throw UploadAttemptError(error: e, unprocessed: (error as? RPCError)?.unprocessed ?? false)
        }
    }
}

/// A file's bytes as an async sequence of chunks.
struct FileChunks: AsyncSequence {
    typealias Element = [UInt8]
    let handle: FileHandle
    let chunkSize: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle
        let chunkSize: Int
        /// The next chunk, read on a thread made for blocking (never the cooperative pool).
        mutating func next() async throws -> [UInt8]? {
            let (handle, chunkSize) = (handle, chunkSize)
            return try await BlockingExecutor.shared.run { () throws -> [UInt8]? in
                guard let data = try handle.read(upToCount: chunkSize), !data.isEmpty else { return nil }
                return [UInt8](data)
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: handle, chunkSize: chunkSize) }
}

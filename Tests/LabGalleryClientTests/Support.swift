import Foundation
import LabGalleryClient
import LabGalleryCore
import LabGalleryServer
import TestSupport
import Testing

// LabGalleryCore and LabGalleryClient both name types `Image`, `Gallery`, `ReplicationWatch`…:
// test code uses the client's, and qualifies the core's (`LabGalleryCore.X`).

// The CLI's tests (and their helpers that run the binary) are in Tests/LabGalleryCLITests.

/// Expects `body` to throw a `LabGalleryClientError` with `code` whose message contains `fragments`.
func expectClientError(
    _ code: LabGalleryClientError.Code, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("expected \(code), the call succeeded", sourceLocation: sourceLocation)
    } catch let error as LabGalleryClientError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(
                error.message.contains(f), "message \"\(error.message)\" should mention \"\(f)\"",
                sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected LabGalleryClientError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import LabGalleryServer
import Logging
import Synchronization
import TestSupport
import Testing

/// Log events a test collects instead of writing them.
final class LogRecorder: Sendable {
    struct Event: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let events = Mutex<[Event]>([])

    var all: [Event] { events.withLock { $0 } }

    /// The access log's lines.
    var calls: [Event] { all.filter { $0.message == "call" } }

    /// A logger at `level` writing here.
    func logger(level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(recorder: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func record(_ event: Event) { events.withLock { $0.append(event) } }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var all = metadata
            if let extra = event.metadata { all.merge(extra) { _, new in new } }
            recorder.record(
                Event(
                    level: event.level, message: "\(event.message)",
                    metadata: all.mapValues { "\($0)" }))
        }
    }
}

@Suite("the access log: one info line per call")
struct AccessLogTests {
    @Test("method, peer, principal, status, duration, bytes in and out; for every way a call ends")
    func lines() async throws {
        let log = LogRecorder()
        try await withServer(transport: .sockets, logger: log.logger()) { s in
            let admin = try s.admin()
            let anonymous = try s.connect(token: nil)

            await expectRPC(.unauthenticated) {
                _ = try await anonymous.galleries.listGalleries(.init())
            }
            var create = Labgallery_V1_CreateGalleryRequest()
            create.galleryId = "shared"
            var gallery = Labgallery_V1_Gallery()
            gallery.region = "westeurope"
            create.gallery = gallery
            _ = try await admin.galleries.createGallery(create)
            await expectRPC(.notFound) {
                var get = Labgallery_V1_GetGalleryRequest()
                get.name = "galleries/nope"
                _ = try await admin.galleries.getGallery(get)
            }
            _ = try await anonymous.health.check(.init())
            await expectRPC(.unimplemented) {
                _ = try await admin.rpc.unary(
                    MethodDescriptor(service: "x.Nope", method: "Missing"), request: Google_Protobuf_Empty(),
                    responseType: Google_Protobuf_Empty.self)
            }

            // Lines are written when calls end, which may be just after the client has its answer.
            try await eventually("five access lines") { log.calls.count >= 5 }
            let calls = log.calls
            #expect(calls.count == 5, "\(calls)")
            for call in calls {
                #expect(call.level == .info)
                #expect(call.metadata["peer"]?.wholeMatch(of: /ipv4:127\.0\.0\.1:\d+/) != nil, "\(call.metadata)")
                for key in ["method", "principal", "status", "duration_ms", "bytes_in", "bytes_out"] {
                    #expect(call.metadata[key] != nil, "\(key) in \(call.metadata)")
                }
                #expect(call.metadata["duration_ms"]?.wholeMatch(of: /\d+\.\d{3}/) != nil, "\(call.metadata)")
            }
            func line(_ method: String) -> [String: String] {
                calls.first { $0.metadata["method"]?.hasSuffix(method) == true }?.metadata ?? [:]
            }
            let rejected = line("/ListGalleries")
            #expect(rejected["status"] == "UNAUTHENTICATED" && rejected["principal"] == "-" && rejected["role"] == nil)
            #expect(rejected["error"]?.contains("authorization") == true)

            let created = line("/CreateGallery")
            let requestSize = create.serializedBytes().count
            #expect(created["method"] == "/labgallery.v1.GalleryService/CreateGallery")
            #expect(created["status"] == "OK" && created["error"] == nil, "\(created)")
            #expect(created["principal"] != "-" && created["role"] == "admin", "\(created)")
            #expect(created["bytes_in"] == "\(requestSize)", "\(created)")
            #expect(Int(created["bytes_out"] ?? "") ?? 0 > 0, "\(created)")

            let missing = line("/GetGallery")
            #expect(missing["status"] == "NOT_FOUND" && missing["error"]?.contains("galleries/nope") == true)

            let health = line("/Check")
            #expect(health["status"] == "OK" && health["principal"] == "-", "\(health)")

            let unknown = line("/x.Nope/Missing")
            #expect(unknown["status"] == "UNIMPLEMENTED" && unknown["principal"] == "-", "\(unknown)")
            #expect(unknown["bytes_in"] == "0" && unknown["bytes_out"] == "0")
        }
        // Nothing else logs a call at info: one line per call.
        #expect(log.all.filter { $0.level == .info && $0.metadata["method"] != nil }.count == log.calls.count)
    }

    @Test("above info level nothing is built or logged")
    func quiet() async throws {
        let log = LogRecorder()
        try await withServer(transport: .sockets, logger: log.logger(level: .notice)) { s in
            _ = try await s.admin().galleries.listGalleries(.init())
        }
        #expect(log.calls.isEmpty)
    }
}

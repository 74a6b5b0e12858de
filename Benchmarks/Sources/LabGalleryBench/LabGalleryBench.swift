import ArgumentParser
import Foundation
import GeneratedProtos
import H2RPC
import H2RPCNGHTTP2Transport
import Synchronization

/// Adds the bearer token to every call.
struct Bearer: ClientInterceptor {
    let token: String
    func prepare(_ head: inout ClientRequestHead) throws { head.metadata.replace("authorization", "Bearer \(token)") }
}

/// Messages received by all watchers.
final class Counter: Sendable { let value = Atomic<Int>(0) }

/// `labgallery-bench`: uploads a file through UploadImage (client streaming, 1 MiB chunks,
/// our H2RPC client), then times its replication until COMPLETED, optionally with N gallery watchers
/// attached the whole time, then deletes the image. Prints one `key=value` line for Benchmarks/replication.sh.
@main struct LabGalleryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labgallery-bench",
        abstract: "Upload and replication benchmark client for labgallery-server.")

    @Option var host = "127.0.0.1"
    @Option var port: Int
    @Option(help: "Bearer token (e.g. the contents of <data-dir>/admin.token).") var token: String
    @Option(help: "Gallery to create (in --region) and upload into.") var gallery = "bench"
    @Option var region = "r1"
    @Option(help: "Image id to upload.") var imageId: String
    @Option(help: "File to upload.") var file: String
    @Option(help: "Gallery watchers (WatchGalleryReplication) held open during the replication.") var watchers = 0
    @Option(help: "Connections the watchers are spread over.") var watcherConnections = 10
    @Flag(
        help:
            "After the replication, time CreateLab and SaveLabTemplateImage of the uploaded image (a lab account in --region)."
    )
    var templates = false

    func run() async throws {
        let rpc = RPCClient(
            transport: try H2ClientTransport(host: host, port: port), interceptors: [Bearer(token: token)])
        defer { rpc.close() }
        let galleries = Labgallery_V1_GalleryService.Client(wrapping: rpc)
        let images = Labgallery_V1_ImageService.Client(wrapping: rpc)
        let replication = Labgallery_V1_ReplicationService.Client(wrapping: rpc)
        do {
            _ = try await galleries.createGallery(
                .init(galleryId: gallery, gallery: .init(displayName: gallery, region: region)))
        } catch let e as RPCError where e.code == .alreadyExists {}

        // Watchers first, so they see the whole replication.
        let received = Counter()
        var watcherClients: [RPCClient] = []
        var watcherTasks: [Task<Void, Never>] = []
        for i in 0..<watchers {
            if watcherClients.count < min(watcherConnections, max(1, watchers)) {
                watcherClients.append(
                    RPCClient(
                        transport: try H2ClientTransport(host: host, port: port), interceptors: [Bearer(token: token)]))
            }
            let client = Labgallery_V1_ReplicationService.Client(wrapping: watcherClients[i % watcherClients.count])
            let call = try await client.watchGalleryReplication(.init(gallery: "galleries/\(gallery)"))
            watcherTasks.append(
                Task {
                    do { for try await _ in call { received.value.add(1, ordering: .relaxed) } } catch {}
                })
        }

        // Upload, 1 MiB per message, straight from the file.
        let fd = open(file, O_RDONLY)
        guard fd >= 0 else { throw ValidationError("cannot open \(file)") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let uploadStart = ContinuousClock.now
        let call = images.uploadImage()
        try await call.send(
            .init(
                data: .header(
                    .init(
                        gallery: "galleries/\(gallery)", imageId: imageId, displayName: imageId,
                        osType: .linux, osState: .generalized, sha256: ""))))
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            total += n
            try await call.send(.init(data: .chunk(n == buffer.count ? buffer : Array(buffer[0..<n]))))
        }
        call.finish()
        let image = try await call.response()
        let uploadSeconds = Self.seconds(ContinuousClock.now - uploadStart)

        // Replication: from the upload's acknowledgement to COMPLETED.
        var final: Labgallery_V1_ReplicationStatus?
        for try await status in try await replication.watchReplication(.init(image: image.name)) { final = status }
        let replicationSeconds = Self.seconds(ContinuousClock.now - uploadStart) - uploadSeconds
        let targets = final?.regions.count ?? 0
        guard final?.aggregatedState == .completed else {
            throw ValidationError("replication did not complete: \(String(describing: final))")
        }
        try await Task.sleep(for: .milliseconds(200))
        let messages = received.value.load(ordering: .relaxed)
        for t in watcherTasks { t.cancel() }
        for c in watcherClients { c.close() }

        // CreateLab and SaveLabTemplateImage of unchanged bytes: the lab and the saved image share
        // the image's blob, so neither copies anything, whatever the image's size.
        var templateTimes = ""
        if templates {
            let accounts = Labgallery_V1_LabAccountService.Client(wrapping: rpc)
            let labs = Labgallery_V1_LabService.Client(wrapping: rpc)
            let account = "acct-\(imageId)"
            _ = try await accounts.createLabAccount(
                .init(
                    labAccountId: account, labAccount: .init(displayName: account, region: region),
                    gallery: .attachGallery("galleries/\(gallery)")))
            let labStart = ContinuousClock.now
            _ = try await labs.createLab(
                .init(labAccount: "labAccounts/\(account)", labId: "lab", lab: .init(templateImage: image.name)))
            let createLab = Self.seconds(ContinuousClock.now - labStart)
            let saveStart = ContinuousClock.now
            let saved = try await images.saveLabTemplateImage(
                .init(lab: "labAccounts/\(account)/labs/lab", imageId: "\(imageId)-saved"))
            let save = Self.seconds(ContinuousClock.now - saveStart)
            _ = try await labs.deleteLab(.init(name: "labAccounts/\(account)/labs/lab"))
            _ = try await images.deleteImage(.init(name: saved.name))
            _ = try await accounts.deleteLabAccount(.init(name: "labAccounts/\(account)"))
            templateTimes =
                " createlab_ms=\(String(format: "%.2f", createLab * 1000)) save_ms=\(String(format: "%.2f", save * 1000))"
        }
        // Delete the image (blob and replicas), as the cp/cat baselines delete their copies: the
        // next round then writes into recycled page-cache pages, like they do.
        _ = try await images.deleteImage(.init(name: image.name))
        print(
            "bytes=\(total) targets=\(targets) upload_s=\(String(format: "%.3f", uploadSeconds)) replication_s=\(String(format: "%.3f", replicationSeconds)) watchers=\(watchers) watcher_messages=\(messages)\(templateTimes)"
        )
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

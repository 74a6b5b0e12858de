/// The network a replica travels over, as the copier sees it: connection set-up, pacing and what
/// arrives. The copier only moves and hashes bytes; everything a link does to them (delay,
/// bandwidth, faults) lives in a ``ReplicaLink``.
protocol ReplicaLink: Sendable {
    /// Connection set-up before an attempt's first byte: how long it takes.
    func setUpDelay(attempt: Int) -> Duration
    /// Whether the region can be reached at all for this attempt: `nil` when it can, else why not.
    func unreachable(attempt: Int) -> String?
    /// Bytes arrived at `transfer.offset` (already written to the replica). The link may change
    /// them (a fault): it returns `true` when it did, and the copier writes them again as changed.
    /// It throws to break the transfer (a connection reset) with the reason.
    func received(_ bytes: UnsafeMutableRawBufferPointer, in transfer: LinkTransfer) throws(LinkFailure) -> Bool
    /// How long the transfer must have taken once `sent` bytes went through (bandwidth), or zero.
    func transferTime(for sent: Int64) -> Duration
}

/// Where a transfer stands when bytes arrive.
struct LinkTransfer: Equatable, Sendable {
    /// The attempt (1-based).
    var attempt: Int
    /// Offset this run of the attempt started at (a resumed run starts past zero).
    var start: Int64
    /// Offset of the bytes that arrived.
    var offset: Int64
    /// Size of the whole replica.
    var total: Int64
}

/// A link broke an attempt: the reason names the region and what happened.
struct LinkFailure: Error, Equatable, Sendable {
    var reason: String
}

/// The simulated WAN of ``RegionLink``: latency before each attempt and a bandwidth cap. No faults.
struct WANLink: ReplicaLink {
    var bandwidthBytesPerSecond: Int64?
    var latency: Duration

    init(_ link: RegionLink) {
        bandwidthBytesPerSecond = link.bandwidthBytesPerSecond
        latency = .milliseconds(link.latencyMilliseconds)
    }

    func setUpDelay(attempt: Int) -> Duration { latency }
    func unreachable(attempt: Int) -> String? { nil }
    func received(_ bytes: UnsafeMutableRawBufferPointer, in transfer: LinkTransfer) throws(LinkFailure) -> Bool {
        false
    }
    func transferTime(for sent: Int64) -> Duration {
        guard let bw = bandwidthBytesPerSecond, bw > 0 else { return .zero }
        return .nanoseconds(sent * 1_000_000_000 / bw)
    }
}

/// A link with the faults of the replication configuration injected (`failFirstAttempts`,
/// `corruptFirstAttempts`, `unreachable`), over another link. Used only when the configuration
/// asks for faults, so the production copy path never sees it otherwise.
struct FaultInjectingLink<Base: ReplicaLink>: ReplicaLink {
    var base: Base
    var region: String
    /// The first this many attempts break midway (connection reset).
    var failFirstAttempts: Int
    /// The first this many attempts write one wrong byte (only the final checksum catches it).
    var corruptFirstAttempts: Int
    /// Every attempt fails at once.
    var isUnreachable: Bool

    func setUpDelay(attempt: Int) -> Duration { base.setUpDelay(attempt: attempt) }

    func unreachable(attempt: Int) -> String? {
        isUnreachable
            ? "region \(region) is unreachable (injected fault in the replication config); check the link to \(region)"
            : base.unreachable(attempt: attempt)
    }

    func received(_ bytes: UnsafeMutableRawBufferPointer, in t: LinkTransfer) throws(LinkFailure) -> Bool {
        var changed = try base.received(bytes, in: t)
        // One flipped byte per corrupted attempt, in the first chunk of the run: only the final
        // checksum check can catch it.
        if t.attempt <= corruptFirstAttempts, t.offset == t.start, !bytes.isEmpty {
            bytes[0] ^= 0xFF
            changed = true
        }
        if t.attempt <= failFirstAttempts, t.offset + Int64(bytes.count) >= t.total / 2 {
            throw LinkFailure(
                reason: "connection to \(region) reset after \(t.offset) of \(t.total) bytes (injected fault)")
        }
        return changed
    }

    func transferTime(for sent: Int64) -> Duration { base.transferTime(for: sent) }
}

extension RegionLink {
    /// The link the copier uses to this region: the WAN model, with the configured faults if any.
    func replicaLink(region: String) -> any ReplicaLink {
        let wan = WANLink(self)
        guard failFirstAttempts > 0 || corruptFirstAttempts > 0 || unreachable else { return wan }
        return FaultInjectingLink(
            base: wan, region: region, failFirstAttempts: failFirstAttempts,
            corruptFirstAttempts: corruptFirstAttempts, isUnreachable: unreachable)
    }
}

import Foundation
import LabGalleryPostgres
import Synchronization
import TestSupport
import Testing

@testable import LabGalleryCore

/// The fleet's change feed on PostgreSQL: what one instance publishes reaches the others through
/// LISTEN/NOTIFY, and a feed whose database restarted listens again.
@Suite struct PostgresChangeFeedTests {
    /// Changes a subscriber received, in order.
    final class Received: Sendable {
        let changes = Mutex<[ReplicationChange]>([])
        func contains(_ change: ReplicationChange) -> Bool { changes.withLock { $0.contains(change) } }
    }

    private func subscribe(_ feed: PostgresChangeFeed) -> (Received, ReplicationFeedSubscription) {
        let received = Received()
        let subscription = feed.subscribe { change in received.changes.withLock { $0.append(change) } }
        return (received, subscription)
    }

    @Test func aChangePublishedOnOneInstanceReachesEveryInstance() async throws {
        let database = try await blocking { try TestPostgres.freshDatabase() }
        defer { database.drop() }
        let target = try PostgresTarget(database.url)
        let a = PostgresChangeFeed(target: target)
        let b = PostgresChangeFeed(target: target)
        defer { for feed in [a, b] { feed.close() } }
        let (onA, subA) = subscribe(a)
        let (onB, subB) = subscribe(b)
        defer { for s in [subA, subB] { s.cancel() } }

        // A feed publishes only once it listens; keep publishing until B has heard one.
        let change = ReplicationChange(image: "galleries/g/images/i\u{e9}", origin: "instance-a")
        try await eventually("B hears A's change") {
            a.publish(change)
            try await Task.sleep(for: .milliseconds(50))
            return onB.contains(change)
        }
        try await eventually("A hears its own change too") { onA.contains(change) }

        // The cancelled subscription hears nothing more; the other still does.
        subB.cancel()
        let later = ReplicationChange(image: "galleries/g/images/later", origin: "instance-b")
        b.publish(later)
        try await eventually("A hears B's change") { onA.contains(later) }
        #expect(!onB.contains(later))
    }

    @Test func aFeedListensAgainAfterTheDatabaseRestarts() async throws {
        let cluster = try await blocking { try TestPostgresCluster() }
        defer { cluster.destroy() }
        let database = try await blocking { try TestDatabase(superuserURL: cluster.url) }
        let target = try PostgresTarget(database.url)
        let a = PostgresChangeFeed(target: target)
        let b = PostgresChangeFeed(target: target)
        defer { for feed in [a, b] { feed.close() } }
        let (onB, subscription) = subscribe(b)
        defer { subscription.cancel() }
        let before = ReplicationChange(image: "galleries/g/images/before", origin: "a")
        try await eventually("B hears A before the restart") {
            a.publish(before)
            try await Task.sleep(for: .milliseconds(50))
            return onB.contains(before)
        }

        try await blocking {
            try cluster.stop()
            try cluster.start()
        }
        let after = ReplicationChange(image: "galleries/g/images/after", origin: "a")
        try await eventually("B hears A after the restart (both reconnected)") {
            a.publish(after)
            try await Task.sleep(for: .milliseconds(100))
            return onB.contains(after)
        }
    }
}

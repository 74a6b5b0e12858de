import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP proxy on loopback in front of one server, to make a connection fail in the ways a real
/// network does:
/// - `freeze()`: every connection open now stops forwarding both ways without closing (a dead
///   NAT entry, a cable pulled); new connections are forwarded normally.
/// - `hold()`: from now on, what clients send is read and counted (`heldBytes`) but dropped, and
///   the server's bytes are left unread: a request is sent and never answered.
/// - `close()`: the listener and every connection close (an instance that died: later connects
///   are refused).
final class LoopbackProxy: @unchecked Sendable {
    // @unchecked: `listener`, `port` and `upstreamPort` never change after init; the rest is a
    // Mutex or atomics.
    private let listener: Int32
    let port: Int
    private let upstreamPort: Int
    private let state = Mutex<(pairs: [Pair], accepted: Int, closed: Bool)>(([], 0, false))
    private let held = Atomic<Bool>(false)
    private let heldCount = Atomic<Int>(0)

    final class Pair: Sendable {
        let client: Int32
        let server: Int32
        let frozen = Atomic<Bool>(false)
        let closed = Atomic<Bool>(false)
        init(_ client: Int32, _ server: Int32) {
            self.client = client
            self.server = server
        }
        func close() {
            guard !closed.exchange(true, ordering: .relaxed) else { return }
            shutdown(client, Int32(SHUT_RDWR))
            shutdown(server, Int32(SHUT_RDWR))
        }
    }

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var a = Self.loopback(0)
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0, listen(fd, 64) == 0 else { throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: a.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Connections accepted so far.
    var connections: Int { state.withLock { $0.accepted } }
    /// Bytes clients sent while held (read, never forwarded).
    var heldBytes: Int { heldCount.load(ordering: .relaxed) }

    func freeze() { state.withLock { s in for p in s.pairs { p.frozen.store(true, ordering: .relaxed) } } }

    func hold() { held.store(true, ordering: .relaxed) }

    func close() {
        let pairs = state.withLock { s -> [Pair] in
            s.closed = true
            return s.pairs
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for p in pairs { p.close() }
    }

    private static func loopback(_ port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return a
    }

    private func acceptLoop() {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                Glibc.close(listener)
                return
            }
            let u = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = Self.loopback(upstreamPort)
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(u, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if rc != 0 {
                Glibc.close(c)
                Glibc.close(u)
                continue
            }
            let pair = Pair(c, u)
            let open = state.withLock { s -> Bool in
                s.accepted += 1
                s.pairs.append(pair)
                return !s.closed
            }
            if !open { pair.close() }
            Thread.detachNewThread { [self] in pump(pair, fromClient: true) }
            Thread.detachNewThread { [self] in pump(pair, fromClient: false) }
        }
    }

    /// Copies one direction until either side closes. Frozen, it reads and sends nothing; held,
    /// the client's bytes are read, counted and dropped and the server's are left unread.
    private func pump(_ pair: Pair, fromClient: Bool) {
        let (from, to) = fromClient ? (pair.client, pair.server) : (pair.server, pair.client)
        var buf = [UInt8](repeating: 0, count: 65536)
        let paused = { [self] in
            pair.frozen.load(ordering: .relaxed) || (!fromClient && held.load(ordering: .relaxed))
        }
        while !pair.closed.load(ordering: .relaxed) {
            if paused() {
                usleep(20_000)
                continue
            }
            var pfd = pollfd(fd: from, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) <= 0 { continue }
            if paused() { continue }  // paused while waiting: the bytes stay unread
            let n = buf.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            if held.load(ordering: .relaxed) {
                heldCount.add(n, ordering: .relaxed)
                continue
            }
            var sent = 0
            while sent < n {
                let k = buf.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                if k <= 0 { break }
                sent += k
            }
        }
        pair.close()
    }
}

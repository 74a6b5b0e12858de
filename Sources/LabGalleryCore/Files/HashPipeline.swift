import Crypto
import Dispatch
import Foundation

/// SHA-256 computed on its own thread while the caller goes on reading and writing.
///
/// SHA-256 (~1.8 GB/s with SHA-NI) costs as much as the page-cache copy it accompanies; done
/// inline it halves the throughput of uploads and replica copies. The caller fills one of
/// `depth` reusable slots with ``fill(_:)``, goes on using those bytes (e.g. writes them to
/// disk) while the hash thread reads them, and gets the digest from ``finish()``.
/// Memory is bounded: `depth × slotSize`, allocated once.
final class HashPipeline: Sendable {
    /// Bytes one ``fill(_:)`` can hand out.
    var slotSize: Int { core.slotSize }
    private let core: Core

    init(slotSize: Int = 1 << 20, depth: Int = 4) {
        core = Core(slotSize: slotSize, depth: depth)
        let thread = Thread { [core] in core.run() }
        thread.name = "sha256"
        thread.start()
    }

    deinit { _ = core.finish() }

    /// Waits for a free slot, lets `body` fill it (returning how many bytes it wrote, at most
    /// `slotSize`), queues those bytes for hashing and returns them. They stay valid and
    /// unchanged until the next call to `fill`; the caller may only read them.
    func fill<E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) -> UnsafeRawBufferPointer {
        try core.fill(body)
    }

    /// Hashes `bytes` (split across slots as needed), calling `each` with every slot-sized piece
    /// once it is queued, so the caller can write it out while it is being hashed.
    func feed<E: Error>(_ bytes: UnsafeRawBufferPointer, _ each: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        var offset = 0
        while offset < bytes.count {
            let piece = core.fill { slot in
                let n = min(slot.count, bytes.count - offset)
                slot.baseAddress!.copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                return n
            }
            offset += piece.count
            try each(piece)
        }
    }

    /// Waits for everything queued to be hashed and returns the lowercase hex digest.
    /// Idempotent; nothing may be filled afterwards.
    func finish() -> String { core.finish() }

    /// The producer/consumer state shared with the hash thread.
    ///
    /// `@unchecked Sendable`: a slot is written only by the producer between taking it (`free`)
    /// and posting it (`ready`), and read by the hash thread only between `ready` and `free`; the
    /// semaphores order those accesses. `hasher` belongs to the hash thread until it signals
    /// `done`; `produced`/`digest` belong to the producer (callers of `fill`/`finish`, which the
    /// owner serializes).
    private final class Core: @unchecked Sendable {
        let slotSize: Int
        private let depth: Int
        private let memory: UnsafeMutableRawBufferPointer
        private let lengths: UnsafeMutableBufferPointer<Int>
        private let free: DispatchSemaphore
        private let ready = DispatchSemaphore(value: 0)
        private let done = DispatchSemaphore(value: 0)
        private var produced = 0
        private var digest: String?
        private var hasher = SHA256()

        init(slotSize: Int, depth: Int) {
            precondition(slotSize > 0 && depth > 0)
            self.slotSize = slotSize
            self.depth = depth
            memory = .allocate(byteCount: slotSize * depth, alignment: 4096)
            lengths = .allocate(capacity: depth)
            lengths.initialize(repeating: 0)
            free = DispatchSemaphore(value: depth)
        }

        deinit {
            memory.deallocate()
            lengths.deallocate()
        }

        private func slot(_ i: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: memory[(i * slotSize)..<((i + 1) * slotSize)])
        }

        func fill<E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E)
            -> UnsafeRawBufferPointer
        {
            precondition(digest == nil, "HashPipeline.fill after finish")
            free.wait()
            let i = produced % depth
            let n: Int
            do { n = try body(slot(i)) } catch {
                free.signal()  // the slot was never posted
                throw error
            }
            precondition(n >= 0 && n <= slotSize)
            lengths[i] = n
            produced += 1
            ready.signal()
            return UnsafeRawBufferPointer(rebasing: slot(i)[0..<n])
        }

        func finish() -> String {
            if let digest { return digest }
            free.wait()
            lengths[produced % depth] = -1  // end of input
            ready.signal()
            done.wait()
            let hex = Data(hasher.finalize()).hexString
            digest = hex
            return hex
        }

        /// The hash thread: slots in posting order until the end marker.
        func run() {
            var consumed = 0
            while true {
                ready.wait()
                let i = consumed % depth
                let n = lengths[i]
                if n >= 0 { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: slot(i)[0..<n])) }
                consumed += 1
                // Every slot goes back, the end marker's too: libdispatch traps when a semaphore
                // is freed with a value below its initial one.
                free.signal()
                if n < 0 { break }
            }
            done.signal()
        }
    }
}

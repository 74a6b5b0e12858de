/// The request messages of a client- or bidirectional-streaming call.
///
/// Iterate it once. Taking a message reopens the client's flow-control window, so a
/// handler that reads slowly slows the client down instead of buffering without bound.
public struct RequestStream<Message: RPCMessage>: AsyncSequence, Sendable {
    /// A decoded request message.
    public typealias Element = Message
    let call: ServerCall

    init(_ call: ServerCall) { self.call = call }

    /// Reads and decodes the messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: ServerCall
        /// The next message, or nil once the client half-closed; throws if the call ended or a message does not decode.
        public mutating func next() async throws -> Message? {
            guard let bytes = try await call.requests.next() else { return nil }
            let message: MessageBytes?
            do { message = try call.takeRequest(bytes) } catch {
                // A message that inflates past the limit (or is corrupt) ends the call.
                call.fail(error)
                throw error
            }
            return try decodeRequest(Message.self, message ?? bytes)
        }
    }

    /// The iterator (iterate once).
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: call) }
}

/// Writes the response messages of a server- or bidirectional-streaming call.
///
/// `write` suspends while the client is not reading fast enough (HTTP/2 flow control),
/// so memory per stream stays bounded.
public struct ResponseWriter<Message: RPCMessage>: Sendable {
    let call: ServerCall

    /// Sends one message; throws if the call is already over (cancelled, deadline, reset).
    public func write(_ message: Message) async throws {
        try await call.writeMessage(try call.encodeResponse(message))
    }

    /// Sends a message encoded beforehand, e.g. once for many streams (fan-out).
    public func write(_ message: SerializedMessage<Message>) async throws {
        try await call.writeMessage(MessageBytes(message.bytes))
    }
}

/// A message encoded once, to be written to many response streams without encoding it again
/// (one status change fanned out to a thousand watchers costs one encoding).
public struct SerializedMessage<Message: RPCMessage>: Sendable {
    let bytes: [UInt8]

    /// Encodes `message`; throws INTERNAL if it cannot be encoded.
    public init(_ message: Message) throws { bytes = try encodeResponse(message) }
}

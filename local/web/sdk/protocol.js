// The wire format of the chat protocol, version 1.1 (docs/protocol.md): what the server
// sends and takes. Clients ignore fields and frame types they do not know, so every type
// here is open to more.
/** Errors worth retrying with the same clientMessageId (section 7 of the protocol). */
export const RETRYABLE = new Set(["RATE_LIMITED", "INTERNAL", "UNAVAILABLE"]);

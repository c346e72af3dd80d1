/** Errors worth retrying with the same clientMessageId (section 7 of the protocol). */
export const RETRYABLE = new Set(["RATE_LIMITED", "INTERNAL", "UNAVAILABLE"]);

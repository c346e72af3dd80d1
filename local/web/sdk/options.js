// What an app passes to a ChatClient and gets from it: options, the socket it may plug
// in, the connection's states, events and the HTTP API's error.
export class ApiError extends Error {
    status;
    code;
    retryAfterMs;
    constructor(status, code, message, retryAfterMs) {
        super(`${status} ${code}: ${message}`);
        this.status = status;
        this.code = code;
        this.retryAfterMs = retryAfterMs;
    }
}

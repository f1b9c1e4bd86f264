/** A refusal by the service: a REST error response or a WebSocket `error` frame.
 *
 * `status` is the HTTP status (0 for a frame), `errorCode` the service's code
 * (`CHART_NOT_FOUND`, `RATE_LIMITED`...), `requestId` the id to look up in the server's logs
 * (REST) or the id the request carried (WebSocket). */
export class ChartsError extends Error {
    name = "ChartsError";
    status;
    errorCode;
    requestId;
    detail;
    /** The validation errors of a 422. */
    errors;
    /** The REST response, when there was one (its body has been read). */
    response;
    constructor(status, body, options = {}) {
        super(`${body.errorCode}: ${body.detail}`);
        this.status = status;
        this.errorCode = body.errorCode;
        this.detail = body.detail;
        this.requestId = body.requestId ?? options.requestId;
        this.errors = body.errors;
        this.response = options.response;
    }
}
/** The service could not be reached, or the socket a request was sent on closed before the
 * answer came. Safe to retry. */
export class ChartsConnectionError extends Error {
    name = "ChartsConnectionError";
}

import type { ErrorBody } from "./protocol.js";

/** A refusal by the service: a REST error response or a WebSocket `error` frame.
 *
 * `status` is the HTTP status (0 for a frame), `errorCode` the service's code
 * (`CHART_NOT_FOUND`, `RATE_LIMITED`...), `requestId` the id to look up in the server's logs
 * (REST) or the id the request carried (WebSocket). */
export class ChartsError extends Error {
  override readonly name = "ChartsError";
  readonly status: number;
  readonly errorCode: string;
  readonly requestId: string | number | undefined;
  readonly detail: string;
  /** The validation errors of a 422. */
  readonly errors: unknown[] | undefined;
  /** The REST response, when there was one (its body has been read). */
  readonly response: Response | undefined;

  constructor(
    status: number,
    body: ErrorBody,
    options: { requestId?: string | number | undefined; response?: Response } = {},
  ) {
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
  override readonly name = "ChartsConnectionError";
}

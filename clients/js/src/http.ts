import { ChartsConnectionError, ChartsError } from "./errors.js";
import type { ErrorBody } from "./protocol.js";

/** A bearer token, or a function giving the current one (called before each request and each
 * connection, so a page can renew short-lived tokens). */
export type TokenSource =
  | string
  | (() => string | null | undefined | Promise<string | null | undefined>);

export type QueryValue = string | number | boolean | null | undefined;

export interface HttpRequest {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, QueryValue>;
  body?: unknown;
  signal?: AbortSignal | undefined;
}

export interface HttpResponse<T> {
  body: T;
  response: Response;
}

/** The REST request core: base URL, credentials, JSON in and out, errors as `ChartsError`. */
export class Http {
  constructor(
    readonly baseUrl: string,
    private readonly fetchImpl: typeof fetch,
    private readonly token: TokenSource | undefined,
    private readonly apiKey: string | undefined,
    private readonly apiKeyHeader: string,
    private readonly headers: Readonly<Record<string, string>>,
  ) {}

  url(path: string, query: Record<string, QueryValue> = {}): string {
    const url = new URL(path, this.baseUrl);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  async bearer(): Promise<string | undefined> {
    const token = typeof this.token === "function" ? await this.token() : this.token;
    return token ?? undefined;
  }

  async request<T>(request: HttpRequest): Promise<HttpResponse<T>> {
    const headers: Record<string, string> = { Accept: "application/json", ...this.headers };
    const token = await this.bearer();
    if (token !== undefined) headers["Authorization"] = `Bearer ${token}`;
    if (this.apiKey !== undefined) headers[this.apiKeyHeader] = this.apiKey;
    const init: RequestInit = { method: request.method, headers };
    if (request.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(request.body);
    }
    if (request.signal !== undefined) init.signal = request.signal;
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(request.path, request.query), init);
    } catch (error) {
      if (request.signal?.aborted) throw error;
      throw new ChartsConnectionError(`${request.method} ${request.path} failed: ${describe(error)}`, {
        cause: error,
      });
    }
    const text = await response.text();
    if (!response.ok) throw refusal(response, text);
    const body = (text === "" ? undefined : JSON.parse(text)) as T;
    return { body, response };
  }
}

function refusal(response: Response, text: string): ChartsError {
  // UDF routes say what went wrong in `errmsg` (what TradingView's adapters read), not `detail`.
  let parsed: Partial<ErrorBody> & { errmsg?: unknown } = {};
  try {
    const value: unknown = JSON.parse(text);
    if (value !== null && typeof value === "object") parsed = value as Partial<ErrorBody>;
  } catch {
    // not JSON (a proxy's page): described by the status alone
  }
  const detail = parsed.detail ?? parsed.errmsg;
  const body: ErrorBody = {
    detail: typeof detail === "string" ? detail : response.statusText || "request failed",
    errorCode: typeof parsed.errorCode === "string" ? parsed.errorCode : `HTTP_${response.status}`,
  };
  const requestId = parsed.requestId ?? response.headers.get("X-Request-ID") ?? undefined;
  if (requestId !== undefined) body.requestId = requestId;
  if (Array.isArray(parsed.errors)) body.errors = parsed.errors;
  return new ChartsError(response.status, body, { response });
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

import { ChartsConnectionError, ChartsError } from "./errors.js";
/** The REST request core: base URL, credentials, JSON in and out, errors as `ChartsError`. */
export class Http {
    baseUrl;
    fetchImpl;
    token;
    apiKey;
    apiKeyHeader;
    headers;
    constructor(baseUrl, fetchImpl, token, apiKey, apiKeyHeader, headers) {
        this.baseUrl = baseUrl;
        this.fetchImpl = fetchImpl;
        this.token = token;
        this.apiKey = apiKey;
        this.apiKeyHeader = apiKeyHeader;
        this.headers = headers;
    }
    url(path, query = {}) {
        const url = new URL(path, this.baseUrl);
        for (const [name, value] of Object.entries(query)) {
            if (value !== undefined && value !== null)
                url.searchParams.set(name, String(value));
        }
        return url.toString();
    }
    async bearer() {
        const token = typeof this.token === "function" ? await this.token() : this.token;
        return token ?? undefined;
    }
    async request(request) {
        const headers = { Accept: "application/json", ...this.headers };
        const token = await this.bearer();
        if (token !== undefined)
            headers["Authorization"] = `Bearer ${token}`;
        if (this.apiKey !== undefined)
            headers[this.apiKeyHeader] = this.apiKey;
        const init = { method: request.method, headers };
        if (request.body !== undefined) {
            headers["Content-Type"] = "application/json";
            init.body = JSON.stringify(request.body);
        }
        if (request.signal !== undefined)
            init.signal = request.signal;
        let response;
        try {
            response = await this.fetchImpl(this.url(request.path, request.query), init);
        }
        catch (error) {
            if (request.signal?.aborted)
                throw error;
            throw new ChartsConnectionError(`${request.method} ${request.path} failed: ${describe(error)}`, {
                cause: error,
            });
        }
        const text = await response.text();
        if (!response.ok)
            throw refusal(response, text);
        const body = (text === "" ? undefined : JSON.parse(text));
        return { body, response };
    }
}
function refusal(response, text) {
    // UDF routes say what went wrong in `errmsg` (what TradingView's adapters read), not `detail`.
    let parsed = {};
    try {
        const value = JSON.parse(text);
        if (value !== null && typeof value === "object")
            parsed = value;
    }
    catch {
        // not JSON (a proxy's page): described by the status alone
    }
    const detail = parsed.detail ?? parsed.errmsg;
    const body = {
        detail: typeof detail === "string" ? detail : response.statusText || "request failed",
        errorCode: typeof parsed.errorCode === "string" ? parsed.errorCode : `HTTP_${response.status}`,
    };
    const requestId = parsed.requestId ?? response.headers.get("X-Request-ID") ?? undefined;
    if (requestId !== undefined)
        body.requestId = requestId;
    if (Array.isArray(parsed.errors))
        body.errors = parsed.errors;
    return new ChartsError(response.status, body, { response });
}
function describe(error) {
    if (error instanceof Error) {
        const cause = error.cause;
        return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
    }
    return String(error);
}

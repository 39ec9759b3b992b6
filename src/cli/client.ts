/**
 * A small typed HTTP client of the relay's API over Node's fetch. It is the
 * only part of the CLI that talks to the network: it puts the token in the
 * Authorization header and nowhere else, turns the API's error body
 * (`{"error": {code, message, rule?, details?}}`) into an ApiError, and
 * anything that keeps the answer from arriving into an UnreachableError.
 */

/** The API's error body, as SPEC §4 defines it. */
export interface ApiErrorBody {
  code: string;
  message: string;
  rule?: string;
  details?: Record<string, unknown>;
}

/** The relay (or a proxy in front of it) answered with an error status. */
export class ApiError extends Error {
  readonly code: string;
  readonly rule: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    readonly status: number,
    body: ApiErrorBody,
    /** Seconds from Retry-After, when the relay sent one. */
    readonly retryAfter: number | undefined,
  ) {
    super(body.message);
    this.name = 'ApiError';
    this.code = body.code;
    this.rule = body.rule;
    this.details = body.details;
  }

  /** The error body as the API sent it, for --json output. */
  toJSON(): { error: ApiErrorBody } {
    return { error: { code: this.code, message: this.message, ...(this.rule ? { rule: this.rule } : {}), ...(this.details ? { details: this.details } : {}) } };
  }
}

/** No answer: connection refused, DNS, TLS, timeout, a cut connection, or an answer too large to read. */
export class UnreachableError extends Error {
  constructor(
    readonly relay: string,
    readonly reason: string,
    /** True when the request may have reached the relay before the failure (timeout, cut connection). */
    readonly mayHaveArrived: boolean,
  ) {
    super(`cannot reach the relay at ${relay}: ${reason}`);
    this.name = 'UnreachableError';
  }
}

/** What the client needs: where, with which token, how long to wait. */
export interface ClientOptions {
  /** The relay's base URL, already normalised (no trailing slash, no credentials). */
  relay: string;
  token: string | undefined;
  timeoutMs: number;
  userAgent: string;
}

/** One request's optional parts. */
export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** Sent as application/json. */
  json?: unknown;
  /** Sent as text/plain. */
  text?: string;
  headers?: Record<string, string>;
  accept?: string;
  /** Send the token (default true); false for routes that need none. */
  auth?: boolean;
}

/** A successful answer: the status, its headers, and the body (parsed when JSON, a string otherwise). */
export interface ApiAnswer {
  status: number;
  headers: Headers;
  contentType: string;
  body: unknown;
}

/** The largest answer the CLI reads: far above any page the API returns, and bounded. */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/** Builds an API path from literal parts and values, each value URL-encoded as one segment. */
export function apiPath(strings: TemplateStringsArray, ...values: string[]): string {
  return strings.reduce((path, part, i) => path + part + (i < values.length ? encodeURIComponent(values[i]!) : ''), '');
}

// Node's fetch reports network failures as TypeError('fetch failed') with the system error as its cause.
function networkReason(err: unknown): { reason: string; mayHaveArrived: boolean } {
  if (err instanceof DOMException && (err.name === 'TimeoutError' || err.name === 'AbortError')) return { reason: 'no answer in time (timed out)', mayHaveArrived: true };
  const cause = (err as { cause?: unknown } | null)?.cause as { code?: unknown; message?: unknown } | undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const beforeSending = code !== undefined && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED'].includes(code);
  const text = code ?? (typeof cause?.message === 'string' ? cause.message : err instanceof Error ? err.message : String(err));
  return { reason: text, mayHaveArrived: !beforeSending };
}

async function readBounded(res: Response, relay: string): Promise<Buffer> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel();
      throw new UnreachableError(relay, `the answer is larger than ${MAX_ANSWER_BYTES} bytes; ask for smaller pages (--limit)`, true);
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks);
}

function isErrorBody(value: unknown): value is { error: ApiErrorBody } {
  const error = (value as { error?: unknown } | null)?.error as Partial<ApiErrorBody> | undefined;
  return typeof error === 'object' && error !== null && typeof error.code === 'string' && typeof error.message === 'string';
}

/** The relay's HTTP API. */
export class RelayClient {
  constructor(private readonly options: ClientOptions) {}

  /** The relay's base URL (never carries the token). */
  get relay(): string {
    return this.options.relay;
  }

  /** Whether a token is configured; the token itself never leaves this class but in the Authorization header. */
  get hasToken(): boolean {
    return this.options.token !== undefined;
  }

  /** Sends one request; resolves with a 2xx answer, rejects with ApiError or UnreachableError. */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ApiAnswer> {
    const url = new URL(this.options.relay + path);
    for (const [name, value] of Object.entries(opts.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { 'User-Agent': this.options.userAgent, Accept: opts.accept ?? 'application/json', ...opts.headers };
    if ((opts.auth ?? true) && this.options.token !== undefined) headers['Authorization'] = `Bearer ${this.options.token}`;
    let body: string | undefined;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.text !== undefined) {
      headers['Content-Type'] = 'text/plain; charset=utf-8';
      body = opts.text;
    }
    let res: Response;
    let raw: Buffer;
    try {
      // Redirects are not followed: the token must go only to the relay the user named.
      res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(this.options.timeoutMs) });
      raw = await readBounded(res, this.options.relay);
    } catch (err) {
      if (err instanceof UnreachableError) throw err;
      const { reason, mayHaveArrived } = networkReason(err);
      throw new UnreachableError(this.options.relay, reason, mayHaveArrived);
    }
    const contentType = (res.headers.get('content-type') ?? '').toLowerCase();
    const text = raw.toString('utf8');
    let parsed: unknown = text;
    if (contentType.startsWith('application/json') && text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (res.status >= 300 && res.status < 400) {
      const location = res.headers.get('location') ?? '(no Location)';
      throw new ApiError(res.status, { code: 'redirect', message: `The relay answered ${res.status} with a redirect to ${location}; the token is not sent on. Use that address as --relay if you trust it.` }, undefined);
    }
    if (res.status >= 400) {
      const retry = Number(res.headers.get('retry-after') ?? '');
      const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : undefined;
      if (isErrorBody(parsed)) throw new ApiError(res.status, parsed.error, retryAfter);
      // A proxy's HTML page or an empty body: say what arrived, never echo it (it could be anything).
      throw new ApiError(res.status, { code: `http_${res.status}`, message: `The relay (or a proxy in front of it) answered HTTP ${res.status} without an API error body.` }, retryAfter);
    }
    if (contentType.startsWith('application/json') && parsed === undefined) {
      throw new UnreachableError(this.options.relay, `answered HTTP ${res.status} with a body that is not valid JSON`, true);
    }
    return { status: res.status, headers: res.headers, contentType, body: parsed };
  }

  /** GET, resolving with the parsed body. */
  async get<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return (await this.request('GET', path, opts)).body as T;
  }

  /** POST a JSON body, resolving with the parsed body. */
  async post<T>(path: string, json: unknown, opts: RequestOptions = {}): Promise<T> {
    return (await this.request('POST', path, { ...opts, json })).body as T;
  }

  /** PUT a JSON body, resolving with the parsed body. */
  async put<T>(path: string, json: unknown, opts: RequestOptions = {}): Promise<T> {
    return (await this.request('PUT', path, { ...opts, json })).body as T;
  }

  /** PATCH a JSON body, resolving with the parsed body. */
  async patch<T>(path: string, json: unknown, opts: RequestOptions = {}): Promise<T> {
    return (await this.request('PATCH', path, { ...opts, json })).body as T;
  }

  /** DELETE; resolves when the relay answered 2xx. */
  async delete(path: string, opts: RequestOptions = {}): Promise<void> {
    await this.request('DELETE', path, opts);
  }
}

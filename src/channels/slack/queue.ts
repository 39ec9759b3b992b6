/**
 * Every Slack Web API call goes through one queue: one call at a time, a rate
 * limit answer pauses the queue for the Retry-After Slack sent, and transient
 * failures (network, 5xx, Slack's internal errors) are retried with
 * exponential backoff. The SDK's own retries are switched off (client.ts) so
 * that this is the one place that decides.
 */
import { WebAPIHTTPError, WebAPIPlatformError, WebAPIRateLimitedError, WebAPIRequestError } from '@slack/web-api';

/** How the queue retries. */
export interface SlackQueueOptions {
  /** First backoff after a transient failure; doubles per attempt. */
  backoffBaseMs: number;
  /** Ceiling for one backoff wait. */
  backoffMaxMs: number;
  /** Tries per call, the first included, before the call fails. */
  maxAttempts: number;
  /** A Retry-After longer than this fails the call instead of stalling the queue. */
  maxRetryAfterMs: number;
}

/** Production defaults: about half a minute of retrying before a call fails; the watchdog tries again later. */
export const DEFAULT_SLACK_QUEUE_OPTIONS: SlackQueueOptions = { backoffBaseMs: 1000, backoffMaxMs: 30_000, maxAttempts: 5, maxRetryAfterMs: 120_000 };

/** A Slack call that failed for good (or ran out of retries); `code` is Slack's error code or our own short one. */
export class SlackCallError extends Error {
  constructor(
    readonly method: string,
    readonly code: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(`${method}: ${code}`, options);
    this.name = 'SlackCallError';
  }
}

// Slack error codes that mean "try again later" rather than "you asked for something wrong".
const TRANSIENT_PLATFORM_ERRORS = new Set(['internal_error', 'fatal_error', 'service_unavailable', 'request_timeout']);

type Verdict = { kind: 'ratelimited'; retryAfterMs: number | undefined } | { kind: 'transient'; code: string } | { kind: 'permanent'; code: string };

function causeCode(err: Error): string | undefined {
  // undici wraps the socket error (ECONNREFUSED, ECONNRESET…) as the cause of "fetch failed".
  const cause = (err as { cause?: unknown }).cause;
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : err.name === 'TimeoutError' ? 'timeout' : undefined;
}

/** Sorts a thrown value into rate limited, transient or permanent. */
export function classifySlackError(err: unknown): Verdict {
  if (err instanceof WebAPIRateLimitedError) return { kind: 'ratelimited', retryAfterMs: err.retryAfter * 1000 };
  if (err instanceof WebAPIPlatformError) {
    const code = String(err.data.error);
    if (code === 'ratelimited') {
      const seconds = err.data.response_metadata?.retryAfter;
      return { kind: 'ratelimited', retryAfterMs: seconds === undefined ? undefined : seconds * 1000 };
    }
    return TRANSIENT_PLATFORM_ERRORS.has(code) ? { kind: 'transient', code } : { kind: 'permanent', code };
  }
  if (err instanceof WebAPIHTTPError) {
    const code = `http_${err.statusCode}`;
    return err.statusCode >= 500 || err.statusCode === 408 ? { kind: 'transient', code } : { kind: 'permanent', code };
  }
  if (err instanceof WebAPIRequestError) return { kind: 'transient', code: `unreachable (${causeCode(err.original) ?? 'request failed'})` };
  if (err instanceof SlackCallError) return err.transient ? { kind: 'transient', code: err.code } : { kind: 'permanent', code: err.code };
  return { kind: 'permanent', code: 'unexpected_error' };
}

/** The serial, retrying queue in front of the Slack client. */
export class SlackQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly abort = new AbortController();
  private readonly options: SlackQueueOptions;

  constructor(
    options: Partial<SlackQueueOptions> = {},
    private readonly onRetry: (info: { method: string; attempt: number; waitMs: number; code: string }) => void = () => undefined,
  ) {
    this.options = { ...DEFAULT_SLACK_QUEUE_OPTIONS, ...options };
  }

  /** Runs `call` when the calls queued before it are done, retrying as described above; throws SlackCallError. */
  run<T>(method: string, call: () => Promise<T>): Promise<T> {
    const result = this.tail.then(() => this.attempt(method, call));
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Fails queued and waiting calls; the call in flight finishes on its own. */
  stop(): void {
    this.abort.abort();
  }

  private async attempt<T>(method: string, call: () => Promise<T>): Promise<T> {
    const { backoffBaseMs, backoffMaxMs, maxAttempts, maxRetryAfterMs } = this.options;
    for (let attempt = 1; ; attempt++) {
      if (this.abort.signal.aborted) throw new SlackCallError(method, 'stopped', true);
      try {
        return await call();
      } catch (err) {
        const verdict = classifySlackError(err);
        if (verdict.kind === 'permanent') throw new SlackCallError(method, verdict.code, false, { cause: err });
        const code = verdict.kind === 'ratelimited' ? 'ratelimited' : verdict.code;
        if (attempt >= maxAttempts) throw new SlackCallError(method, code, true, { cause: err });
        const backoff = Math.min(backoffMaxMs, backoffBaseMs * 2 ** (attempt - 1));
        // Honour Retry-After exactly (Slack's rate-limit contract); fall back to backoff when it is absent.
        const waitMs = verdict.kind === 'ratelimited' ? (verdict.retryAfterMs ?? backoff) : backoff;
        if (waitMs > maxRetryAfterMs) throw new SlackCallError(method, code, true, { cause: err });
        this.onRetry({ method, attempt, waitMs, code });
        await this.sleep(waitMs, method);
      }
    }
  }

  private sleep(ms: number, method: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const signal = this.abort.signal;
      if (signal.aborted) {
        reject(new SlackCallError(method, 'stopped', true));
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(new SlackCallError(method, 'stopped', true));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Builds the @slack/web-api client the relay uses, from the configuration. */
import { LogLevel, WebClient, type Logger as SlackLogger } from '@slack/web-api';
import type { Logger } from 'pino';

/** What the client needs: SLACK_BOT_TOKEN, SLACK_API_URL, and a per-request timeout. */
export interface SlackClientConfig {
  token: string;
  /** SLACK_API_URL (GovSlack, a proxy, a test server); Slack's own when undefined. */
  apiUrl: string | undefined;
  timeoutMs?: number;
}

// The SDK's debug lines include request bodies; the queue logs what matters
// (method, attempt, error code), so SDK chatter goes to debug and no further.
function sdkLogger(logger: Logger): SlackLogger {
  const text = (msg: unknown[]): string => msg.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join(' ');
  let level = LogLevel.WARN;
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (...msg: unknown[]) => logger.debug({ component: 'slack-sdk' }, text(msg)),
    error: (...msg: unknown[]) => logger.warn({ component: 'slack-sdk' }, text(msg)),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}

/** A WebClient with its own retries and rate-limit handling off: SlackQueue retries, honouring Retry-After. */
export function createSlackClient(config: SlackClientConfig, logger: Logger): WebClient {
  return new WebClient(config.token, {
    // The SDK appends the method name to this URL; it adds the trailing slash itself.
    ...(config.apiUrl !== undefined ? { slackApiUrl: config.apiUrl } : {}),
    retryConfig: { retries: 0 },
    // Surface 429s as WebAPIRateLimitedError instead of sleeping inside the SDK.
    rejectRateLimitedCalls: true,
    // Never let one hung request hold the queue for ever.
    timeout: config.timeoutMs ?? 15_000,
    logger: sdkLogger(logger),
  });
}

/**
 * What the listeners, services and workers share. Built once in main.ts (or in
 * a test) and passed in: no module reaches for globals.
 */
import type { Logger } from 'pino';
import type { ChannelHealth } from './channels/health.js';
import type { SlackRoom } from './channels/slack/room.js';
import type { RelayConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { Encryptor } from './pgp/pgp-mime.js';
import type { RelayKey } from './pgp/relay-key.js';
import type { KeyService } from './services/keys.js';
import type { InFlightBudget } from './services/budget.js';
import type { SendLimiter } from './services/rate-limit.js';
import type { Store } from './store/index.js';
import type { Incident, RosterMember } from './store/incidents.js';

/** Things other parts want to hear about (the Slack room follows the roster). */
export interface IncidentEvents {
  incidentCreated(incident: Incident): void;
  /** May return a promise: what must be stored before the roster answer goes out (Slack: the invite marked pending). Never rejects. */
  rosterChanged(incident: Incident, member: RosterMember): void | Promise<void>;
  incidentClosed(incident: Incident): void;
  /** A closed incident was opened again (issue 12 §5): the Slack room comes back. */
  incidentReopened(incident: Incident): void;
}

export interface RelayContext {
  config: RelayConfig;
  store: Store;
  keys: KeyService;
  relayKey: RelayKey;
  logger: Logger;
  metrics: Metrics;
  /** The clock; tests pass a fixed one. */
  now: () => Date;
  /**
   * This relay process among the replicas sharing the database: it owns the
   * delivery leases and named leases it takes. New at every start.
   */
  replicaId: string;
  events: IncidentEvents;
  /** The Slack room manager; undefined when SLACK_BOT_TOKEN is not set (Slack off). */
  slack?: SlackRoom | undefined;
  /** Wakes the delivery worker after something was queued. */
  notifyOutbox: () => void;
  /** Bytes being composed relay-wide, with a cap (a request past it is answered 503 / 451 with Retry-After). */
  inFlight: InFlightBudget;
  /** Per-token limit on the sending routes (email and SMS, HTTP and SMTP). */
  sendLimiter: SendLimiter;
  /** Where PGP signing and encryption run; undefined = in the calling thread. main.ts sets a worker pool. */
  encryptor?: Encryptor | undefined;
  /** Whether each delivery channel's upstream works (warnings for /healthz); main.ts sets it. */
  health?: ChannelHealth | undefined;
}

/** Events that go nowhere, for when Slack is off. */
export const NO_EVENTS: IncidentEvents = {
  incidentCreated: () => undefined,
  rosterChanged: () => undefined,
  incidentClosed: () => undefined,
  incidentReopened: () => undefined,
};

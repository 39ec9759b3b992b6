/**
 * What the listeners, services and workers share. Built once in main.ts (or in
 * a test) and passed in: no module reaches for globals.
 */
import type { Logger } from 'pino';
import type { RelayConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { RelayKey } from './pgp/relay-key.js';
import type { KeyService } from './services/keys.js';
import type { Store } from './store/index.js';
import type { Incident, RosterMember } from './store/incidents.js';

/** Things other parts want to hear about (the Slack room follows the roster). */
export interface IncidentEvents {
  incidentCreated(incident: Incident): void;
  rosterChanged(incident: Incident, member: RosterMember): void;
  incidentClosed(incident: Incident): void;
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
  events: IncidentEvents;
}

/** Events that go nowhere, for when Slack is off. */
export const NO_EVENTS: IncidentEvents = {
  incidentCreated: () => undefined,
  rosterChanged: () => undefined,
  incidentClosed: () => undefined,
};

/** Prometheus metrics, one registry per relay instance (tests build many). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  /** 1, labelled with this relay's replica id, so dashboards can tell replicas apart. */
  replicaInfo: Gauge<'replica' | 'store'>;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  decisions: Counter<'channel' | 'outcome' | 'code'>;
  deliveries: Counter<'channel' | 'outcome'>;
  queueDepth: Gauge<'channel'>;
  acceptSeconds: Histogram<'channel'>;
  /** Delivery attempts that failed because the upstream itself did (UpstreamProblem), by channel and problem. */
  upstreamFailures: Counter<'channel' | 'problem'>;
  /** 1 while a channel's upstream works (or has not failed yet), 0 while it has an UpstreamProblem. */
  channelHealthy: Gauge<'channel'>;
  /** SMTP connections that never authenticated and failed AUTH attempts, by reason (counted, not audited one by one). */
  smtpUnauthenticated: Counter<'reason'>;
}

/** Where gauges read the store's state when /metrics is scraped. */
export interface MetricSources {
  /** Deliveries of a channel still queued (all replicas). */
  queued?: (channel: 'email' | 'sms') => Promise<number> | number;
  /** Deliveries this replica holds a lease on. */
  leased?: () => Promise<number> | number;
}

/** Creates the metrics; `withDefaults` adds process metrics (only in the running relay). */
export function createMetrics(withDefaults = false, sources: MetricSources = {}): Metrics {
  const registry = new Registry();
  const { queued, leased } = sources;
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'relay_' });
  if (leased) {
    // Registered, read when scraped; nothing else refers to it.
    new Gauge({
      name: 'relay_delivery_leases',
      help: 'Deliveries this replica holds a lease on (sending now, or waiting for their outcome to be written)',
      registers: [registry],
      async collect(this: Gauge) {
        this.set(await leased());
      },
    });
  }
  return {
    registry,
    httpRequests: new Counter({ name: 'relay_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    decisions: new Counter({ name: 'relay_policy_decisions_total', help: 'Policy decisions by channel, outcome and error code', labelNames: ['channel', 'outcome', 'code'], registers: [registry] }),
    deliveries: new Counter({ name: 'relay_deliveries_total', help: 'Delivery attempts by channel and outcome', labelNames: ['channel', 'outcome'], registers: [registry] }),
    queueDepth: new Gauge({
      name: 'relay_queue_depth',
      help: 'Deliveries waiting, by channel',
      labelNames: ['channel'],
      registers: [registry],
      // Counted when scraped rather than by the delivery worker on every look
      // at the queue: two COUNT(*) over the queue per delivery cost the main
      // thread more than a scrape every few seconds does.
      ...(queued
        ? {
            async collect(this: Gauge<'channel'>) {
              for (const channel of ['email', 'sms'] as const) this.set({ channel }, await queued(channel));
            },
          }
        : {}),
    }),
    replicaInfo: new Gauge({ name: 'relay_replica_info', help: 'This relay replica (value 1) and its store backend', labelNames: ['replica', 'store'], registers: [registry] }),
    acceptSeconds: new Histogram({ name: 'relay_accept_seconds', help: 'Time from request to durable queue', labelNames: ['channel'], registers: [registry], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] }),
    upstreamFailures: new Counter({
      name: 'relay_upstream_failures_total',
      help: 'Delivery attempts that failed because the upstream itself failed (login, TLS, greeting, connection…), by channel and problem',
      labelNames: ['channel', 'problem'],
      registers: [registry],
    }),
    channelHealthy: new Gauge({ name: 'relay_channel_healthy', help: '1 while the channel can deliver, 0 while its upstream has a problem', labelNames: ['channel'], registers: [registry] }),
    smtpUnauthenticated: new Counter({
      name: 'relay_smtp_unauthenticated_total',
      help: 'SMTP connections closed without authenticating (reason connection, before_greeting) and failed AUTH attempts (reason unknown_token, bad_username, …) on this replica',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}

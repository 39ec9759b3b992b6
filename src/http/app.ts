/**
 * The HTTP listener: JSON in, typed calls to the services, JSON out. It only
 * translates; the policy and the pipeline live elsewhere.
 */
import express, { type Express } from 'express';
import { consoleRouter } from '../console/index.js';
import type { RelayContext } from '../context.js';
import { authenticate } from './auth.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { refuseDeclaredOversize } from './oversize.js';
import { adminRoutes } from './routes/admin.js';
import { announcementRoutes } from './routes/announcements.js';
import { auditHeadsRoutes } from './routes/audit-heads.js';
import { emailRoutes } from './routes/emails.js';
import { incidentRoutes } from './routes/incidents.js';
import { keyRoutes, relayKeyRoutes } from './routes/keys.js';
import { openApiRoutes } from './routes/openapi.js';
import { slackRoutes } from './routes/slack.js';
import { smsRoutes, twilioWebhookRoutes } from './routes/sms.js';
import { tokenRoutes } from './routes/tokens.js';

/** The largest JSON body: a message at RELAY_MAX_MESSAGE_BYTES as base64, plus room for the envelope fields. */
export function jsonBodyLimit(maxMessageBytes: number): number {
  return Math.ceil((maxMessageBytes * 4) / 3) + 64 * 1024;
}

/** Builds the express app over the given context. */
export function createApp(ctx: RelayContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path ?? 'unmatched';
      ctx.metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      // Never the body, the query or the Authorization header.
      ctx.logger.debug({ method: req.method, route, status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'http');
    });
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });

  // Twilio's inbound webhook: signed rather than bearer-authenticated, with its own form parser.
  app.use(twilioWebhookRoutes(ctx));

  // The web console (issue 13): its own session, body parsers, headers and HTML errors.
  app.use('/console', consoleRouter(ctx));

  // The relay's public key needs no token (issue 12 §8): counsel checks signatures without an account.
  app.use(relayKeyRoutes(ctx));

  // The API reference (docs/openapi.yaml) needs no token either; a broken document stops the start here.
  app.use(openApiRoutes());

  // Authenticate before parsing, and parse only under /v1: nobody without a
  // token makes us read a large body, and no path outside the API (/healthz,
  // an unknown one) has its body read at all. The Twilio webhook above keeps
  // its own form parser and limit.
  app.use('/v1', authenticate(ctx));
  app.use('/v1', refuseDeclaredOversize(jsonBodyLimit(ctx.config.maxMessageBytes)));
  app.use('/v1', express.json({ limit: jsonBodyLimit(ctx.config.maxMessageBytes), strict: true, type: ['application/json', 'application/*+json'] }));
  app.use('/v1', express.text({ limit: '64kb', type: 'text/plain' }));
  app.use(adminRoutes(ctx));
  app.use(auditHeadsRoutes(ctx));
  app.use(tokenRoutes(ctx));
  app.use(incidentRoutes(ctx));
  app.use(keyRoutes(ctx));
  app.use(slackRoutes(ctx));
  app.use(emailRoutes(ctx));
  app.use(smsRoutes(ctx));
  app.use(announcementRoutes(ctx));
  app.use(notFoundHandler);
  app.use(errorHandler(ctx.logger));
  return app;
}

/**
 * The HTTP listener: JSON in, typed calls to the services, JSON out. It only
 * translates; the policy and the pipeline live elsewhere.
 */
import express, { type Express } from 'express';
import type { RelayContext } from '../context.js';
import { authenticate } from './auth.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { adminRoutes } from './routes/admin.js';
import { incidentRoutes } from './routes/incidents.js';
import { keyRoutes } from './routes/keys.js';
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

  // Authenticate before parsing: nobody without a token makes us read a large body.
  app.use('/v1', authenticate(ctx));
  app.use(express.json({ limit: jsonBodyLimit(ctx.config.maxMessageBytes), strict: true, type: ['application/json', 'application/*+json'] }));
  app.use(express.text({ limit: '64kb', type: 'text/plain' }));
  app.use(adminRoutes(ctx));
  app.use(tokenRoutes(ctx));
  app.use(incidentRoutes(ctx));
  app.use(keyRoutes(ctx));
  app.use(notFoundHandler);
  app.use(errorHandler(ctx.logger));
  return app;
}

/**
 * The commander's web console (issue 13), mounted at /console on the API's
 * own express app: server-rendered pages over the same services and
 * permissions as the API, one stylesheet and one small script from the
 * package, a session cookie instead of the token.
 *
 * Every answer carries the security headers (security.ts); every request
 * that changes something must come from the console's own origin; every
 * page but sign-in needs a live session; every failure is a page.
 */
import { Router, type ErrorRequestHandler, type RequestHandler } from 'express';
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import { toRelayError } from '../http/errors.js';
import { serveAsset } from './assets.js';
import { announcementRoutes } from './routes/announcements.js';
import { auditRoutes } from './routes/audit.js';
import { sendPage } from './routes/common.js';
import { emailRoutes } from './routes/emails.js';
import { incidentRoutes } from './routes/incident.js';
import { incidentsRoutes } from './routes/incidents.js';
import { requireSession, sessionRoutes, signOutRoute } from './routes/session.js';
import { originProblem, securityHeaders } from './security.js';
import type { ActiveSession } from './sessions.js';
import { SignInGuard } from './signin.js';
import { errorPage } from './views/errors.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Refuses a state-changing request whose Origin is missing or not the console's own (cross-site request forgery). */
const sameOrigin: RequestHandler = (req, _res, next) => {
  if (SAFE_METHODS.has(req.method)) {
    next();
    return;
  }
  const problem = originProblem(req);
  if (problem !== undefined) {
    throw new RelayError(
      'forbidden',
      `${problem} Nothing was changed. Use the console's own pages; behind a proxy, the proxy must pass the Host header unchanged and set X-Forwarded-Proto.`,
      { details: { check: 'origin' } },
    );
  }
  next();
};

function consoleErrors(ctx: Pick<RelayContext, 'logger'>): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) {
      ctx.logger.error({ err, path: req.path }, 'console error after the reply started');
      res.destroy();
      return;
    }
    const active = res.locals['console'] as ActiveSession | undefined;
    const signedIn = active ? { email: active.caller.email, role: active.caller.role } : undefined;
    // Every console body is a form.
    const known = toRelayError(err, 'form');
    if (!known) {
      ctx.logger.error({ err, method: req.method, path: req.path }, 'unhandled console error');
      sendPage(res, errorPage(new RelayError('internal', 'Internal error; nothing more was done. Try again, and tell an admin if it persists.'), signedIn), 500);
      return;
    }
    if (known.code === 'unavailable' && known !== err) ctx.logger.error({ err }, 'store unavailable');
    sendPage(res, errorPage(known, signedIn), known.httpStatus, known.retryAfter);
  };
}

/** The /console router; mount it with `app.use('/console', consoleRouter(ctx))`. */
export function consoleRouter(ctx: RelayContext): Router {
  const router = Router();
  const guard = new SignInGuard(ctx.metrics.registry, ctx.now());
  router.use(securityHeaders);
  router.use(async (_req, _res, next) => {
    // Failed sign-ins are summed up in the audit log at most once a minute, by whichever request comes next.
    await guard.summarise(ctx).catch((err: unknown) => ctx.logger.error({ err }, 'could not audit the console sign-in failures'));
    next();
  });
  router.use(sameOrigin);
  router.get('/assets/:name', serveAsset);
  router.get('/', (_req, res) => res.redirect(303, '/console/incidents'));
  router.use(sessionRoutes(ctx, guard));
  router.use(requireSession(ctx));
  router.post('/sign-out', signOutRoute(ctx));
  router.use(incidentsRoutes(ctx));
  router.use(incidentRoutes(ctx));
  router.use(emailRoutes(ctx));
  router.use(announcementRoutes(ctx));
  router.use(auditRoutes(ctx));
  router.use(() => {
    throw new RelayError('not_found', 'There is no such page in the console.');
  });
  router.use(consoleErrors(ctx));
  return router;
}

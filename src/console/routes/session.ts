/** Sign-in, sign-out, and the session check in front of every other console page. */
import { Router, type RequestHandler } from 'express';
import type { RelayContext } from '../../context.js';
import { asRelayError } from '../../errors.js';
import { recordTokenUse } from '../../services/tokens.js';
import { ipKey } from '../../smtp/backoff.js';
import { clearSessionCookie, sessionCookie, setSessionCookie } from '../security.js';
import { endSession, hashSessionId, isSessionId, openSession, resumeSession } from '../sessions.js';
import type { SignInGuard } from '../signin.js';
import { signInPage, type SignInNotice } from '../views/signin.js';
import { activeOf, formOf, remoteAddress, sendPage, urlencodedBody } from './common.js';

const NOTICES = new Set<string>(['signed_out', 'idle', 'expired', 'token_revoked', 'required']);

/** GET/POST /console/sign-in and POST /console/sign-out. */
export function sessionRoutes(ctx: RelayContext, guard: SignInGuard): Router {
  const router = Router();

  router.get('/sign-in', (req, res) => {
    const notice = typeof req.query['notice'] === 'string' && NOTICES.has(req.query['notice']) ? (req.query['notice'] as SignInNotice) : undefined;
    sendPage(res, signInPage({ notice }));
  });

  router.post('/sign-in', ...urlencodedBody(4096), async (req, res) => {
    const token = formOf(req).all('token')[0] ?? '';
    let caller;
    try {
      caller = await guard.signIn(ctx, { token, remoteAddress: remoteAddress(req) });
    } catch (err) {
      const known = asRelayError(err);
      if (!known) throw err;
      sendPage(res, signInPage({ error: known }), known.httpStatus, known.retryAfter);
      return;
    }
    // The token's last use, as the API's authenticate() records it: a token used only here must not read "never used".
    await recordTokenUse(ctx.store, caller.tokenId, ctx.now(), (err) => ctx.logger.warn({ err, tokenId: caller.tokenId }, 'could not record a token use'));
    // A browser that signs in again leaves no session of its own behind.
    const previous = sessionCookie(req);
    if (previous !== undefined && isSessionId(previous)) {
      const old = await ctx.store.consoleSessions.get(hashSessionId(previous));
      if (old) await endSession(ctx, old, 'signed_out');
    }
    const { id } = await openSession(ctx, caller, ipKey(remoteAddress(req)));
    setSessionCookie(req, res, id);
    res.redirect(303, '/console/incidents');
  });

  return router;
}

/**
 * Lets a request through only with a live session, and records it for the
 * routes behind. Without one: a page request is sent to sign-in (saying
 * why), a form post is answered 401 with the sign-in page.
 */
export function requireSession(ctx: Pick<RelayContext, 'store' | 'now'>): RequestHandler {
  return async (req, res, next) => {
    const id = sessionCookie(req);
    const resumed = id === undefined ? { ended: 'required' as const } : await resumeSession(ctx, id);
    if ('active' in resumed) {
      res.locals['console'] = resumed.active;
      next();
      return;
    }
    if (id !== undefined) clearSessionCookie(req, res);
    const notice: SignInNotice = resumed.ended === 'unknown' ? 'required' : resumed.ended;
    if (req.method === 'GET' || req.method === 'HEAD') {
      res.redirect(303, `/console/sign-in?notice=${notice}`);
      return;
    }
    sendPage(res, signInPage({ notice }), 401);
  };
}

/** POST /console/sign-out: the session is deleted (audited), the cookie cleared. */
export function signOutRoute(ctx: Pick<RelayContext, 'store'>): RequestHandler {
  return async (req, res) => {
    await endSession(ctx, activeOf(res).session, 'signed_out');
    clearSessionCookie(req, res);
    res.redirect(303, '/console/sign-in?notice=signed_out');
  };
}

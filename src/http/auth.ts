/** Bearer-token authentication and the caller it yields. */
import type { Request, RequestHandler, Response } from 'express';
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { Caller } from '../services/incidents.js';
import { callerFromToken, recordTokenUse } from '../services/tokens.js';

/** Checks `Authorization: Bearer <token>` and records the caller in res.locals. */
export function authenticate(ctx: RelayContext): RequestHandler {
  return async (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const match = /^Bearer ([\x21-\x7e]{1,200})$/.exec(header);
    const record = match ? await ctx.store.tokens.verify(match[1]!) : undefined;
    if (!record) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="incident-relay"');
      throw new RelayError('unauthenticated', match ? 'The token is unknown or revoked; ask an admin for a new one.' : 'Send Authorization: Bearer <token>.');
    }
    const caller: Caller = callerFromToken(record);
    res.locals['caller'] = caller;
    await recordTokenUse(ctx.store, record.id, ctx.now(), (err) => ctx.logger.warn({ err, tokenId: record.id }, 'could not record a token use'));
    next();
  };
}

/** The authenticated caller of this request. */
export function callerOf(res: Response): Caller {
  const caller = res.locals['caller'] as Caller | undefined;
  if (!caller) throw new Error('route mounted without authenticate()');
  return caller;
}

/** Refuses callers that are not admins. */
export function requireAdmin(res: Response): Caller {
  const caller = callerOf(res);
  if (caller.role !== 'admin') throw new RelayError('forbidden', 'Only an admin token may do this.');
  return caller;
}

/** A route parameter as a string (express 5 types allow arrays for wildcards). */
export function param(req: Request, name: string): string {
  const value = req.params[name];
  return typeof value === 'string' ? value : '';
}

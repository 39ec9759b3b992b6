/**
 * What the console's route modules share: answering with a page, the
 * signed-in session of a request, the incident a route acts on (authorized
 * before any body is read), and the two body parsers.
 */
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { RelayContext } from '../../context.js';
import { RelayError, asRelayError } from '../../errors.js';
import { MAX_FORM_FIELDS } from '../../http/errors.js';
import { refuseDeclaredOversize } from '../../http/oversize.js';
import { authorizeIncident, type IncidentAccess } from '../../services/incidents.js';
import type { RosterRole } from '../../store/incidents.js';
import { leaveFlash, shownFlash, type FlashInput } from '../flash.js';
import type { SafeHtml } from '../html.js';
import { FormData, parseMultipart, urlencodedForm } from '../multipart.js';
import type { ActiveSession } from '../sessions.js';
import type { SignedIn } from '../views/layout.js';
import { resultPage, type NextPage } from '../views/result.js';

/** Sends a page with `status` (and Retry-After for a refusal that has one). */
export function sendPage(res: Response, page: SafeHtml, status = 200, retryAfter?: number): void {
  if (retryAfter !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfter))));
  res.status(status).type('html').send(page.toString());
}

/** The signed-in session of this request (set by the session check). */
/** Runs `act`; a refusal it throws (a RelayError) is shown on `page` at the refusal's status. Anything else goes on to the error handler. */
export async function orRefusalPage(res: Response, page: (error: RelayError) => SafeHtml | Promise<SafeHtml>, act: () => Promise<void>): Promise<void> {
  try {
    await act();
  } catch (err) {
    const known = asRelayError(err);
    if (!known) throw err;
    sendPage(res, await page(known), known.httpStatus, known.retryAfter);
  }
}

export function activeOf(res: Response): ActiveSession {
  const active = res.locals['console'] as ActiveSession | undefined;
  if (!active) throw new Error('console route mounted without the session check');
  return active;
}

/** The header's "signed in as". */
export function signedInOf(res: Response): SignedIn {
  const { caller } = activeOf(res);
  return { email: caller.email, role: caller.role };
}

/** A route parameter as a string. */
export function param(req: Request, name: string): string {
  const value = req.params[name];
  return typeof value === 'string' ? value : '';
}

/**
 * Answers a POST whose action has committed: leaves its result for the page
 * `next` and redirects there (POST, redirect, GET). When the store will not
 * keep the result, shows it at once instead: the action is done and must
 * never read as refused — "try again" with a fresh idempotency key would
 * do it twice.
 */
export async function reportDone(ctx: Pick<RelayContext, 'store' | 'logger'>, res: Response, flash: FlashInput, next: NextPage): Promise<void> {
  if (await leaveFlash(ctx, activeOf(res).session, flash)) res.redirect(303, next.href);
  else sendPage(res, resultPage(signedInOf(res), shownFlash(flash), next));
}

/**
 * Authorizes the caller for the incident in `:codename` with the roles the
 * API route uses (authorizeIncident: a non-member gets not_found), before
 * anything else — the body above all — is read.
 */
export function loadIncident(ctx: Pick<RelayContext, 'store'>, allowed: readonly RosterRole[] | 'roster' = 'roster'): RequestHandler {
  return async (req, res, next) => {
    res.locals['access'] = await authorizeIncident(ctx, activeOf(res).caller, param(req, 'codename'), allowed);
    next();
  };
}

/** The incident loadIncident authorized. */
export function accessOf(res: Response): IncidentAccess {
  const access = res.locals['access'] as IncidentAccess | undefined;
  if (!access) throw new Error('console route mounted without loadIncident');
  return access;
}

/** An url-encoded form (every form without a file input), at most `limit` bytes. */
export function urlencodedBody(limit = 64 * 1024): RequestHandler[] {
  return [refuseDeclaredOversize(limit, 'form', '. Send smaller files.'), express.urlencoded({ extended: false, limit, parameterLimit: MAX_FORM_FIELDS, type: 'application/x-www-form-urlencoded' })];
}

/** A multipart form (the roster form's key file, compose's attachments), at most `limit` bytes, kept in memory and split by parseMultipart. */
export function multipartBody(limit: number): RequestHandler[] {
  return [refuseDeclaredOversize(limit, 'form with its files', '. Send smaller files.'), express.raw({ type: 'multipart/form-data', limit })];
}

/** The request's form, whichever of the two encodings it came in. */
export function formOf(req: Request): FormData {
  if (Buffer.isBuffer(req.body)) return new FormData(parseMultipart(req.body, req.get('content-type') ?? ''));
  if (req.is('multipart/form-data')) throw new RelayError('invalid_request', 'The form could not be read; reload the page and try again.');
  return urlencodedForm(req.body);
}

/** The client address the back-off and the audit log see (the proxy's, behind one: the relay does not trust X-Forwarded-For). */
export function remoteAddress(req: Request): string {
  return req.socket.remoteAddress ?? '';
}

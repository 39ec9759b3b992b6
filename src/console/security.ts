/**
 * The browser-facing rules of the console, in one place: the security
 * headers on every /console answer, the Origin check on every request that
 * changes something, and the session cookie's attributes.
 */
import type { Request, RequestHandler, Response } from 'express';
import { SESSION_MAX_MS } from './sessions.js';

/** The Content-Security-Policy of every console page: our own script and style only, nothing inline, never framed. */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The session cookie's name. */
export const SESSION_COOKIE = 'relay_console';

/** Sets the console's security headers on every answer under /console. */
export const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  next();
};

/**
 * Whether the browser reached us over HTTPS: TLS on this socket, or a
 * TLS-terminating proxy that says so in X-Forwarded-Proto (the proxy must
 * set it, and overwrite whatever a client sent).
 */
export function isHttps(req: Request): boolean {
  if (req.secure) return true;
  const forwarded = req.get('x-forwarded-proto');
  return forwarded !== undefined && forwarded.split(',')[0]!.trim().toLowerCase() === 'https';
}

/** This request's own origin, `scheme://host[:port]`, from the Host header as the browser sent it. */
export function ownOrigin(req: Request): string | undefined {
  const host = req.get('host');
  if (host === undefined || host === '' || !/^[A-Za-z0-9.:[\]-]{1,300}$/.test(host)) return undefined;
  return `${isHttps(req) ? 'https' : 'http'}://${host.toLowerCase()}`;
}

/**
 * Why a state-changing request was refused by the Origin check; undefined
 * when it passes. It passes when Origin is the console's own origin, or when
 * Origin is `null` and the browser's Sec-Fetch-Site says `same-origin`:
 * under `Referrer-Policy: no-referrer` browsers send `Origin: null` even for
 * a form posted to its own origin (Fetch, "append a request `Origin`
 * header"), and Sec-Fetch-Site is set by the browser alone (no page script
 * can set it), so together they say the form was the console's own. A
 * missing Origin, another origin, or `null` from anywhere else is refused.
 */
export function originProblem(req: Request): string | undefined {
  const origin = req.get('origin');
  if (origin === undefined) return 'The request carried no Origin header, so the relay cannot tell that it came from the console itself.';
  if (origin === 'null') {
    if (req.get('sec-fetch-site') === 'same-origin') return undefined;
    return 'The request came from an opaque origin (Origin: null) that the browser did not mark as the console\'s own (Sec-Fetch-Site: same-origin).';
  }
  const own = ownOrigin(req);
  if (own === undefined || origin.toLowerCase() !== own) {
    return `The request came from another origin (${origin.slice(0, 100)}) than the console (${own ?? 'unknown'}).`;
  }
  return undefined;
}

/** The session id from the request's Cookie header, if it has one. */
export function sessionCookie(req: Request): string | undefined {
  const header = req.get('cookie');
  if (header === undefined || header.length > 8192) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    if (pair.slice(0, eq).trim() === SESSION_COOKIE) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

function cookieAttributes(req: Request, maxAgeSeconds: number): string {
  return `Path=/console; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${isHttps(req) ? '; Secure' : ''}`;
}

/** Gives the browser the session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, no longer than the session's cap. */
export function setSessionCookie(req: Request, res: Response, id: string): void {
  res.append('Set-Cookie', `${SESSION_COOKIE}=${id}; ${cookieAttributes(req, Math.floor(SESSION_MAX_MS / 1000))}`);
}

/** Tells the browser to drop the session cookie. */
export function clearSessionCookie(req: Request, res: Response): void {
  res.append('Set-Cookie', `${SESSION_COOKIE}=; ${cookieAttributes(req, 0)}`);
}

/** A refusal as a page of its own, with the API's code and message and the console's way forward. */
import type { RelayError } from '../../errors.js';
import { html, type SafeHtml } from '../html.js';
import { errorBlock } from './common.js';
import { layout, type SignedIn } from './layout.js';

const TITLES: Partial<Record<string, string>> = {
  not_found: 'Not found',
  forbidden: 'Not allowed',
  unauthenticated: 'Sign in',
  rate_limited: 'Too many requests',
  unavailable: 'Unavailable',
  internal: 'Internal error',
};

/** The page for a refusal with no better place to show it (404, 403, a failed Origin check, an internal error). */
export function errorPage(error: RelayError, signedIn?: SignedIn): SafeHtml {
  // The title names the kind of refusal only: never the codename asked for.
  const title = TITLES[error.code] ?? 'Refused';
  return layout({
    title,
    signedIn,
    main: html`<h1>${title}</h1>
${errorBlock(error)}
<p><a href="/console/incidents">Back to your incidents</a></p>`,
  });
}

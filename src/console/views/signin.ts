/** The sign-in screen: one password field for the relay token. */
import type { RelayError } from '../../errors.js';
import { html, type SafeHtml } from '../html.js';
import { errorBlock } from './common.js';
import { layout } from './layout.js';

/** Why the sign-in page is shown, when there is something to say. */
export type SignInNotice = 'signed_out' | 'idle' | 'expired' | 'token_revoked' | 'required';

const NOTICES: Readonly<Record<SignInNotice, string>> = {
  signed_out: 'You are signed out. The session is gone from the relay; your token is unchanged.',
  idle: 'Your session ended after 30 minutes without activity. Sign in again.',
  expired: 'Your session reached its 12-hour limit. Sign in again.',
  token_revoked: 'The token this session was opened with has been revoked. Sign in with a new token.',
  required: 'Sign in to continue.',
};

/** The sign-in page, with a refusal or a notice when there is one. */
export function signInPage(options: { error?: RelayError | undefined; notice?: SignInNotice | undefined } = {}): SafeHtml {
  return layout({
    title: 'Sign in',
    main: html`<h1>Sign in</h1>
${options.notice ? html`<section class="flash" role="status"><p>${NOTICES[options.notice]}</p></section>` : ''}
${options.error ? errorBlock(options.error) : ''}
<form method="post" action="/console/sign-in" class="card narrow" accept-charset="utf-8">
  <p>
    <label for="token">Relay token</label>
    <input id="token" name="token" type="password" required autocomplete="off" spellcheck="false" autocapitalize="off" aria-describedby="token-hint" autofocus>
  </p>
  <p id="token-hint" class="hint">Paste the token an admin issued you (<code>ir_…</code>). It is checked once and exchanged for a session that ends after 30 minutes idle or 12 hours; the browser never keeps the token.</p>
  <p><button type="submit">Sign in</button></p>
</form>`,
  });
}

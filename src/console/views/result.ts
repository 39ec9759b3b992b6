/**
 * The result of an action that has committed, shown at once when the store
 * would not keep it for the next page (src/console/flash.ts): what was done,
 * and the way on. Never a refusal: the action is done.
 */
import type { Flash } from '../flash.js';
import { html, type SafeHtml } from '../html.js';
import { flashBlock } from './common.js';
import { layout, type SignedIn } from './layout.js';

/** Where the console goes on from a result: the page the redirect would have shown, and the incident's codename when there is one. */
export interface NextPage {
  href: string;
  codename?: string | undefined;
}

/** The page that shows `flash` in place of the redirect to `next`. */
export function resultPage(signedIn: SignedIn, flash: Flash, next: NextPage): SafeHtml {
  // The title is the codename or the page's name, as on every other page.
  return layout({
    title: next.codename ?? 'Done',
    signedIn,
    main: html`<h1>Done</h1>
${flashBlock(flash, next.codename)}
<p><a href="${next.href}">Continue</a>. Go on with this link rather than reloading: a reload would post the form again.</p>`,
  });
}

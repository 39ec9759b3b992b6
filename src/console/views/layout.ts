/**
 * The frame of every console page: the document head (our one stylesheet
 * and one script, nothing inline), the header with who is signed in and the
 * sign-out button, and the main landmark. The <title> is what a
 * shoulder-surfer or a screen share shows: a page name or a codename, never
 * a label or anything an incident is about.
 */
import { html, type SafeHtml } from '../html.js';

/** Who is signed in, for the header. */
export interface SignedIn {
  email: string;
  role: string;
}

/** One page. */
export interface PageFrame {
  /** The document title: a page name, or an incident's codename only. */
  title: string;
  signedIn?: SignedIn | undefined;
  main: SafeHtml;
}

/** The whole document. */
export function layout(frame: PageFrame): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${frame.title} · incident-relay</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script type="module" src="/console/assets/console.js"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <p class="brand"><a href="/console/incidents">incident-relay console</a></p>
  ${frame.signedIn
    ? html`<nav aria-label="Account" class="account">
    <span>Signed in as <strong>${frame.signedIn.email}</strong> (${frame.signedIn.role})</span>
    <form method="post" action="/console/sign-out" class="inline"><button type="submit" class="secondary">Sign out</button></form>
  </nav>`
    : ''}
</header>
<main id="main" tabindex="-1">
${frame.main}
</main>
</body>
</html>
`;
}

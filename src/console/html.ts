/**
 * The console's only way to make HTML: the `html` tagged template. Every
 * interpolated value is escaped unless it is SafeHtml, and SafeHtml can only
 * be made by this template (from its static text and escaped values), so
 * nothing a user typed — a roster name, a codename in a URL, a refusal's
 * details — can ever become markup.
 *
 * The template follows where each value lands in the static text, because
 * escaping alone is not enough everywhere:
 * - element text: escaped (`<`, `&`, quotes…), so `</textarea>` stays text;
 * - a quoted attribute value: escaped; markup (SafeHtml) is refused there;
 * - a URL attribute (href, src, action, formaction, …): a value that starts
 *   the URL must be a path on this origin, a fragment or an http(s) URL, or
 *   it becomes `#unsafe-url` (a `javascript:` URL escapes to itself); a value
 *   after a static start (`/console/incidents/${codename}`) is
 *   percent-encoded as one URL component, so it cannot add a path or a scheme;
 * - inside a tag but outside quotes (an attribute name, an unquoted value):
 *   only SafeHtml (`${checked}` built by this template), never a string;
 * - event-handler, style and srcdoc attributes, and <script> or <style>
 *   bodies: no interpolation at all; it throws, as a bug in the view.
 */

// Only this module holds the key that makes SafeHtml.
const KEY: unique symbol = Symbol('SafeHtml');

/** Markup built by `html`: static template text and escaped values. */
export class SafeHtml {
  readonly #text: string;

  /** Not for use outside this module: the key is private to it. */
  constructor(key: typeof KEY, text: string) {
    if (key !== KEY) throw new TypeError('SafeHtml is made only by the html template');
    this.#text = text;
  }

  /** The markup. */
  toString(): string {
    return this.#text;
  }
}

/** What a template may interpolate; false, null and undefined render nothing (for `${cond && html`…`}`). */
export type HtmlValue = string | number | false | null | undefined | SafeHtml | readonly HtmlValue[];

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
  '\0': '\uFFFD',
};

/** Escapes text for an HTML element or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`\0]/g, (c) => ESCAPES[c]!);
}

/**
 * True for a URL the console may put in a link or form: a path on this
 * origin (`/…`, not `//host` or `/\host`), a fragment, a query, or an
 * absolute http(s) URL. Everything else (javascript:, data:, vbscript:, a
 * scheme hidden behind whitespace or control characters) is refused.
 */
export function isSafeUrl(url: string): boolean {
  if (/[\x00-\x20\x7f]/.test(url)) return false;
  return /^(?:\/(?![/\\])|#|\?|https?:\/\/)/i.test(url);
}

/** Where in the markup the static text so far has left us. */
type Context = 'text' | 'comment' | 'tag' | 'double-quoted' | 'single-quoted';

// Attributes whose value is a URL.
const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'poster', 'cite', 'data', 'xlink:href']);
// The attribute a quoted value belongs to, and the static text of the value before the interpolation.
const ATTRIBUTE_VALUE = /([^\s"'<>/=]+)\s*=\s*["']([^"']*)$/;
const FORBIDDEN_ATTRIBUTE = /^(?:on.+|style|srcdoc)$/i;
const RAW_TEXT_OPEN = /^<(script|style)\b/i;

/** Follows the static text through the markup: tags, quoted values, and <script>/<style> bodies. */
class Scanner {
  context: Context = 'text';
  rawText: string | undefined;

  feed(chunk: string): void {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      switch (this.context) {
        case 'text':
          if (this.rawText !== undefined) {
            if (chunk.startsWith('</', i) && chunk.slice(i + 2, i + 2 + this.rawText.length).toLowerCase() === this.rawText) this.rawText = undefined;
            else continue;
          }
          if (chunk.startsWith('<!--', i)) {
            this.context = 'comment';
            i += 3;
          } else if (c === '<' && /[A-Za-z/!]/.test(chunk[i + 1] ?? '')) {
            this.context = 'tag';
            this.rawText = RAW_TEXT_OPEN.exec(chunk.slice(i, i + 8))?.[1]?.toLowerCase();
          }
          break;
        case 'comment':
          if (chunk.startsWith('-->', i)) {
            this.context = 'text';
            i += 2;
          }
          break;
        case 'tag':
          if (c === '"') this.context = 'double-quoted';
          else if (c === "'") this.context = 'single-quoted';
          else if (c === '>') this.context = 'text';
          break;
        case 'double-quoted':
          if (c === '"') this.context = 'tag';
          break;
        case 'single-quoted':
          if (c === "'") this.context = 'tag';
          break;
      }
    }
  }
}

function renderText(value: HtmlValue): string {
  if (value === false || value === null || value === undefined) return '';
  if (value instanceof SafeHtml) return value.toString();
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(renderText).join('');
  if (typeof value === 'number' || typeof value === 'string') return escapeHtml(String(value));
  // true, objects, functions, symbols: a bug in a view, not something to print as "[object Object]".
  throw new TypeError(`html: cannot interpolate a ${typeof value}`);
}

function renderInTag(value: HtmlValue): string {
  // '' as well: `${cond ? html` checked` : ''}` is the natural way to write an optional attribute.
  if (value === false || value === null || value === undefined || value === '') return '';
  if (value instanceof SafeHtml) return value.toString();
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(renderInTag).join('');
  throw new TypeError('html: inside a tag only markup built by html`…` may be interpolated; quote attribute values');
}

function renderAttribute(value: HtmlValue, name: string, staticPrefix: string): string {
  if (value === false || value === null || value === undefined) return '';
  if (typeof value !== 'string' && typeof value !== 'number') throw new TypeError(`html: the value of ${name}= must be text, not markup or a list`);
  const text = String(value);
  if (!URL_ATTRIBUTES.has(name)) return escapeHtml(text);
  // At the start of the URL the value decides the scheme: only safe ones pass.
  if (staticPrefix === '') return escapeHtml(isSafeUrl(text) ? text : '#unsafe-url');
  // After a static start it is one component of the URL: it cannot add a path, a query or a scheme.
  return escapeHtml(encodeURIComponent(text));
}

/** The tagged template: `html\`<p>${name}</p>\`` is SafeHtml with `name` escaped. */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): SafeHtml {
  const scanner = new Scanner();
  let out = '';
  let chunkSoFar = '';
  for (let i = 0; i < strings.length; i++) {
    const chunk = strings[i]!;
    scanner.feed(chunk);
    out += chunk;
    // The attribute a value belongs to is found in the static text since the tag opened.
    chunkSoFar = scanner.context === 'text' ? '' : chunkSoFar + chunk;
    if (i === values.length) break;
    const value = values[i];
    if (scanner.rawText !== undefined && scanner.context === 'text') throw new TypeError('html: no interpolation inside <script> or <style>');
    switch (scanner.context) {
      case 'text':
        out += renderText(value);
        break;
      case 'comment':
        throw new TypeError('html: no interpolation inside a comment');
      case 'tag':
        out += renderInTag(value);
        break;
      default: {
        const m = ATTRIBUTE_VALUE.exec(chunkSoFar);
        const name = (m?.[1] ?? '').toLowerCase();
        if (name === '' || FORBIDDEN_ATTRIBUTE.test(name)) throw new TypeError(`html: no interpolation into the ${name || 'unknown'} attribute`);
        const rendered = renderAttribute(value, name, m?.[2] ?? '');
        out += rendered;
        // What was interpolated belongs to the value's text for the next value in the same attribute.
        chunkSoFar += rendered === '' ? '' : 'x';
      }
    }
  }
  return new SafeHtml(KEY, out);
}

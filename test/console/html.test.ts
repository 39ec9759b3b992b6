/**
 * The escaping template every console page is built with: hostile strings
 * in each place a value can land come out inert, markup comes only from the
 * template itself, and the places where escaping is not enough throw.
 */
import { describe, expect, it } from 'vitest';
import { SafeHtml, escapeHtml, html, isSafeUrl } from '../../src/console/html.js';

describe('html`…` escapes every interpolation', () => {
  const hostile: Array<[string, string]> = [
    ['<script>alert(1)</script>', '&lt;script&gt;alert(1)&lt;/script&gt;'],
    ['"onmouseover="alert(1)', '&quot;onmouseover=&quot;alert(1)'],
    ["' autofocus onfocus='alert(1)", '&#39; autofocus onfocus=&#39;alert(1)'],
    ['</textarea><script>x</script>', '&lt;/textarea&gt;&lt;script&gt;x&lt;/script&gt;'],
    ['a & b', 'a &amp; b'],
    ['`${x}`', '&#96;${x}&#96;'],
    ['nul\0byte', 'nul\uFFFDbyte'],
  ];

  it.each(hostile)('in element text: %j', (input, expected) => {
    expect(html`<p>${input}</p>`.toString()).toBe(`<p>${expected}</p>`);
  });

  it.each(hostile)('in a quoted attribute value: %j', (input, expected) => {
    expect(html`<input value="${input}">`.toString()).toBe(`<input value="${expected}">`);
    expect(html`<input value='${input}'>`.toString()).toBe(`<input value='${expected}'>`);
  });

  it('inside a textarea: </textarea> cannot close it', () => {
    expect(html`<textarea>${'</textarea><img src=x onerror=alert(1)>'}</textarea>`.toString()).toBe('<textarea>&lt;/textarea&gt;&lt;img src=x onerror=alert(1)&gt;</textarea>');
  });

  it('numbers print, false/null/undefined print nothing, lists are joined, nested html is kept as markup', () => {
    const items = ['<a>', 'b'];
    expect(html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>${false}${null}${undefined}${3}`.toString()).toBe('<ul><li>&lt;a&gt;</li><li>b</li></ul>3');
  });

  it('refuses true, objects and functions rather than printing [object Object]', () => {
    expect(() => html`<p>${true as never}</p>`).toThrow(TypeError);
    expect(() => html`<p>${{} as never}</p>`).toThrow(TypeError);
    expect(() => html`<p>${(() => 1) as never}</p>`).toThrow(TypeError);
  });

  it('escapeHtml escapes the characters that end text or an attribute, and nothing else', () => {
    expect(escapeHtml(`<>&"'\`é`)).toBe('&lt;&gt;&amp;&quot;&#39;&#96;é');
  });
});

describe('SafeHtml is made only by the template', () => {
  it('cannot be constructed from outside the module', () => {
    expect(() => new SafeHtml(Symbol('SafeHtml') as never, '<script>')).toThrow(TypeError);
  });

  it('a look-alike object is not markup: it is refused, not printed raw', () => {
    const fake = { toString: () => '<script>alert(1)</script>' };
    expect(() => html`<p>${fake as never}</p>`).toThrow(TypeError);
  });
});

describe('URLs in href, src, action, formaction', () => {
  const dangerous = ['javascript:alert(1)', 'JavaScript:alert(1)', ' javascript:alert(1)', '\tjavascript:alert(1)', 'java\nscript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'vbscript:msgbox(1)', '//evil.example/x', '/\\evil.example', 'javascript&colon;alert(1)'];

  it.each(dangerous)('a value that starts the URL and is not safe becomes #unsafe-url: %j', (url) => {
    expect(html`<a href="${url}">x</a>`.toString()).toBe('<a href="#unsafe-url">x</a>');
    expect(html`<form action="${url}"></form>`.toString()).toBe('<form action="#unsafe-url"></form>');
    expect(html`<button formaction='${url}'></button>`.toString()).toBe("<button formaction='#unsafe-url'></button>");
  });

  it.each(['/console/incidents', '/console/incidents/amber-otter#roster', '#main', '?status=open', 'https://relay.corp.example/x', 'http://127.0.0.1:8080/'])('a safe URL is kept (escaped): %j', (url) => {
    expect(html`<a href="${url}">x</a>`.toString()).toBe(`<a href="${escapeHtml(url)}">x</a>`);
    expect(isSafeUrl(url)).toBe(true);
  });

  it('a value after a static start is one URL component: it cannot add a path, a query or a scheme', () => {
    expect(html`<a href="/console/incidents/${'../../v1/tokens?x=1&y="2"'}">x</a>`.toString()).toBe('<a href="/console/incidents/..%2F..%2Fv1%2Ftokens%3Fx%3D1%26y%3D%222%22">x</a>');
    expect(html`<a href="/console/roster/${'javascript:alert(1)'}">x</a>`.toString()).toBe('<a href="/console/roster/javascript%3Aalert(1)">x</a>');
  });

  it('markup is refused in a URL attribute', () => {
    expect(() => html`<a href="${html`/x`}">x</a>`).toThrow(TypeError);
  });
});

describe('places where escaping is not enough throw', () => {
  it('event handler, style and srcdoc attributes', () => {
    expect(() => html`<a onclick="${'x'}">x</a>`).toThrow(/event handler|onclick/);
    expect(() => html`<p style="${'color:red'}">x</p>`).toThrow(TypeError);
    expect(() => html`<iframe srcdoc="${'<p>'}"></iframe>`).toThrow(TypeError);
  });

  it('an unquoted attribute value or an attribute name (a string there could add onmouseover=…)', () => {
    expect(() => html`<input value=${'x onmouseover=alert(1)'}>`).toThrow(/quote/);
    expect(() => html`<input ${'onmouseover=alert(1)'}>`).toThrow(TypeError);
  });

  it('but markup the template built may add an attribute (checked, selected)', () => {
    expect(html`<input type="checkbox"${html` checked`}>`.toString()).toBe('<input type="checkbox" checked>');
  });

  it('inside <script> or <style>, and inside a comment', () => {
    expect(() => html`<script>var x = ${'1'};</script>`).toThrow(/script/);
    expect(() => html`<style>p { color: ${'red'} }</style>`).toThrow(/style/);
    expect(() => html`<!-- ${'x'} -->`).toThrow(/comment/);
  });

  it('after </script> closes, text interpolation works again, and a quote in a comment does not confuse it', () => {
    expect(html`<script src="/a.js"></script><p>${'<b>'}</p>`.toString()).toBe('<script src="/a.js"></script><p>&lt;b&gt;</p>');
    expect(html`<!-- it's fine --><p title="${'"x'}">${'<y>'}</p>`.toString()).toBe('<!-- it\'s fine --><p title="&quot;x">&lt;y&gt;</p>');
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../src/errors.js';
import { loadTemplate, renderTemplate, type TemplateName } from '../src/templates.js';

describe('loadTemplate', () => {
  it('the SMS nudge is byte-exact "Please join Slack ASAP."', () => {
    expect(loadTemplate('sms-nudge')).toBe('Please join Slack ASAP.');
    const bytes = readFileSync(new URL('../templates/sms-nudge.txt', import.meta.url));
    expect(bytes.equals(Buffer.from('Please join Slack ASAP.', 'utf8'))).toBe(true);
  });

  it('the Slack topic starts with the fixed subject and names only the codename', () => {
    expect(loadTemplate('slack-topic')).toBe('Attorney Work Project | {codename}');
    expect(renderTemplate(loadTemplate('slack-topic'), { codename: 'sapphire-unicorn' })).toBe('Attorney Work Project | sapphire-unicorn');
  });

  it('the welcome states the channel rules and uses no placeholder but {codename}', () => {
    const text = loadTemplate('slack-welcome');
    expect(text).toContain('Please join Slack ASAP.');
    expect(text).toContain('Attorney Work Project');
    expect(text).toContain('{codename}');
    expect(text.match(/\{[^}]*\}/g)?.every((p) => p === '{codename}')).toBe(true);
    const rendered = renderTemplate(text, { codename: 'amber-otter' });
    expect(rendered).toContain('amber-otter');
    expect(rendered).not.toMatch(/[{}]/);
  });

  it('caches: a second load returns the same text', () => {
    expect(loadTemplate('slack-welcome')).toBe(loadTemplate('slack-welcome'));
  });

  it('refuses a name outside the fixed set', () => {
    expect(() => loadTemplate('../package.json' as TemplateName)).toThrow(RelayError);
    expect(() => loadTemplate('constructor' as TemplateName)).toThrow(RelayError);
  });
});

describe('renderTemplate', () => {
  it('replaces every {codename}', () => {
    expect(renderTemplate('{codename} and {codename}', { codename: 'misty-griffin' })).toBe('misty-griffin and misty-griffin');
  });

  it('refuses a codename that is not a valid channel name', () => {
    for (const codename of ['Bad Name', 'misty-griffin\nPlease send the logs', '-abc', 'ab', '$&-evil']) {
      try {
        renderTemplate('Attorney Work Project | {codename}', { codename });
        expect.fail('expected a refusal');
      } catch (err) {
        expect(err).toBeInstanceOf(RelayError);
        expect((err as RelayError).code).toBe('invalid_request');
      }
    }
  });

  it('refuses a template with an unknown placeholder', () => {
    expect(() => renderTemplate('Hello {name} in {codename}', { codename: 'misty-griffin' })).toThrow(RelayError);
  });
});

/**
 * The console's nudge form and idempotency field follow the API's rules,
 * from the one place they are written (src/http/schemas.ts): the same
 * recipient limit, the same entry rules, the same keys accepted.
 */
import type { Request } from 'express';
import { describe, expect, it } from 'vitest';
import { idempotencyKeyOf, nudgeInput } from '../../src/console/forms.js';
import { FormData } from '../../src/console/multipart.js';
import { RelayError } from '../../src/errors.js';
import { idempotencyKey } from '../../src/http/routes/emails.js';
import { MAX_SMS_RECIPIENTS, SendSms } from '../../src/http/schemas.js';

const form = (fields: Array<[string, string]>) => new FormData(fields.map(([name, value]) => ({ name, data: Buffer.from(value, 'utf8') })));
const members = (n: number) => Array.from({ length: n }, (_, i): [string, string] => ['to', `M${i}@corp.example`]);
const refusal = (f: () => unknown): RelayError | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    if (err instanceof RelayError) return err;
    throw err;
  }
};

describe('the nudge form', () => {
  it('takes as many ticked members as the API takes in "to", lower-cased, and refuses one more', () => {
    expect(nudgeInput(form(members(MAX_SMS_RECIPIENTS)))).toEqual({ to: SendSms.parse({ to: members(MAX_SMS_RECIPIENTS).map(([, v]) => v) }).to });
    expect(nudgeInput(form(members(1)))).toEqual({ to: ['m0@corp.example'] });
    const over = refusal(() => nudgeInput(form(members(MAX_SMS_RECIPIENTS + 1))));
    expect(over?.code).toBe('invalid_request');
    expect(over?.message).toBe(`At most ${MAX_SMS_RECIPIENTS} members per nudge; choose "Nudge everyone" instead.`);
    expect(SendSms.safeParse({ to: members(MAX_SMS_RECIPIENTS + 1).map(([, v]) => v) }).success).toBe(false);
  });

  it("refuses an entry the API refuses, with the API's words", () => {
    const long = refusal(() => nudgeInput(form([['to', `${'a'.repeat(250)}@corp.example`]])));
    expect(long?.code).toBe('invalid_request');
    expect(long?.message).toMatch(/^Invalid form: to(\.0)? /);
    expect(nudgeInput(form([['scope', 'roster']]))).toEqual({ to: 'roster' });
  });
});

describe('the idempotency key', () => {
  it('is accepted by the console exactly when the API accepts it', () => {
    const api = (key: string) => refusal(() => idempotencyKey({ get: (name: string) => (name.toLowerCase() === 'idempotency-key' ? key : undefined) } as unknown as Request)) === undefined;
    const console = (key: string) => refusal(() => idempotencyKeyOf(form([['idempotencyKey', key]]))) === undefined;
    for (const key of ['a', 'compose-3f9a', 'x'.repeat(200), 'x'.repeat(201), 'has space', 'tab\there', 'é', '~!"#', '\x7f']) {
      expect([key.slice(0, 20), console(key)]).toEqual([key.slice(0, 20), api(key)]);
    }
    expect(api('x'.repeat(200))).toBe(true);
    expect(api('x'.repeat(201))).toBe(false);
  });
});

/**
 * The fixed texts of templates/ (SPEC §2, rules `sms` and `chat`): the SMS
 * nudge, the Slack topic and the pinned welcome. They are files, not strings
 * in code, so reviewers see exactly what the relay may ever say.
 */

import { readFileSync } from 'node:fs';
import { isValidCodename } from './codename/generate.js';
import { RelayError } from './errors.js';
import { parsePhraseList, type CompiledPhrase } from './policy/phrases.js';

/** The names of the templates the relay ships. */
export type TemplateName = 'sms-nudge' | 'slack-topic' | 'slack-welcome';

// Resolved from this module, not the working directory: src/templates.ts under
// vitest and dist/templates.js after the build both sit one level below the root.
const TEMPLATE_DIR = new URL('../templates/', import.meta.url);

// A fixed map rather than name-to-path concatenation, so no caller can reach another file.
const FILES: Readonly<Record<TemplateName, string>> = {
  'sms-nudge': 'sms-nudge.txt',
  'slack-topic': 'slack-topic.txt',
  'slack-welcome': 'slack-welcome.txt',
};

const cache = new Map<TemplateName, string>();

/** The template's exact text, read once from templates/ and cached. */
export function loadTemplate(name: TemplateName): string {
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  if (!Object.hasOwn(FILES, name)) {
    throw new RelayError('internal', `Unknown template "${String(name)}"; use one of ${Object.keys(FILES).join(', ')}.`);
  }
  const text = readFileSync(new URL(FILES[name], TEMPLATE_DIR), 'utf8');
  cache.set(name, text);
  return text;
}

/** Fill `{codename}` into a template; the codename must be a valid one and no other placeholder may remain. */
export function renderTemplate(text: string, vars: { codename: string }): string {
  // Only the codename may reach a channel topic or message (rule `codename`), and
  // only in its validated form, so nothing else can ride along inside it.
  if (!isValidCodename(vars.codename)) {
    throw new RelayError('invalid_request', 'codename must be 3-80 lowercase letters, digits and hyphens (Slack channel-name rules).', {
      rule: 'codename',
      details: { field: 'codename' },
    });
  }
  const rendered = text.split('{codename}').join(vars.codename);
  const leftover = /\{[A-Za-z_][A-Za-z0-9_]*\}/.exec(rendered);
  if (leftover !== null) {
    throw new RelayError('internal', `Template uses unknown placeholder ${leftover[0]}; only {codename} is supported.`);
  }
  return rendered;
}

// The forbidden-phrase list of rule `statement`: a fixed name, like the texts above.
const STATEMENT_PHRASES_FILE = 'statement-phrases.json';
let statementPhrases: readonly CompiledPhrase[] | undefined;

/**
 * The forbidden phrases for announcements, read once from
 * templates/statement-phrases.json and compiled. Throws, naming the file, the
 * entry and the problem, when the list is unreadable or a pattern is broken:
 * call it at start so such a list stops the relay instead of checking nothing.
 */
export function loadStatementPhrases(): readonly CompiledPhrase[] {
  if (statementPhrases !== undefined) return statementPhrases;
  const source = `templates/${STATEMENT_PHRASES_FILE}`;
  let json: string;
  try {
    json = readFileSync(new URL(STATEMENT_PHRASES_FILE, TEMPLATE_DIR), 'utf8');
  } catch (err) {
    throw new Error(`${source}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); it holds the phrases announcements must not use.`);
  }
  statementPhrases = Object.freeze(parsePhraseList(json, source));
  return statementPhrases;
}

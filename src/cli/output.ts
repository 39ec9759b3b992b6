/**
 * How the CLI prints: plain-text tables and field lists for people, the
 * API's JSON for scripts (`--json`), notes and errors on stderr so stdout
 * stays the result. Everything the relay sent is printed through sanitize():
 * a label or a name is text someone else typed, and must not be able to
 * drive the reader's terminal.
 */

/** Where output goes, and what kind of terminal it is. */
export interface OutputStreams {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  /** NO_COLOR is set (https://no-color.org). */
  noColor: boolean;
}

// C0 and C1 controls, DEL, and the bidirectional overrides that can make a
// line read differently from its bytes (CVE-2021-42574, "Trojan Source").
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** One line of text from any value: controls shown as \uXXXX escapes, never passed to the terminal. */
export function sanitize(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** An ISO time as `2026-11-28 10:47:03Z`; '-' when there is none. */
export function formatTime(value: unknown): string {
  if (typeof value !== 'string' || value === '') return '-';
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(value);
  return match ? `${match[1]} ${match[2]}Z` : sanitize(value);
}

/** A cell's text: '-' for nothing, lists comma-joined, all sanitized. */
export function cell(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.map((v) => sanitize(v)).join(', ');
  return sanitize(value);
}

/** Columns padded to their widest cell, two spaces apart; the header in bold when `bold` is set. */
export function renderTable(headers: string[], rows: unknown[][], bold = false): string {
  const cells = rows.map((row) => row.map(cell));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => [...(r[i] ?? '')].length)));
  const line = (values: string[]): string =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v + ' '.repeat(widths[i]! - [...v].length)))
      .join('  ')
      .trimEnd();
  const head = line(headers);
  return [bold ? `\u001b[1m${head}\u001b[0m` : head, ...cells.map(line)].join('\n') + '\n';
}

/** Indents every line of `text` by two spaces (a trailing newline stays a trailing newline). */
export function indent(text: string): string {
  return text.replace(/^(?=.)/gm, '  ');
}

/** `label: value` lines, labels aligned. */
export function renderFields(fields: [string, unknown][]): string {
  const width = Math.max(0, ...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${(label + ':').padEnd(width + 1)} ${cell(value)}`).join('\n') + '\n';
}

/** The printer a command is handed: results on stdout (JSON with --json), notes on stderr. */
export class Output {
  constructor(
    private readonly streams: OutputStreams,
    /** --json: results are the API's JSON, one document per command. */
    readonly json: boolean,
  ) {}

  /** Whether stdout may carry colour: a terminal, and NO_COLOR unset. */
  get color(): boolean {
    return this.streams.stdoutIsTTY && !this.streams.noColor;
  }

  /** Prints the result: `value` as JSON with --json, else what `human` renders. */
  result(value: unknown, human: () => string): void {
    this.streams.stdout.write(this.json ? JSON.stringify(value, null, 2) + '\n' : human());
  }

  /** Writes text to stdout as it is (an armored key, JSON lines). */
  raw(text: string): void {
    this.streams.stdout.write(text);
  }

  /** A table on stdout (for people; commands print JSON instead under --json). */
  table(headers: string[], rows: unknown[][]): string {
    return renderTable(headers, rows, this.color);
  }

  /** A note for the person at the terminal, on stderr so stdout stays parseable. */
  note(line: string): void {
    this.streams.stderr.write(line + '\n');
  }

  /** An error report on stderr, `error` in red on a terminal. */
  error(lines: string[]): void {
    const red = this.streams.stderrIsTTY && !this.streams.noColor;
    const [first = '', ...rest] = lines;
    const head = red ? first.replace(/^error/, '\u001b[31merror\u001b[0m') : first;
    this.streams.stderr.write([head, ...rest].join('\n') + '\n');
  }

  /** The error body as JSON on stdout, for scripts under --json. */
  errorJson(body: unknown): void {
    if (this.json) this.streams.stdout.write(JSON.stringify(body, null, 2) + '\n');
  }
}

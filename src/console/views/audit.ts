/**
 * The audit timeline of one incident, in the order it happened (the chain's
 * order, as GET …/audit pages it), filtered by type, actor and time: when,
 * what, who, the outcome, and a readable summary of the event's data. The audit log holds
 * no content by construction (it refuses body, subject, token… fields), so
 * the summary shows what is there: addresses, ids, rule outcomes, counts.
 */
import type { RelayError } from '../../errors.js';
import type { AuditReport } from '../../services/audit-checkpoints.js';
import type { AuditEvent } from '../../store/audit.js';
import type { Incident } from '../../store/incidents.js';
import { html, type SafeHtml } from '../html.js';
import { badge, errorBlock, incidentPath, time } from './common.js';
import { layout, type SignedIn } from './layout.js';

/** What the timeline shows. */
export interface AuditPage {
  signedIn: SignedIn;
  incident: Incident;
  /** In chain order, as readIncidentAudit gives them (Bcc taken out for readers who may not see it). */
  events: AuditEvent[];
  /** The filters as typed (for the form) and the cursor this page started from. */
  filters: AuditFilters;
  /** The cursor of the next page, when there is one. */
  next?: string | undefined;
  /** Links that fill `since` with a recent time (the relay's clock). */
  recent: { lastHour: string; lastDay: string };
  error?: RelayError | undefined;
  /** The whole chain's verification with its signed checkpoints (GET /v1/audit/verify's), for admins; undefined for everyone else. */
  verification?: AuditReport | undefined;
}

/** The filter form's values, as given in the query. */
export interface AuditFilters {
  type?: string | undefined;
  actor?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  cursor?: string | undefined;
}

const OUTCOME_TONES: Readonly<Record<string, 'good' | 'bad' | 'warn' | 'neutral'>> = { ok: 'good', refused: 'bad', failed: 'bad', retry: 'warn', corrected: 'warn' };
const MAX_LIST = 10;
const MAX_TEXT = 200;

function compact(value: unknown): string {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}…` : value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v !== 'object' || v === null)) {
    const shown = value.slice(0, MAX_LIST).map(compact).join(', ');
    return value.length > MAX_LIST ? `${shown} (+${value.length - MAX_LIST} more)` : shown || 'none';
  }
  // Per-member results (SMS decisions): "sec@corp.example queued, ic@corp.example skipped (no_phone)".
  if (Array.isArray(value) && value.every((v) => typeof v === 'object' && v !== null && typeof (v as { email?: unknown }).email === 'string')) {
    const line = (v: Record<string, unknown>): string => [v['email'], v['status'], v['reason'] !== undefined ? `(${compact(v['reason'])})` : undefined].filter((x) => x !== undefined).map(String).join(' ');
    const shown = value.slice(0, MAX_LIST).map((v) => line(v as Record<string, unknown>)).join(', ');
    return value.length > MAX_LIST ? `${shown} (+${value.length - MAX_LIST} more)` : shown;
  }
  const json = JSON.stringify(value) ?? '';
  return json.length > MAX_TEXT ? `${json.slice(0, MAX_TEXT)}…` : json;
}

interface RuleOutcome {
  rule: string;
  result: string;
  reason?: string;
}

function isRuleList(value: unknown): value is RuleOutcome[] {
  return Array.isArray(value) && value.every((r) => typeof r === 'object' && r !== null && typeof (r as RuleOutcome).rule === 'string' && typeof (r as RuleOutcome).result === 'string');
}

/** One event's data as short lines: rule outcomes spelled out, lists shortened, nested values as compact JSON. */
export function summarise(data: Record<string, unknown>): SafeHtml {
  const entries = Object.entries(data);
  if (entries.length === 0) return html`<span class="muted">—</span>`;
  return html`<ul class="data">${entries.slice(0, 20).map(([key, value]) => {
    if (key === 'rules' && isRuleList(value)) {
      return html`<li>rules: ${value.map((r, i) => html`${i > 0 ? ', ' : ''}<span class="${r.result === 'fail' ? 'rule-fail' : ''}">${r.rule} ${r.result}</span>`)}</li>`;
    }
    if (key === 'recipients' && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const lists = Object.entries(value as Record<string, unknown>).filter(([, v]) => Array.isArray(v) && v.length > 0);
      return html`<li>recipients: ${lists.map(([k, v]) => `${k} ${compact(v)}`).join('; ') || 'none'}</li>`;
    }
    return html`<li>${key}: ${compact(value)}</li>`;
  })}${entries.length > 20 ? html`<li>… ${entries.length - 20} more fields</li>` : ''}</ul>`;
}

function checkpointLine(v: AuditReport): SafeHtml {
  const c = v.checkpoints;
  const from = v.from > 0 ? ` Recomputed from the signed checkpoint at event ${v.from}.` : ' Recomputed from the first event.';
  return html`<p>Signed checkpoints: ${c.verified} of ${c.signed} hold${c.latest ? html`, the newest at event ${c.latest.seq} (${time(c.latest.at)})` : ''}.${from}${
    c.failures ? html` ${badge(`${c.failures} failed`, 'bad')} ${(c.failed ?? []).map((f) => `event ${f.seq}: ${f.reason}`).join('; ')}` : ''
  }</p>`;
}

function fullLine(v: AuditReport): SafeHtml {
  const full = v.lastFullVerification;
  if (full === undefined) return html`<p>Last full verification from the first event: none recorded yet (the checkpoint job runs one daily).</p>`;
  return html`<p>Last full verification from the first event: ${time(full.at)}, ${full.ok ? badge('held', 'good') : badge('failed', 'bad')} over ${full.events} events${full.brokenAt !== undefined ? ` (broken at event ${full.brokenAt})` : ''}${full.failures ? `, ${full.failures} checkpoint failure(s)` : ''}.</p>`;
}

function verificationBlock(v: AuditReport | undefined): SafeHtml {
  if (v === undefined) return html``;
  return v.ok
    ? html`<section class="flash" role="status" aria-labelledby="chain-title"><h2 id="chain-title">Audit chain verified</h2><p>${badge('intact', 'good')} ${v.events} events, head <code>${v.head.slice(0, 16)}…</code>.</p>${checkpointLine(v)}${fullLine(v)}</section>`
    : html`<section class="refusal" role="alert" aria-labelledby="chain-title"><h2 id="chain-title">Audit chain broken</h2><p>${badge('broken', 'bad')} ${
        v.brokenAt !== undefined ? `The chain does not hold from event ${v.brokenAt} on` : 'A signed checkpoint or the last full verification does not hold'
      } (${v.events} events). Someone changed the log behind the relay's back: keep the database as evidence and tell the admins.</p>${checkpointLine(v)}${fullLine(v)}</section>`;
}

/** The timeline's URL with these filters (and a cursor), for the pager and the preset links. */
export function auditPath(codename: string, filters: AuditFilters): string {
  const params = new URLSearchParams();
  for (const name of ['type', 'actor', 'since', 'until', 'cursor'] as const) {
    const value = filters[name];
    if (value !== undefined && value !== '') params.set(name, value);
  }
  const search = params.toString();
  return incidentPath(codename, `/audit${search === '' ? '' : `?${search}`}`);
}

function filterField(id: keyof AuditFilters, label: string, value: string | undefined, hint: string): SafeHtml {
  return html`<p>
    <label for="audit-${id}">${label}</label>
    <input id="audit-${id}" name="${id}" type="text" maxlength="254" autocomplete="off" spellcheck="false" value="${value ?? ''}" aria-describedby="audit-${id}-hint">
    <span id="audit-${id}-hint" class="hint">${hint}</span>
  </p>`;
}

/** The timeline page: the filter form (GET, the API's parameters), the events, and the pager. */
export function auditPage(page: AuditPage): SafeHtml {
  const { incident, filters } = page;
  // The filters without the cursor: what the form, the presets and the pager's first page keep.
  const kept: AuditFilters = { type: filters.type, actor: filters.actor, since: filters.since, until: filters.until };
  const filtered = Object.values(kept).some((v) => v !== undefined && v !== '');
  return layout({
    title: incident.codename,
    signedIn: page.signedIn,
    main: html`<p class="crumbs"><a href="/console/incidents">Incidents</a> › <a href="${incidentPath(incident.codename)}">${incident.codename}</a> › Audit</p>
<h1>Audit timeline of ${incident.codename}</h1>
${verificationBlock(page.verification)}
${page.error ? errorBlock(page.error, incident.codename) : ''}
<form method="get" action="${incidentPath(incident.codename, '/audit')}" class="card audit-filters" aria-labelledby="audit-filters-title">
  <h2 id="audit-filters-title">Filter</h2>
  ${filterField('type', 'Event type', kept.type, 'e.g. email.decision, or email.* for every email event')}
  ${filterField('actor', 'Actor', kept.actor, 'the address of whoever acted')}
  ${filterField('since', 'Since', kept.since, 'ISO date or time, UTC, e.g. 2026-11-28 or 2026-11-28T10:00Z (inclusive)')}
  ${filterField('until', 'Until', kept.until, 'ISO date or time, UTC (exclusive)')}
  <p class="buttons"><button type="submit" class="secondary">Apply filters</button>
    <a href="${auditPath(incident.codename, { ...kept, since: page.recent.lastHour })}">Last hour</a>
    <a href="${auditPath(incident.codename, { ...kept, since: page.recent.lastDay })}">Last 24 hours</a>
    ${filtered ? html`<a href="${incidentPath(incident.codename, '/audit')}">Clear filters</a>` : ''}</p>
</form>
${page.events.length === 0
  ? html`<p>${filtered ? 'No events match these filters.' : filters.cursor !== undefined ? 'No more events.' : 'No events yet.'}</p>`
  : html`<table class="timeline">
  <caption>${page.events.length} event${page.events.length === 1 ? '' : 's'}${filtered ? ' matching the filters' : ''}, oldest first${filters.cursor !== undefined ? ' (continued)' : ''}</caption>
  <thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Event</th><th scope="col">Actor</th><th scope="col">Outcome</th><th scope="col">Details</th></tr></thead>
  <tbody>
  ${page.events.map(
    (e) => html`<tr>
    <td>${e.seq}</td>
    <td>${time(e.at)}</td>
    <td><code>${e.type}</code></td>
    <td>${e.actor ?? html`<span class="muted">relay</span>`}</td>
    <td>${badge(e.outcome, OUTCOME_TONES[e.outcome] ?? 'neutral')}</td>
    <td>${summarise(e.data)}</td>
  </tr>`,
  )}
  </tbody>
</table>`}
<p class="buttons">${filters.cursor !== undefined ? html`<a href="${auditPath(incident.codename, kept)}">First page</a>` : ''}${page.next !== undefined ? html` <a href="${auditPath(incident.codename, { ...kept, cursor: page.next })}">Next page</a>` : ''}</p>`,
  });
}

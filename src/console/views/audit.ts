/**
 * The audit timeline of one incident, newest first: when, what, who, the
 * outcome, and a readable summary of the event's data. The audit log holds
 * no content by construction (it refuses body, subject, token… fields), so
 * the summary shows what is there: addresses, ids, rule outcomes, counts.
 */
import type { AuditReport } from '../../services/audit-checkpoints.js';
import type { AuditEvent } from '../../store/audit.js';
import type { Incident } from '../../store/incidents.js';
import { html, type SafeHtml } from '../html.js';
import { badge, incidentPath, time } from './common.js';
import { layout, type SignedIn } from './layout.js';

/** What the timeline shows. */
export interface AuditPage {
  signedIn: SignedIn;
  incident: Incident;
  /** Newest first. */
  events: AuditEvent[];
  /** True when older events exist than those shown. */
  truncated: boolean;
  /** The whole chain's verification with its signed checkpoints (GET /v1/audit/verify's), for admins; undefined for everyone else. */
  verification?: AuditReport | undefined;
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

function verificationBlock(v: AuditReport | undefined): SafeHtml {
  if (v === undefined) return html``;
  return v.ok
    ? html`<section class="flash" role="status" aria-labelledby="chain-title"><h2 id="chain-title">Audit chain verified</h2><p>${badge('intact', 'good')} ${v.events} events, head <code>${v.head.slice(0, 16)}…</code>.</p>${checkpointLine(v)}</section>`
    : html`<section class="refusal" role="alert" aria-labelledby="chain-title"><h2 id="chain-title">Audit chain broken</h2><p>${badge('broken', 'bad')} ${
        v.brokenAt !== undefined ? `The chain does not hold from event ${v.brokenAt} on` : 'A signed checkpoint or the last full verification does not hold'
      } (${v.events} events). Someone changed the log behind the relay's back: keep the database as evidence and tell the admins.</p>${checkpointLine(v)}</section>`;
}

/**
 * The timeline page.
 *
 * TODO(api-routes, second pass): filters (type, actor, since, until) and
 * paging through readIncidentAudit / auditQuery (src/services/audit-views.ts).
 */
export function auditPage(page: AuditPage): SafeHtml {
  const { incident } = page;
  return layout({
    title: incident.codename,
    signedIn: page.signedIn,
    main: html`<p class="crumbs"><a href="/console/incidents">Incidents</a> › <a href="${incidentPath(incident.codename)}">${incident.codename}</a> › Audit</p>
<h1>Audit timeline of ${incident.codename}</h1>
${verificationBlock(page.verification)}
${page.events.length === 0
  ? html`<p>No events yet.</p>`
  : html`<table class="timeline">
  <caption>${page.events.length} most recent events, newest first${page.truncated ? ' (older ones are not shown)' : ''}</caption>
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
</table>`}`,
  });
}

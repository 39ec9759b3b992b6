/** Option parsers and paging shared by the command groups. */
import { InvalidArgumentError } from 'commander';
import type { RelayClient } from '../client.js';

/** Parses a positive integer option value. */
export function positiveInt(value: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new InvalidArgumentError('must be a positive whole number.');
  return Number(value);
}

/** Collects a repeatable option; each value may itself be a comma-separated list. */
export function collectList(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  ];
}

/** Collects a repeatable option as given (file names may contain commas). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Parses an ISO 8601 time, or a date. */
export function isoTime(value: string): string {
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) || Number.isNaN(Date.parse(value))) {
    throw new InvalidArgumentError('must be an ISO 8601 time such as 2026-11-28T10:00:00Z or a date such as 2026-11-28.');
  }
  return new Date(value).toISOString();
}

/** One page of a paged list: the items under `key`, and `next` when there is more. */
export interface Page<T> {
  items: T[];
  next: string | undefined;
}

/** Fetches one page of a paged route (`limit`, `cursor` → `{<key>: [...], next?}`). */
export async function fetchPage<T>(client: RelayClient, path: string, key: string, query: Record<string, string | number | undefined>): Promise<Page<T>> {
  const body = await client.get<Record<string, unknown>>(path, { query });
  const items = Array.isArray(body?.[key]) ? (body[key] as T[]) : [];
  const next = typeof body?.['next'] === 'string' && body['next'] !== '' ? body['next'] : undefined;
  return { items, next };
}

/** Every page in turn, following `next`; one page in memory at a time. */
export async function* allPages<T>(client: RelayClient, path: string, key: string, query: Record<string, string | number | undefined>): AsyncGenerator<T[]> {
  let cursor = query['cursor'] as string | undefined;
  const seen = new Set<string>();
  for (;;) {
    const page = await fetchPage<T>(client, path, key, { ...query, cursor });
    yield page.items;
    // A relay that hands back a cursor it already gave would loop for ever.
    if (page.next === undefined || seen.has(page.next)) return;
    seen.add(page.next);
    cursor = page.next;
  }
}

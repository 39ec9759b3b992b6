/**
 * The bench's world: OpenPGP keys made with openpgp (v4, curve25519Legacy, as
 * GnuPG 2.2 users have), the 4 KB message, and an incident set up over the
 * relay's own HTTP API.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as openpgp from 'openpgp';
import type { MessageContent } from '../src/mime/compose.js';
import { expectStatus, type httpClient } from './lib.js';

/** A roster member of the bench incident. */
export interface Person {
  email: string;
  name: string;
  role: string;
  publicArmored: string;
  publicKey: openpgp.PublicKey;
}

/** Everything the scenarios share. */
export interface World {
  people: Record<'ic' | 'sec' | 'exec' | 'ops' | 'counsel', Person>;
  relayPrivate: openpgp.PrivateKey;
  relayKeyFile: string;
  adminToken: string;
}

const PEOPLE = {
  ic: { email: 'ic@corp.example', name: 'Incident Commander', role: 'commander' },
  sec: { email: 'sec@corp.example', name: 'Security Lead', role: 'security' },
  exec: { email: 'exec@corp.example', name: 'Executive', role: 'executive' },
  ops: { email: 'ops@corp.example', name: 'Service Owner', role: 'service-owner' },
  counsel: { email: 'counsel@lawfirm.example', name: 'Outside Counsel', role: 'external' },
} as const;

async function generate(name: string, email: string): Promise<openpgp.PrivateKey> {
  const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name, email }], format: 'object' });
  return privateKey;
}

/** Generates every key; the relay key is written where RELAY_KEY_FILE will point, so the raw reference signs with the very same key. */
export async function createWorld(dir: string): Promise<World> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const entries = await Promise.all(
    Object.entries(PEOPLE).map(async ([id, p]) => {
      const key = await generate(p.name, p.email);
      const publicKey = key.toPublic();
      return [id, { ...p, publicKey, publicArmored: publicKey.armor() }] as const;
    }),
  );
  const relayPrivate = await generate('incident-relay', 'relay@corp.example');
  const relayKeyFile = path.join(dir, 'relay-key.asc');
  writeFileSync(relayKeyFile, relayPrivate.armor(), { mode: 0o600 });
  return {
    people: Object.fromEntries(entries) as World['people'],
    relayPrivate,
    relayKeyFile,
    adminToken: `bench-admin-${Date.now().toString(36)}-0123456789abcdef`,
  };
}

/** 4096 bytes of plain ASCII text in 64-byte lines. */
export const TEXT_4K = Array.from({ length: 64 }, (_, i) => `${String(i).padStart(2, '0')} containment, imaging and counsel notes for the bench run`.padEnd(63, '.')).join('\n') + '\n';

/** The sender's subject; the relay turns it into the Topic line. */
export const TOPIC = 'Status update';

/** The encrypted case: two internal recipients and one external, so the whole message is PGP/MIME. */
export function encryptedRequest(): Record<string, unknown> {
  return { to: [PEOPLE.sec.email, PEOPLE.counsel.email], cc: [PEOPLE.exec.email], subject: TOPIC, text: TEXT_4K };
}

/** The plain case: three internal recipients. */
export function plainRequest(): Record<string, unknown> {
  return { to: [PEOPLE.sec.email, PEOPLE.ops.email], cc: [PEOPLE.exec.email], subject: TOPIC, text: TEXT_4K };
}

/** What the relay composes for encryptedRequest() / plainRequest(), for the in-process references. */
export function contentFor(kind: 'encrypted' | 'plain', w: World): MessageContent {
  const p = w.people;
  const second = kind === 'encrypted' ? p.counsel : p.ops;
  return {
    messageId: '<6f1c1d1e-0b7a-4b8e-9a55-3f6f0e0c2b11@corp.example>',
    date: new Date(),
    from: { name: p.ic.name, address: p.ic.email },
    to: [
      { name: p.sec.name, address: p.sec.email },
      { name: second.name, address: second.email },
    ],
    cc: [{ name: p.exec.name, address: p.exec.email }],
    topic: TOPIC,
    text: TEXT_4K,
    attachments: [],
  };
}

/** The keys the relay encrypts encryptedRequest() to: every visible recipient plus the sender. */
export function encryptionKeys(w: World): openpgp.PublicKey[] {
  const p = w.people;
  return [p.sec.publicKey, p.counsel.publicKey, p.exec.publicKey, p.ic.publicKey];
}

/** The incident as set up in one relay. */
export interface Incident {
  codename: string;
  icToken: string;
}

/** Sets the incident up over the API, as an admin and a commander would. */
export async function setUpIncident(client: ReturnType<typeof httpClient>, w: World): Promise<Incident> {
  const json = (v: unknown): string => JSON.stringify(v);
  const { token: icToken } = expectStatus<{ token: string }>(
    await client.request('POST', '/v1/tokens', w.adminToken, json({ email: PEOPLE.ic.email, role: 'responder', label: 'bench' })),
    201,
    'issue the commander token',
  );
  const { codename } = expectStatus<{ codename: string }>(await client.request('POST', '/v1/incidents', icToken, json({ codename: 'amber-otter' })), 201, 'declare the incident');
  expectStatus(await client.request('PUT', `/v1/keys/${PEOPLE.ic.email}`, icToken, json({ publicKey: w.people.ic.publicArmored })), 200, 'store the commander key');
  for (const id of ['sec', 'exec', 'ops', 'counsel'] as const) {
    const person = w.people[id];
    expectStatus(
      await client.request('PUT', `/v1/incidents/${codename}/roster/${person.email}`, icToken, json({ name: person.name, role: person.role, publicKey: person.publicArmored })),
      201,
      `add ${person.email}`,
    );
  }
  return { codename, icToken };
}

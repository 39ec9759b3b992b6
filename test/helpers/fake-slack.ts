/**
 * A local Slack Web API for tests: a real HTTP server on 127.0.0.1 that speaks
 * Slack's wire protocol (POST /api/<method>, form-encoded or JSON body, Bearer
 * token, `{ok:true,…}` / `{ok:false,error}`, HTTP 429 with Retry-After) and
 * keeps workspace state, so the real @slack/web-api client can be pointed at
 * it through slackApiUrl. Test controls play the other people in the
 * workspace: intruders, topic edits, name collisions, rate limits, outages.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A channel as the fake workspace holds it. */
export interface FakeChannel {
  id: string;
  name: string;
  isPrivate: boolean;
  archived: boolean;
  members: Set<string>;
  topic: string;
  messages: Array<{ ts: string; user: string; text: string }>;
  pins: Set<string>;
}

/** One API request the fake answered. */
export interface FakeCall {
  method: string;
  params: Record<string, unknown>;
  /** Date.now() when it arrived. */
  at: number;
  status: number;
  error: string | undefined;
}

/** Options for startFakeSlack. */
export interface FakeSlackOptions {
  /** Listen on this port (to bring a "Slack" back after an outage); 0 picks one. */
  port?: number;
  token?: string;
  botUserId?: string;
  /** Largest page conversations.members returns, whatever limit is asked, to exercise pagination. */
  maxPageSize?: number;
}

/** The running fake and its test controls. */
export interface FakeSlack {
  /** For SLACK_API_URL: http://127.0.0.1:<port>/api */
  url: string;
  port: number;
  token: string;
  botUserId: string;
  channels: Map<string, FakeChannel>;
  calls: FakeCall[];
  /** Registers a workspace user; returns the user id. */
  addUser(email: string, id?: string): string;
  channelByName(name: string): FakeChannel | undefined;
  /** Someone with the rights adds `userId` to the channel behind the relay's back. */
  addMember(channelId: string, userId: string): void;
  /** A member leaves (or is removed) on the Slack side. */
  removeMember(channelId: string, userId: string): void;
  /** Someone edits the topic in Slack. */
  setTopic(channelId: string, topic: string): void;
  /** Someone renames the channel in Slack (Slack would let a member with the right to). */
  renameChannel(channelId: string, name: string): void;
  /** A channel that is not ours already has `name` (conversations.create and conversations.rename answer name_taken). */
  takeName(name: string): void;
  /** conversations.kick refuses this user with restricted_action, as Slack does for some workspace owners. */
  protect(userId: string): void;
  /** The next call to `method` gets HTTP 429 with `Retry-After: seconds`. */
  rateLimitOnce(method: string, seconds: number): void;
  /** The next call to `method` answers `{ok:false, error}` (HTTP 200), or `status` with an empty body. */
  failOnce(method: string, failure: { error?: string; status?: number }): void;
  callsTo(method: string): FakeCall[];
  close(): Promise<void>;
}

type Params = Record<string, unknown>;
type Answer = { status?: number; headers?: Record<string, string>; body: Record<string, unknown> };

class SlackFailure extends Error {
  constructor(readonly error: string) {
    super(error);
  }
}

const str = (params: Params, name: string): string => {
  const value = params[name];
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new SlackFailure(`invalid_arguments`);
};
const bool = (params: Params, name: string): boolean => params[name] === true || params[name] === 'true' || params[name] === '1';

/** Starts the fake Slack workspace. */
export async function startFakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const token = options.token ?? 'xoxb-fake-relay-token';
  const botUserId = options.botUserId ?? 'UBOTRELAY';
  const channels = new Map<string, FakeChannel>();
  const usersByEmail = new Map<string, string>();
  const userIds = new Set<string>([botUserId]);
  const takenNames = new Set<string>();
  const protectedUsers = new Set<string>();
  const rateLimits = new Map<string, number[]>();
  const failures = new Map<string, Array<{ error?: string; status?: number }>>();
  const calls: FakeCall[] = [];
  let seq = 0;
  let tsCounter = 0;

  const channelOf = (params: Params, opts: { writable?: boolean } = {}): FakeChannel => {
    const channel = channels.get(str(params, 'channel'));
    // Private channels are invisible to non-members, exactly like deleted ones.
    if (!channel || (channel.isPrivate && !channel.members.has(botUserId))) throw new SlackFailure('channel_not_found');
    if (opts.writable && channel.archived) throw new SlackFailure('is_archived');
    return channel;
  };
  const channelJson = (c: FakeChannel): Record<string, unknown> => ({
    id: c.id,
    name: c.name,
    is_channel: true,
    is_group: false,
    is_private: c.isPrivate,
    is_archived: c.archived,
    is_member: c.members.has(botUserId),
    num_members: c.members.size,
    topic: { value: c.topic, creator: '', last_set: 0 },
    purpose: { value: '', creator: '', last_set: 0 },
  });
  const checkName = (name: string, self?: FakeChannel): void => {
    if (!/^[a-z0-9][a-z0-9_-]{0,79}$/.test(name)) throw new SlackFailure('invalid_name_specials');
    if (takenNames.has(name) || [...channels.values()].some((c) => c !== self && c.name === name)) throw new SlackFailure('name_taken');
  };
  const newChannel = (name: string, isPrivate: boolean, members: string[]): FakeChannel => {
    const channel: FakeChannel = { id: `C${String(++seq).padStart(8, '0')}`, name, isPrivate, archived: false, members: new Set(members), topic: '', messages: [], pins: new Set() };
    channels.set(channel.id, channel);
    return channel;
  };

  const methods: Record<string, (p: Params) => Record<string, unknown>> = {
    'auth.test': () => ({ url: 'https://fake.slack.test/', team: 'Fake Corp', user: 'incident-relay', team_id: 'T0FAKE', user_id: botUserId, bot_id: 'B0RELAY' }),
    'conversations.create': (p) => {
      const name = str(p, 'name');
      checkName(name);
      return { channel: channelJson(newChannel(name, bool(p, 'is_private'), [botUserId])) };
    },
    'conversations.rename': (p) => {
      const channel = channelOf(p, { writable: true });
      if (!channel.members.has(botUserId)) throw new SlackFailure('not_in_channel');
      const name = str(p, 'name');
      checkName(name, channel);
      channel.name = name;
      return { channel: channelJson(channel) };
    },
    'conversations.setTopic': (p) => {
      const channel = channelOf(p, { writable: true });
      const topic = typeof p['topic'] === 'string' ? p['topic'] : '';
      if (topic.length > 250) throw new SlackFailure('too_long');
      channel.topic = topic;
      return { channel: channelJson(channel) };
    },
    'conversations.invite': (p) => {
      const channel = channelOf(p, { writable: true });
      const users = str(p, 'users').split(',');
      if (users.some((u) => !userIds.has(u))) throw new SlackFailure('user_not_found');
      if (users.includes(botUserId)) throw new SlackFailure('cant_invite_self');
      if (users.every((u) => channel.members.has(u))) throw new SlackFailure('already_in_channel');
      for (const u of users) channel.members.add(u);
      return { channel: channelJson(channel) };
    },
    'conversations.kick': (p) => {
      const channel = channelOf(p, { writable: true });
      const user = str(p, 'user');
      if (user === botUserId) throw new SlackFailure('cant_kick_self');
      if (!channel.members.has(user)) throw new SlackFailure('not_in_channel');
      if (protectedUsers.has(user)) throw new SlackFailure('restricted_action');
      channel.members.delete(user);
      return {};
    },
    'conversations.members': (p) => {
      const channel = channelOf(p);
      const all = [...channel.members];
      const asked = typeof p['limit'] === 'number' ? p['limit'] : Number(p['limit'] ?? 100);
      const limit = Math.max(1, Math.min(asked || 100, options.maxPageSize ?? 1000));
      const cursor = typeof p['cursor'] === 'string' && p['cursor'] !== '' ? p['cursor'] : undefined;
      const start = cursor === undefined ? 0 : Number(Buffer.from(cursor, 'base64').toString('utf8').replace(/^offset:/, ''));
      const page = all.slice(start, start + limit);
      const next = start + limit < all.length ? Buffer.from(`offset:${start + limit}`).toString('base64') : '';
      return { members: page, response_metadata: { next_cursor: next } };
    },
    'conversations.info': (p) => ({ channel: channelJson(channelOf(p)) }),
    'conversations.archive': (p) => {
      const channel = channelOf(p);
      if (channel.archived) throw new SlackFailure('already_archived');
      channel.archived = true;
      return {};
    },
    'users.lookupByEmail': (p) => {
      const email = str(p, 'email').toLowerCase();
      const id = usersByEmail.get(email);
      if (id === undefined) throw new SlackFailure('users_not_found');
      return { user: { id, name: email.split('@')[0], profile: { email } } };
    },
    'chat.postMessage': (p) => {
      const channel = channelOf(p, { writable: true });
      if (!channel.members.has(botUserId)) throw new SlackFailure('not_in_channel');
      const text = str(p, 'text');
      const ts = `${1_700_000_000 + ++tsCounter}.000100`;
      channel.messages.push({ ts, user: botUserId, text });
      return { channel: channel.id, ts, message: { type: 'message', user: botUserId, text, ts } };
    },
    'pins.add': (p) => {
      const channel = channelOf(p, { writable: true });
      const ts = str(p, 'timestamp');
      if (!channel.messages.some((m) => m.ts === ts)) throw new SlackFailure('message_not_found');
      if (channel.pins.has(ts)) throw new SlackFailure('already_pinned');
      channel.pins.add(ts);
      return {};
    },
  };

  const readBody = async (req: IncomingMessage): Promise<Params> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    if ((req.headers['content-type'] ?? '').startsWith('application/json')) return raw === '' ? {} : (JSON.parse(raw) as Params);
    return Object.fromEntries(new URLSearchParams(raw));
  };

  const answer = async (req: IncomingMessage): Promise<Answer & { method: string; params: Params }> => {
    const match = /^\/api\/([a-zA-Z.]+)$/.exec(req.url ?? '');
    const method = match?.[1] ?? '';
    if (req.method !== 'POST') return { method, params: {}, status: 405, body: { ok: false, error: 'method_not_allowed' } };
    const params = await readBody(req);
    const handler = methods[method];
    if (!match || handler === undefined) return { method, params, status: 404, body: { ok: false, error: 'unknown_method' } };
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? (typeof params['token'] === 'string' ? params['token'] : undefined);
    if (bearer === undefined) return { method, params, body: { ok: false, error: 'not_authed' } };
    if (bearer !== token) return { method, params, body: { ok: false, error: 'invalid_auth' } };
    const limited = rateLimits.get(method)?.shift();
    if (limited !== undefined) return { method, params, status: 429, headers: { 'Retry-After': String(limited) }, body: { ok: false, error: 'ratelimited' } };
    const failure = failures.get(method)?.shift();
    if (failure?.status !== undefined) return { method, params, status: failure.status, body: {} };
    if (failure?.error !== undefined) return { method, params, body: { ok: false, error: failure.error } };
    try {
      return { method, params, body: { ok: true, ...handler(params) } };
    } catch (err) {
      if (err instanceof SlackFailure) return { method, params, body: { ok: false, error: err.error } };
      throw err;
    }
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    answer(req)
      .then(({ method, params, status = 200, headers = {}, body }) => {
        calls.push({ method, params, at: Date.now(), status, error: body['ok'] === false ? String(body['error']) : undefined });
        res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
        res.end(JSON.stringify(body));
      })
      .catch((err: unknown) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String(err));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/api`,
    port,
    token,
    botUserId,
    channels,
    calls,
    addUser(email, id) {
      const userId = id ?? `U${String(++seq).padStart(8, '0')}`;
      usersByEmail.set(email.toLowerCase(), userId);
      userIds.add(userId);
      return userId;
    },
    channelByName: (name) => [...channels.values()].find((c) => c.name === name),
    addMember(channelId, userId) {
      userIds.add(userId);
      channels.get(channelId)!.members.add(userId);
    },
    removeMember(channelId, userId) {
      channels.get(channelId)!.members.delete(userId);
    },
    setTopic(channelId, topic) {
      channels.get(channelId)!.topic = topic;
    },
    renameChannel(channelId, name) {
      channels.get(channelId)!.name = name;
    },
    takeName(name) {
      takenNames.add(name);
    },
    protect(userId) {
      protectedUsers.add(userId);
    },
    rateLimitOnce(method, seconds) {
      rateLimits.set(method, [...(rateLimits.get(method) ?? []), seconds]);
    },
    failOnce(method, failure) {
      failures.set(method, [...(failures.get(method) ?? []), failure]);
    },
    callsTo: (method) => calls.filter((c) => c.method === method),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive sockets from the client's fetch would hold the server open.
        server.closeAllConnections();
      }),
  };
}

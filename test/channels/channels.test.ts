import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { scriptedDns } from '../support/dns.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { type Answer, type Received, type Receiver, startReceiver } from '../webhooks/receiver.ts';

// Channels end to end: one real receiver on loopback (hooks.test, the one
// name the allow-list lets through) stands in for Slack, Discord, Teams,
// Google Chat, Telegram (PADDOCK_TELEGRAM_API_URL points at it), Matrix and
// a signed webhook, and records what each request looked like.

let t: TestApp;
let r: Receiver;
const logLines: string[] = [];
/** How the receiver answers a path (default 200). */
const answers = new Map<string, (got: Received) => Answer>();
const dns = scriptedDns({
  'hooks.test': [['127.0.0.1']],
  'private.test': [['10.0.0.7']],
  // Public when the channel is saved, a private address when it is delivered to.
  'rebind.test': [['93.184.216.34'], ['10.0.0.7']],
});

beforeAll(async () => {
  r = await startReceiver((got) => {
    const path = got.url.split('?')[0]!;
    for (const [prefix, answer] of answers) if (path.startsWith(prefix)) return answer(got);
    return { status: 200, body: '{"ok":true}' };
  });
  t = await createTestApp({
    start: new Date(),
    env: {
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: 'hooks.test',
      PADDOCK_TELEGRAM_API_URL: `http://hooks.test:${r.port}/tg`,
    },
    resolveHost: dns.resolve,
    logDestination: { write: (line) => void logLines.push(line) },
    webhooks: { retryScheduleMs: [0, 200, 200, 200], pollMs: 100 },
  });
}, 90_000);
afterAll(async () => {
  await t?.close();
  await r?.close();
});

const base = () => `http://hooks.test:${r.port}`;

/** A config of every provider, each on its own path of the receiver (tagged so tests do not mix). */
function configs(tag: string): Record<string, Json> {
  return {
    slack: { webhook_url: `${base()}/slack/${tag}/T000/B000/slacksecret${tag}` },
    discord: { webhook_url: `${base()}/discord/${tag}/api/webhooks/1/discordsecret${tag}` },
    teams: { webhook_url: `${base()}/teams/${tag}/webhookb2/teamssecret${tag}` },
    googlechat: {
      webhook_url: `${base()}/gchat/${tag}/v1/spaces/AAA/messages?key=k&token=gchatsecret${tag}`,
    },
    telegram: { bot_token: `123:tgsecret${tag}`, chat_id: `-100${tag.length}` },
    matrix: {
      homeserver_url: `${base()}/mx/${tag}`,
      access_token: `mxsecret${tag}`,
      room_id: '!room:hooks.test',
    },
    webhook: { url: `${base()}/hook/${tag}` },
  };
}

async function channel(u: SignedUpUser, body: Json): Promise<Json> {
  const res = await t.call('POST', '/v1/channels', {
    token: u.token,
    body: { events: ['agent.created'], ...body },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

const on = (prefix: string) => r.received.filter((x) => x.url.startsWith(prefix));

describe('messages', () => {
  it('posts a readable message in each provider’s wire format for a subscribed event, and nothing for others', async () => {
    const u = await t.signup();
    const tag = 'all';
    const made: Record<string, Json> = {};
    for (const [provider, config] of Object.entries(configs(tag)))
      made[provider] = await channel(u, { name: `to ${provider}`, provider, config });
    expect(made.webhook!.secret).toMatch(/^whsec_/);
    expect(made.slack!.secret).toBeUndefined();

    const agent = await createAgent(t, u.token);
    const prefixes = [
      '/slack/all',
      '/discord/all',
      '/teams/all',
      '/gchat/all',
      '/tg/bot',
      '/mx/all',
      '/hook/all',
    ];
    await r.until(() => prefixes.every((p) => on(p).length >= 1));

    const body = (p: string) => JSON.parse(on(p)[0]!.body) as Json;
    const slack = body('/slack/all');
    expect(slack.text).toContain('agent.created');
    expect(slack.text).toContain(agent.id);
    expect(slack.blocks[0]).toMatchObject({ type: 'header', text: { text: 'Paddock: agent.created' } });
    expect(body('/discord/all').content).toContain(`subject: ${agent.id}`);
    expect(body('/teams/all')).toMatchObject({ '@type': 'MessageCard', title: 'Paddock: agent.created' });
    expect(body('/teams/all').text).toContain(agent.name);
    expect(body('/gchat/all').text).toContain(agent.id);
    expect(on('/gchat/all')[0]!.url).toContain('token=gchatsecretall');

    const tg = on('/tg/bot')[0]!;
    expect(tg.method).toBe('POST');
    expect(tg.url).toBe('/tg/bot123:tgsecretall/sendMessage');
    expect(JSON.parse(tg.body)).toMatchObject({ chat_id: '-1003', text: expect.stringContaining(agent.id) });

    const mx = on('/mx/all')[0]!;
    expect(mx.method).toBe('PUT');
    expect(mx.url).toMatch(
      /^\/mx\/all\/_matrix\/client\/v3\/rooms\/!room%3Ahooks\.test\/send\/m\.room\.message\/cdl_[0-9A-Z]+$/,
    );
    expect(mx.headers.authorization).toBe('Bearer mxsecretall');
    expect(JSON.parse(mx.body)).toMatchObject({ msgtype: 'm.text', body: expect.stringContaining(agent.id) });

    const hook = on('/hook/all')[0]!;
    const payload = new Webhook(made.webhook!.secret).verify(
      hook.body,
      hook.headers as Record<string, string>,
    ) as Json;
    expect(payload).toMatchObject({ type: 'agent.created', data: { subject_id: agent.id } });

    // Not subscribed: agent.deleted sends nothing; the next agent.created does arrive.
    expect((await t.call('DELETE', `/v1/agents/${agent.id}`, { token: u.token })).status).toBe(204);
    const second = await createAgent(t, u.token);
    await r.until(() => on('/slack/all').some((x) => x.body.includes(second.id)));
    expect(on('/slack/all').every((x) => JSON.parse(x.body).text.includes('agent.created'))).toBe(true);
    const deliveries = await t.call('GET', `/v1/channels/${made.slack!.id}/deliveries`, { token: u.token });
    expect(deliveries.status).toBe(200);
    expect(deliveries.body.data.map((d: Json) => d.event_type)).toEqual(['agent.created', 'agent.created']);
  });

  it('retries a receiver that answers 500, with the same message, and logs the attempts', async () => {
    const u = await t.signup();
    let calls = 0;
    answers.set('/slack/flaky', () => {
      calls += 1;
      return calls <= 2 ? { status: 500, body: 'boom' } : { status: 200, body: 'ok' };
    });
    const made = await channel(u, {
      name: 'flaky',
      provider: 'slack',
      config: { webhook_url: `${base()}/slack/flaky/hook` },
    });
    await createAgent(t, u.token);
    await r.until(() => on('/slack/flaky').length >= 3);
    const bodies = new Set(on('/slack/flaky').map((x) => x.body));
    expect(bodies.size).toBe(1);
    let list: Json = {};
    for (let i = 0; i < 100; i++) {
      list = (await t.call('GET', `/v1/channels/${made.id}/deliveries`, { token: u.token })).body;
      if (list.data[0]?.status === 'succeeded') break;
      await new Promise((ok) => setTimeout(ok, 50));
    }
    expect(list.data[0]).toMatchObject({ status: 'succeeded', attempts: 3, last_status_code: 200 });
  });

  it('redelivers an ended delivery once, with the same message; 409 while pending, 404 for another channel, 403 for a member', async () => {
    const u = await t.signup();
    let calls = 0;
    // The redelivery's attempt is slow, so the delivery is still pending when it is asked for again.
    answers.set('/discord/again', () => ({ status: 200, body: 'ok', delayMs: calls++ === 0 ? 0 : 1000 }));
    const made = await channel(u, {
      name: 'again',
      provider: 'discord',
      config: { webhook_url: `${base()}/discord/again/api/webhooks/1/x` },
    });
    const other = await channel(u, {
      name: 'other',
      provider: 'discord',
      config: { webhook_url: `${base()}/discord/other/api/webhooks/1/x` },
      events: ['task.completed'],
    });
    await createAgent(t, u.token);
    let delivery: Json = {};
    for (let i = 0; i < 100 && delivery.status !== 'succeeded'; i++) {
      delivery =
        (await t.call('GET', `/v1/channels/${made.id}/deliveries`, { token: u.token })).body.data[0] ?? {};
      if (delivery.status !== 'succeeded') await new Promise((ok) => setTimeout(ok, 50));
    }
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 1 });
    const path = `/v1/channels/${made.id}/deliveries/${delivery.id}/redeliver`;

    const elsewhere = await t.call('POST', `/v1/channels/${other.id}/deliveries/${delivery.id}/redeliver`, {
      token: u.token,
    });
    expect(elsewhere.status).toBe(404);
    const member = await joined(u, 'member');
    expect((await t.call('POST', path, { token: member.token })).status).toBe(403);
    // Another team's admin, and ids that are no delivery's, find nothing; nothing is sent.
    const stranger = await t.signup();
    expect((await t.call('POST', path, { token: stranger.token })).status).toBe(404);
    // A webhook's delivery id is no channel's (404); NUL is refused as input (400), an over-long id as such (414).
    const badIds: Array<[string, number]> = [
      ['dlv_01ZZZZZZZZZZZZZZZZZZZZZZZZ', 404],
      ['cdl_%00', 400],
      ['x'.repeat(101), 414],
    ];
    for (const [bad, status] of badIds) {
      const res = await t.call('POST', `/v1/channels/${made.id}/deliveries/${bad}/redeliver`, {
        token: u.token,
      });
      expect(res.status, bad).toBe(status);
    }
    expect(on('/discord/again')).toHaveLength(1);

    const again = await t.call('POST', path, { token: u.token });
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(again.body).toMatchObject({ id: delivery.id, status: 'pending' });
    // Pending until its one attempt ends: a second redelivery waits.
    const twice = await t.call('POST', path, { token: u.token });
    expect(twice.status).toBe(409);
    expect(twice.body.error.code).toBe('delivery_pending');
    await r.until(() => on('/discord/again').length >= 2);
    const sent = on('/discord/again');
    expect(sent[1]!.body).toBe(sent[0]!.body);
    delivery = again.body;
    for (let i = 0; i < 100 && delivery.status !== 'succeeded'; i++) {
      delivery = (await t.call('GET', `/v1/channels/${made.id}/deliveries`, { token: u.token })).body.data[0];
      if (delivery.status !== 'succeeded') await new Promise((ok) => setTimeout(ok, 50));
    }
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(on('/discord/again')).toHaveLength(2);
  });

  it('never connects to a private address: refused when saved, and when a name resolves to one later', async () => {
    const u = await t.signup();
    for (const url of ['https://private.test/hook', 'https://10.0.0.7/hook', 'https://169.254.169.254/x']) {
      const res = await t.call('POST', '/v1/channels', {
        token: u.token,
        body: {
          name: `p ${url}`,
          provider: 'discord',
          config: { webhook_url: url },
          events: ['agent.created'],
        },
      });
      expect(res.status, url).toBe(400);
      expect(res.body.error.code).toBe('url_not_allowed');
    }
    const plain = await t.call('POST', '/v1/channels/test', {
      token: u.token,
      body: {
        provider: 'matrix',
        config: { homeserver_url: 'http://10.0.0.7', access_token: 'x', room_id: '!a:b' },
      },
    });
    expect(plain.status).toBe(400);
    expect(plain.body.error.code).toBe('insecure_url');

    const made = await channel(u, {
      name: 'rebinding',
      provider: 'slack',
      config: { webhook_url: 'https://rebind.test/services/T/B/rebindsecret' },
    });
    await createAgent(t, u.token);
    let d: Json | undefined;
    for (let i = 0; i < 200 && !(d?.last_error ?? '').startsWith('refused'); i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      d = (await t.call('GET', `/v1/channels/${made.id}/deliveries`, { token: u.token })).body.data[0];
    }
    expect(d!.last_error).toBe(
      'refused: rebind.test resolves to a private address, which Paddock does not reach',
    );
    // The address the name resolved to is the server's to know (internal DNS), not the tenant's.
    expect(d!.last_error).not.toContain('10.0.0.7');
    expect(d!.last_status_code).toBeNull();
    expect(d!.last_error).not.toContain('rebindsecret');
  });
});

describe('POST /v1/channels/test', () => {
  it('sends a test message and saves nothing', async () => {
    const u = await t.signup();
    for (const [provider, config] of Object.entries(configs('probe'))) {
      const res = await t.call('POST', '/v1/channels/test', { token: u.token, body: { provider, config } });
      expect(res.status, `${provider}: ${JSON.stringify(res.body)}`).toBe(200);
      expect(res.body).toEqual({ status: 'ok' });
    }
    expect(JSON.parse(on('/slack/probe')[0]!.body).text).toContain('channel.test');
    expect(on('/tg/bot123:tgsecretprobe/sendMessage')).toHaveLength(1);
    const list = await t.call('GET', '/v1/channels', { token: u.token });
    expect(list.body.data).toEqual([]);
    const events = await t.call('GET', '/v1/events', { token: u.token, query: { type: 'channel.*' } });
    expect(events.body.data).toEqual([]);
  });

  it('answers 502 saying why the receiver refused, never with a config value', async () => {
    const u = await t.signup();
    answers.set('/tg/bot999', () => ({
      status: 401,
      body: '{"ok":false,"error_code":401,"description":"Unauthorized: token 999:tgrefused is revoked"}',
    }));
    const res = await t.call('POST', '/v1/channels/test', {
      token: u.token,
      body: { provider: 'telegram', config: { bot_token: '999:tgrefused', chat_id: '42' } },
    });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('channel_test_failed');
    expect(res.body.error.message).toContain('HTTP 401');
    expect(res.body.error.message).toContain('Unauthorized');
    expect(JSON.stringify(res.body)).not.toContain('tgrefused');
  });
});

describe('managing channels', () => {
  it('never returns the config: not on create, get, list, update, events or the logs', async () => {
    const u = await t.signup();
    const secrets = ['slacksecretkeep', 'mxsecretkeep', '123:tgsecretkeep', 'discordsecretkeep'];
    const made = await channel(u, { name: 'keep', provider: 'slack', config: configs('keep').slack });
    const mx = await channel(u, { name: 'keep mx', provider: 'matrix', config: configs('keep').matrix });
    const tg = await channel(u, { name: 'keep tg', provider: 'telegram', config: configs('keep').telegram });
    const patched = await t.call('PATCH', `/v1/channels/${made.id}`, {
      token: u.token,
      body: { name: 'kept', events: ['agent.*'] },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ name: 'kept', events: ['agent.*'], provider: 'slack' });
    const replaced = await t.call('PUT', `/v1/channels/${tg.id}/config`, {
      token: u.token,
      body: { config: { bot_token: '123:tgsecretkeep', chat_id: '7' } },
    });
    expect(replaced.status).toBe(200);
    const swapped = await t.call('PUT', `/v1/channels/${made.id}/config`, {
      token: u.token,
      body: { config: configs('keep').telegram },
    });
    // A slack channel's config has a webhook_url, not a bot token: replaced entirely, validated per provider.
    expect(swapped.status).toBe(400);
    expect(swapped.body.error.details.fields).toHaveProperty(['config.webhook_url']);
    expect(JSON.stringify(swapped.body)).not.toContain('tgsecretkeep');

    const seen = [
      made,
      mx,
      tg,
      patched.body,
      replaced.body,
      (await t.call('GET', `/v1/channels/${made.id}`, { token: u.token })).body,
      (await t.call('GET', '/v1/channels', { token: u.token })).body,
      (await t.call('GET', '/v1/events', { token: u.token, query: { type: 'channel.*' } })).body,
      (await t.call('GET', '/v1/audit-logs', { token: u.token })).body,
    ];
    // The events made their audit entries.
    expect((seen[8] as Json).data.map((e: Json) => e.action)).toContain('channel.created');
    for (const text of [JSON.stringify(seen), logLines.join('\n')])
      for (const s of secrets) expect(text).not.toContain(s);
    expect(JSON.stringify(seen)).not.toContain('"config":');
    const events = seen[7] as Json;
    expect(events.data.map((e: Json) => e.type).sort()).toEqual([
      'channel.created',
      'channel.created',
      'channel.created',
      'channel.updated',
      'channel.updated',
    ]);
    expect((await t.call('DELETE', `/v1/channels/${mx.id}`, { token: u.token })).status).toBe(204);
    expect((await t.call('GET', `/v1/channels/${mx.id}`, { token: u.token })).status).toBe(404);
  });

  it('refuses a duplicate name (409), a bad config per provider (400) and non-admins (403)', async () => {
    const u = await t.signup();
    await channel(u, { name: 'ops', provider: 'discord', config: configs('dup').discord });
    const dup = await t.call('POST', '/v1/channels', {
      token: u.token,
      body: { name: 'ops', provider: 'slack', config: configs('dup').slack, events: ['task.*'] },
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('channel_name_taken');

    const bad: Array<[string, Json, string]> = [
      ['slack', {}, 'config.webhook_url'],
      ['discord', { webhook_url: `${base()}/d`, extra: 'x' }, 'config.extra'],
      ['teams', { webhook_url: 42 }, 'config.webhook_url'],
      ['googlechat', { url: `${base()}/g` }, 'config.webhook_url'],
      ['telegram', { bot_token: '1:x' }, 'config.chat_id'],
      ['matrix', { homeserver_url: base(), access_token: 'x', room_id: 'no-bang' }, 'config.room_id'],
      ['webhook', { url: `${base()}/w`, secret: 'short' }, 'config.secret'],
      ['in_app', { user_ids: 'all' }, 'config.user_ids'],
    ];
    for (const [provider, config, field] of bad) {
      const res = await t.call('POST', '/v1/channels', {
        token: u.token,
        body: { name: `bad ${provider}`, provider, config, events: ['agent.created'] },
      });
      expect(res.status, provider).toBe(400);
      expect(res.body.error.code, provider).toBe('validation_failed');
      expect(Object.keys(res.body.error.details.fields), provider).toContain(field);
    }
    const notUrl = await t.call('POST', '/v1/channels', {
      token: u.token,
      body: { name: 'nope', provider: 'webhook', config: { url: 'not a url' }, events: ['agent.created'] },
    });
    expect(notUrl.body.error.code).toBe('invalid_url');
    const stranger = await t.call('POST', '/v1/channels', {
      token: u.token,
      body: {
        name: 'inbox',
        provider: 'in_app',
        config: { user_ids: ['usr_01ZZZZZZZZZZZZZZZZZZZZZZZZ'] },
        events: ['agent.created'],
      },
    });
    expect(stranger.body.error.code).toBe('unknown_user');
    const unknownEvent = await t.call('POST', '/v1/channels', {
      token: u.token,
      body: { name: 'x', provider: 'slack', config: configs('dup').slack, events: ['nothing.happened'] },
    });
    expect(unknownEvent.body.error.code).toBe('unknown_event_type');

    const member = await joined(u, 'member');
    const denied = await t.call('POST', '/v1/channels', {
      token: member.token,
      body: { name: 'mine', provider: 'slack', config: configs('dup').slack, events: ['agent.created'] },
    });
    expect(denied.status).toBe(403);
    expect((await t.call('GET', '/v1/channels', { token: member.token })).body.data).toHaveLength(1);
    const other = await t.signup();
    const ops = (await t.call('GET', '/v1/channels', { token: u.token })).body.data[0];
    expect((await t.call('GET', `/v1/channels/${ops.id}`, { token: other.token })).status).toBe(404);
  });
});

const PASSWORD = 'correct horse battery';

/** A new user who joined `owner`'s team with `role`, signed in there. */
async function joined(owner: SignedUpUser, role: 'admin' | 'member' | 'viewer') {
  const inv = await t.call('POST', '/v1/invitations', {
    token: owner.token,
    body: { email: `ch-${Math.random().toString(36).slice(2)}@example.com`, role },
  });
  expect(inv.status).toBe(201);
  const res = await t.call('POST', '/v1/invitations/accept', {
    body: { token: inv.body.token, name: 'Member', password: PASSWORD },
  });
  expect(res.status).toBe(200);
  return { token: res.body.session.session_token as string, userId: res.body.session.user.id as string };
}

describe('the in-app inbox', () => {
  it('gives each member their own notifications: list, unread count, mark one and all read', async () => {
    const owner = await t.signup();
    const member = await joined(owner, 'viewer');
    await channel(owner, { name: 'inbox', provider: 'in_app', config: {} });
    await channel(owner, { name: 'just me', provider: 'in_app', config: { user_ids: [owner.user.id] } });
    const agent = await createAgent(t, owner.token);
    const count = async (token: string) =>
      (await t.call('GET', '/v1/notifications/unread-count', { token })).body.unread as number;
    for (let i = 0; i < 200 && ((await count(owner.token)) < 1 || (await count(member.token)) < 1); i++)
      await new Promise((ok) => setTimeout(ok, 50));
    // One per user and event, though two channels took it.
    expect(await count(owner.token)).toBe(1);
    expect(await count(member.token)).toBe(1);

    const mine = await t.call('GET', '/v1/notifications', { token: owner.token });
    expect(mine.status).toBe(200);
    expect(mine.body.data).toHaveLength(1);
    const n = mine.body.data[0];
    expect(n).toMatchObject({
      event_type: 'agent.created',
      subject_id: agent.id,
      title: 'Paddock: agent.created',
      read: false,
      read_at: null,
    });
    expect(n.message).toContain(agent.name);

    const theirs = (await t.call('GET', '/v1/notifications', { token: member.token })).body.data[0];
    expect((await t.call('POST', `/v1/notifications/${theirs.id}/read`, { token: owner.token })).status).toBe(
      404,
    );
    expect((await t.call('POST', '/v1/notifications/ntf_nope/read', { token: owner.token })).status).toBe(
      404,
    );

    const read = await t.call('POST', `/v1/notifications/${n.id}/read`, { token: owner.token });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id: n.id, read: true });
    expect(await count(owner.token)).toBe(0);
    expect(await count(member.token)).toBe(1);
    const unread = await t.call('GET', '/v1/notifications', {
      token: owner.token,
      query: { unread: 'true' },
    });
    expect(unread.body.data).toEqual([]);

    await createAgent(t, owner.token);
    for (let i = 0; i < 200 && (await count(member.token)) < 2; i++)
      await new Promise((ok) => setTimeout(ok, 50));
    const all = await t.call('POST', '/v1/notifications/read-all', { token: member.token });
    expect(all.body).toEqual({ marked: 2 });
    expect(await count(member.token)).toBe(0);

    const key = await t.apiKey(owner.token, ['read']);
    const byKey = await t.call('GET', '/v1/notifications', { token: key.key });
    expect(byKey.status).toBe(403);
  });
});

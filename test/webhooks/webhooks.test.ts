import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { scriptedDns } from '../support/dns.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { type Received, type Receiver, startReceiver } from './receiver.ts';

// Webhooks end to end: a real endpoint on loopback (reachable as hooks.test,
// the one name this app's allow-list lets through), every delivery checked
// with the standardwebhooks package, not Paddock's code.

let t: TestApp;
const logLines: string[] = [];
const dns = scriptedDns({
  'hooks.test': [['127.0.0.1']],
  // Public when the webhook is saved, a private address when it is delivered to.
  'rebind.test': [['93.184.216.34'], ['10.0.0.7']],
  'public.test': [['93.184.216.34']],
});
const receivers: Receiver[] = [];
let ticking: ReturnType<typeof setInterval> | undefined;

beforeAll(async () => {
  t = await createTestApp({
    // Standard Webhooks receivers refuse a timestamp 5 minutes off the real time.
    start: new Date(),
    env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: 'hooks.test' },
    resolveHost: dns.resolve,
    logDestination: { write: (line) => void logLines.push(line) },
    // A lost attempt job is sent again by the sweep (deliveries.ts); here within about a second, not
    // the default 30 s, so a job the queue loses under load cannot outlast a test's wait. The sweep
    // finds a delivery overdue by the server's clock, so that clock follows real time (below).
    webhooks: {
      retryScheduleMs: [0, 200, 200, 200],
      pollMs: 100,
      failingAfter: 2,
      sweepMs: 250,
      sweepGraceMs: 1000,
    },
  });
  // Deliveries, their retries and the sweep run on real time (pg-boss's start times, the receivers'
  // timestamp check): the test's clock moves with it, as a server's does. A clock left still would
  // keep every retry due in its future, so the sweep would never see a lost attempt as overdue.
  let last = Date.now();
  ticking = setInterval(() => {
    const now = Date.now();
    t.clock.advance(now - last);
    last = now;
  }, 20);
}, 90_000);
afterAll(async () => {
  clearInterval(ticking);
  await t?.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver(answer: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(answer);
  receivers.push(r);
  return r;
}

async function webhook(u: SignedUpUser, r: Receiver, body: Record<string, unknown> = {}): Promise<Json> {
  const res = await t.call('POST', '/v1/webhooks', {
    token: u.token,
    body: { url: `http://hooks.test:${r.port}/hook`, event_types: ['agent.*'], ...body },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

function verify(secret: string, got: Received): unknown {
  return new Webhook(secret).verify(got.body, got.headers as Record<string, string>);
}

/**
 * The requests a receiver got that this webhook signed. The receiver listens on a port the
 * system chose, which an earlier file's endpoint may have had: what else came is named in the
 * failure, not counted.
 */
function signedBy(secret: string, r: Receiver): Received[] {
  return r.received.filter((got) => {
    try {
      verify(secret, got);
      return true;
    } catch {
      return false;
    }
  });
}

describe('deliveries', () => {
  it('signs every attempt, retries after a 500 with the same webhook-id, and logs each attempt', async () => {
    const u = await t.signup();
    const failures = new Map<string, number>();
    const r = await receiver((req) => {
      const id = String(req.headers['webhook-id']);
      const n = (failures.get(id) ?? 0) + 1;
      failures.set(id, n);
      return n <= 2 ? { status: 500, body: `boom ${'x'.repeat(5000)}` } : { status: 204 };
    });
    const hook = await webhook(u, r, { event_types: ['agent.created'] });
    expect(hook.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const agent = await createAgent(t, u.token);

    await r.until((all) =>
      all.some((x) => x.headers['webhook-id'] && failures.get(String(x.headers['webhook-id']))! >= 3),
    );
    const id = String(r.received[0]!.headers['webhook-id']);
    const attempts = r.withId(id);
    expect(attempts).toHaveLength(3);
    for (const got of attempts) {
      const payload = verify(hook.secret, got) as Json;
      expect(payload.type).toBe('agent.created');
      expect(payload.data).toMatchObject({ type: 'agent.created', subject_id: agent.id });
      expect(Date.parse(payload.timestamp)).not.toBeNaN();
    }
    // Identical bodies: the same event each time.
    expect(new Set(attempts.map((a) => a.body)).size).toBe(1);

    await expect
      .poll(
        async () => (await t.call('GET', `/v1/webhooks/${hook.id}/deliveries`, { token: u.token })).body.data,
        {
          timeout: 30_000,
        },
      )
      .toHaveLength(3);
    const log = (await t.call('GET', `/v1/webhooks/${hook.id}/deliveries`, { token: u.token })).body.data;
    expect(log.map((a: Json) => [a.attempt, a.status_code, a.delivery_status])).toEqual([
      [3, 204, 'succeeded'],
      [2, 500, 'succeeded'],
      [1, 500, 'succeeded'],
    ]);
    expect(new Set(log.map((a: Json) => a.delivery_id)).size).toBe(1);
    expect(log[0].delivery_id).toBe(id);
    expect(log[2].response_body).toHaveLength(4096);
    expect(log[2].response_body.startsWith('boom x')).toBe(true);
    expect(log[2].error).toContain('500');
    expect(log[2].next_attempt_at).not.toBeNull();
    expect(log[0].next_attempt_at).toBeNull();
    expect(log[0]).toMatchObject({ event_type: 'agent.created', event_id: expect.stringMatching(/^evt_/) });

    // Paged by cursor.
    const page = await t.call('GET', `/v1/webhooks/${hook.id}/deliveries?limit=2`, { token: u.token });
    expect(page.body.data).toHaveLength(2);
    const rest = await t.call(
      'GET',
      `/v1/webhooks/${hook.id}/deliveries?limit=2&cursor=${page.body.next_cursor}`,
      {
        token: u.token,
      },
    );
    expect(rest.body.data.map((a: Json) => a.attempt)).toEqual([1]);

    // Redeliver: one more attempt, same webhook-id and body.
    const again = await t.call('POST', `/v1/webhooks/${hook.id}/deliveries/${id}/redeliver`, {
      token: u.token,
    });
    expect(again.status).toBe(202);
    await r.until(() => r.withId(id).length === 4);
    expect(r.withId(id)[3]!.body).toBe(attempts[0]!.body);
    verify(hook.secret, r.withId(id)[3]!);
  }, 60_000);

  it('gives up after the schedule, turns failing after repeated failed deliveries, and enable resets it', async () => {
    const u = await t.signup();
    const r = await receiver(() => ({ status: 503 }));
    const hook = await webhook(u, r, { event_types: ['agent.created'] });
    await createAgent(t, u.token);
    await createAgent(t, u.token);
    // Two deliveries of 4 attempts each, all failed: the second failure makes the endpoint failing.
    await expect
      .poll(async () => (await t.call('GET', `/v1/webhooks/${hook.id}`, { token: u.token })).body, {
        timeout: 40_000,
      })
      .toMatchObject({ status: 'failing', failure_count: 2 });
    const strays = () => r.received.filter((got) => !signedBy(hook.secret, r).includes(got));
    const seen = r.received.map(
      (x) => `${x.headers['webhook-id']} ${x.headers['webhook-timestamp']} ${x.at}`,
    );
    expect(
      signedBy(hook.secret, r),
      JSON.stringify({ strays: strays().map((x) => x.headers), seen }),
    ).toHaveLength(8);
    const events = await t.call('GET', '/v1/events?type=webhook.*', { token: u.token });
    expect(events.body.data.map((e: Json) => e.type)).toContain('webhook.failing');

    // Failing: no new deliveries.
    await createAgent(t, u.token);
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(signedBy(hook.secret, r)).toHaveLength(8);

    const enabled = await t.call('POST', `/v1/webhooks/${hook.id}/enable`, { token: u.token });
    expect(enabled.body).toMatchObject({ status: 'active', failure_count: 0 });
    const paused = await t.call('POST', `/v1/webhooks/${hook.id}/disable`, { token: u.token });
    expect(paused.body.status).toBe('paused');
  }, 60_000);

  it('test sends webhook.test now and answers the outcome', async () => {
    const u = await t.signup();
    const r = await receiver(() => ({ status: 200, body: 'ok' }));
    const hook = await webhook(u, r);
    const res = await t.call('POST', `/v1/webhooks/${hook.id}/test`, { token: u.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      attempt: 1,
      status_code: 200,
      response_body: 'ok',
      delivery_status: 'succeeded',
    });
    expect(r.received).toHaveLength(1);
    const payload = verify(hook.secret, r.received[0]!) as Json;
    expect(payload).toMatchObject({ type: 'webhook.test', data: { subject_id: hook.id } });
  });
});

describe('secret rotation', () => {
  it('signs with both secrets during the window, and with the new one only once it is expired', async () => {
    const u = await t.signup();
    const r = await receiver(() => ({ status: 200 }));
    const hook = await webhook(u, r, { event_types: ['agent.created'] });
    const rotatedFrom = t.clock.now().getTime();
    const rotated = await t.call('POST', `/v1/webhooks/${hook.id}/rotate-secret`, { token: u.token });
    const rotatedBy = t.clock.now().getTime();
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.secret;
    expect(fresh).toMatch(/^whsec_/);
    expect(fresh).not.toBe(hook.secret);
    const expires = Date.parse(rotated.body.previous_secret_expires_at);
    expect(expires).toBeGreaterThanOrEqual(rotatedFrom + 10 * 60_000);
    expect(expires).toBeLessThanOrEqual(rotatedBy + 10 * 60_000);

    await createAgent(t, u.token);
    await r.until((all) => all.length === 1);
    const during = r.received[0]!;
    expect(String(during.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verify(hook.secret, during)).toBeTruthy();
    expect(verify(fresh, during)).toBeTruthy();

    const expired = await t.call('POST', `/v1/webhooks/${hook.id}/expire-previous-secret`, {
      token: u.token,
    });
    expect(expired.body.previous_secret_expires_at).toBeNull();
    await createAgent(t, u.token);
    await r.until((all) => all.length === 2);
    const after = r.received[1]!;
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1);
    expect(verify(fresh, after)).toBeTruthy();
    expect(() => verify(hook.secret, after)).toThrow();
  }, 30_000);
});

describe('private addresses', () => {
  it('refuses a private or metadata address when the webhook is saved', async () => {
    const u = await t.signup();
    for (const url of [
      'https://10.0.0.1/hook',
      'https://169.254.169.254/latest',
      'https://[::1]/x',
      'https://localhost/x',
    ]) {
      const res = await t.call('POST', '/v1/webhooks', {
        token: u.token,
        body: { url, event_types: ['agent.*'] },
      });
      expect(res.status, url).toBe(400);
      expect(res.body.error.code, url).toBe('url_not_allowed');
    }
    const http = await t.call('POST', '/v1/webhooks', {
      token: u.token,
      body: { url: 'http://public.test/hook', event_types: ['agent.*'] },
    });
    expect(http.body.error.code).toBe('insecure_url');
  });

  it('refuses at delivery a name that resolves to a private address by then', async () => {
    const u = await t.signup();
    const created = await t.call('POST', '/v1/webhooks', {
      token: u.token,
      body: { url: 'https://rebind.test/hook', event_types: ['agent.*'] },
    });
    expect(created.status).toBe(201);
    const res = await t.call('POST', `/v1/webhooks/${created.body.id}/test`, { token: u.token });
    expect(res.body).toMatchObject({ status_code: null, delivery_status: 'failed' });
    // The tenant reads that the host is refused, not the address it resolved to (internal DNS)…
    expect(res.body.error).toBe(
      'refused: rebind.test resolves to a private address, which Paddock does not reach',
    );
    const log = (await t.call('GET', `/v1/webhooks/${created.body.id}/deliveries`, { token: u.token })).body;
    expect(JSON.stringify(log)).not.toContain('10.0.0.7');
    // …which only the server's log has.
    const line = logLines.find(
      (l) => l.includes('an outbound connection was refused') && l.includes('rebind.test'),
    );
    expect(JSON.parse(line!)).toMatchObject({ host: 'rebind.test', address: '10.0.0.7', reason: 'private' });
  });
});

describe('bad input and secrets', () => {
  it('answers 4xx for a bad url, an unknown event type or agent, and agent or read-only keys', async () => {
    const u = await t.signup();
    const other = await t.signup();
    const otherAgent = await createAgent(t, other.token);
    const create = (body: Record<string, unknown>) =>
      t.call('POST', '/v1/webhooks', {
        token: u.token,
        body: { url: 'https://public.test/hook', event_types: ['agent.*'], ...body },
      });
    expect((await create({ url: 'not a url' })).body.error.code).toBe('invalid_url');
    expect((await create({ url: 'ftp://public.test/x' })).body.error.code).toBe('invalid_url');
    expect((await create({ url: 'https://user:pw@public.test/x' })).body.error.code).toBe('invalid_url');
    const unknownType = await create({ event_types: ['agent.created', 'agent.exploded', 'nothing.*'] });
    expect(unknownType.status).toBe(400);
    expect(unknownType.body.error).toMatchObject({
      code: 'unknown_event_type',
      details: { unknown: ['agent.exploded', 'nothing.*'] },
    });
    expect((await create({ event_types: [] })).status).toBe(400);
    expect((await create({ agent_id: otherAgent.id })).body.error.code).toBe('unknown_agent');
    expect((await create({ agent_id: 'agt_nope' })).body.error.code).toBe('unknown_agent');
    expect((await create({ secret: 'whsec_mine' })).status).toBe(400);

    const reader = await t.apiKey(u.token, ['read']);
    expect(
      (
        await t.call('POST', '/v1/webhooks', {
          token: reader.key,
          body: { url: 'https://public.test/h', event_types: ['agent.*'] },
        })
      ).status,
    ).toBe(403);
    expect((await t.call('GET', '/v1/webhooks', { token: reader.key })).status).toBe(200);
    const agent = await createAgent(t, u.token);
    const asAgent = await t.call('GET', '/v1/webhooks', { token: agent.api_key });
    expect(asAgent.status).toBe(403);

    // Another team's webhook is a 404.
    const theirs = await t.call('POST', '/v1/webhooks', {
      token: other.token,
      body: { url: 'https://public.test/h', event_types: ['agent.*'] },
    });
    expect((await t.call('GET', `/v1/webhooks/${theirs.body.id}`, { token: u.token })).status).toBe(404);
    expect(
      (await t.call('POST', `/v1/webhooks/${theirs.body.id}/rotate-secret`, { token: u.token })).status,
    ).toBe(404);
  });

  it('never shows the secret again: not in reads, updates, events or logs', async () => {
    const u = await t.signup();
    const agent = await createAgent(t, u.token);
    const created = await t.call('POST', '/v1/webhooks', {
      token: u.token,
      body: {
        url: 'https://public.test/hook',
        event_types: ['task.*', 'agent.created'],
        agent_id: agent.id,
        description: 'ci',
      },
    });
    expect(created.status).toBe(201);
    const secret = created.body.secret;
    const id = created.body.id;
    const rotated = await t.call('POST', `/v1/webhooks/${id}/rotate-secret`, { token: u.token });
    const reads = [
      await t.call('GET', `/v1/webhooks/${id}`, { token: u.token }),
      await t.call('GET', '/v1/webhooks', { token: u.token }),
      await t.call('PATCH', `/v1/webhooks/${id}`, {
        token: u.token,
        body: { event_types: ['task.completed'], description: null },
      }),
      await t.call('POST', `/v1/webhooks/${id}/disable`, { token: u.token }),
      await t.call('POST', `/v1/webhooks/${id}/enable`, { token: u.token }),
      await t.call('GET', '/v1/events', { token: u.token, query: { limit: '200' } }),
    ];
    for (const res of reads) {
      expect(res.status).toBe(200);
      const text = JSON.stringify(res.body);
      expect(text).not.toContain(secret.slice(6));
      expect(text).not.toContain(rotated.body.secret.slice(6));
      expect(text).not.toContain('secret_sealed');
    }
    expect(reads[2]!.body).toMatchObject({
      event_types: ['task.completed'],
      description: null,
      agent_id: agent.id,
    });
    const types = reads[5]!.body.data.map((e: Json) => e.type);
    for (const type of [
      'webhook.created',
      'webhook.updated',
      'webhook.secret_rotated',
      'webhook.disabled',
      'webhook.enabled',
    ])
      expect(types).toContain(type);
    const logs = logLines.join('\n');
    expect(logs).not.toContain(secret.slice(6));
    expect(logs).not.toContain(rotated.body.secret.slice(6));

    expect((await t.call('DELETE', `/v1/webhooks/${id}`, { token: u.token })).status).toBe(204);
    expect((await t.call('GET', `/v1/webhooks/${id}`, { token: u.token })).status).toBe(404);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { HOUR_MS } from '../../src/core/clock.ts';
import { createTestApp, type TestApp } from '../support/app.ts';
import { scriptedDns } from '../support/dns.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { type Receiver, startReceiver } from './receiver.ts';

// PADDOCK_WEBHOOK_RETRY_SCHEDULE: an operator's own schedule for webhook and channel deliveries.

describe('PADDOCK_WEBHOOK_RETRY_SCHEDULE', () => {
  it('reads waits in s, m or h, and names the variable when a value is bad', () => {
    expect(loadConfig({ PADDOCK_WEBHOOK_RETRY_SCHEDULE: '0, 5s,5m,2h' }).webhookRetryScheduleMs).toEqual([
      0,
      5_000,
      300_000,
      2 * HOUR_MS,
    ]);
    expect(loadConfig({}).webhookRetryScheduleMs).toBeUndefined();
    for (const bad of [
      '0,5x',
      '5',
      '-1s',
      '0,,5s',
      '25h',
      '5s\u0000',
      '1e3s',
      Array(21).fill('1s').join(','),
    ]) {
      expect(() => loadConfig({ PADDOCK_WEBHOOK_RETRY_SCHEDULE: bad }), bad).toThrow(ConfigError);
      expect(() => loadConfig({ PADDOCK_WEBHOOK_RETRY_SCHEDULE: bad }), bad).toThrow(
        /PADDOCK_WEBHOOK_RETRY_SCHEDULE/,
      );
    }
  });

  describe('on a server', () => {
    let t: TestApp;
    let r: Receiver;
    beforeAll(async () => {
      r = await startReceiver(() => ({ status: 503 }));
      t = await createTestApp({
        start: new Date(),
        env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: 'hooks.test', PADDOCK_WEBHOOK_RETRY_SCHEDULE: '0,1h' },
        resolveHost: scriptedDns({ 'hooks.test': [['127.0.0.1']] }).resolve,
      });
    }, 90_000);
    afterAll(async () => {
      await t?.close();
      await r?.close();
    });

    it("waits the schedule's second wait before a failed delivery's next attempt", async () => {
      const u = await t.signup();
      const hook = await t.call('POST', '/v1/webhooks', {
        token: u.token,
        body: { url: `http://hooks.test:${r.port}/hook`, event_types: ['agent.created'] },
      });
      expect(hook.status).toBe(201);
      await createAgent(t, u.token);
      let delivery: Json | undefined;
      for (let i = 0; i < 200 && delivery === undefined; i++) {
        const list = await t.call('GET', `/v1/webhooks/${hook.body.id}/deliveries`, { token: u.token });
        delivery = list.body.data[0];
        if (delivery === undefined) await new Promise((ok) => setTimeout(ok, 50));
      }
      expect(delivery).toMatchObject({ attempt: 1, delivery_status: 'pending', status_code: 503 });
      const waitMs = Date.parse(delivery!.next_attempt_at as string) - t.clock.now().getTime();
      expect(waitMs).toBeGreaterThan(HOUR_MS - 60_000);
      expect(waitMs).toBeLessThanOrEqual(HOUR_MS);
    });
  });
});

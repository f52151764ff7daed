import { afterAll, beforeAll, expect, it } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import { idTimeMs } from '../../src/core/ids.ts';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

let g: GatewayFixture;
/** A team key: the signed-in session does not outlive the days the clock moves. */
let key: string;
beforeAll(async () => {
  g = await startGateway({ env: { PADDOCK_STEP_CONTENT_RETENTION_DAYS: '1' } });
  key = (await g.t.apiKey(g.user.token, ['admin'])).key;
});
afterAll(async () => {
  await g.close();
});

/** One logged call; answers its step as the API shows it. */
async function call(apiKey: string, word: string): Promise<Json> {
  g.mock.reply({ text: `the ${word} answer` });
  const res = await g
    .openai({ apiKey })
    .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `the ${word} prompt` }] })
    .withResponse();
  const steps = await g.steps(res.response.headers.get('x-paddock-run-id')!);
  return steps.at(-1)!;
}

async function read(path: string): Promise<Json> {
  await g.t.services.runs.flush();
  const res = await g.t.call('GET', path, {
    token: key,
    query: path.endsWith('/steps') ? { limit: '200' } : {},
  });
  expect(res.status).toBe(200);
  return res.body;
}

const stepOf = async (step: Json) =>
  ((await read(`/v1/runs/${step.run_id}/steps`)).data as Json[]).find((s) => s.id === step.id)!;

it('clears the request and response of steps older than PADDOCK_STEP_CONTENT_RETENTION_DAYS, and keeps the steps, their cost and the run', async () => {
  const agent = await g.newAgent({ content_logging: 'enabled' });
  const old = await call(agent.api_key, 'old');
  // The next id must be of a later millisecond: ids carry the time the call was made.
  while (Date.now() <= idTimeMs(old.id as string)) await new Promise((r) => setTimeout(r, 1));
  const recent = await call(agent.api_key, 'recent');
  expect(JSON.stringify(old.request)).toContain('the old prompt');
  const runBefore = await read(`/v1/runs/${old.run_id}`);

  // A day after the recent call: the old one is past the retention, the recent one is not yet.
  g.t.clock.set(new Date(idTimeMs(recent.id as string) + DAY_MS));
  expect(await g.t.services.stepContentRetention.sweep()).toBeGreaterThanOrEqual(1);

  const oldAfter = await stepOf(old);
  expect(oldAfter.request).toBeNull();
  expect(oldAfter.response).toBeNull();
  const { request: _rq, response: _rs, ...kept } = old;
  const { request: _aq, response: _as, ...keptAfter } = oldAfter;
  expect(keptAfter).toEqual(kept);
  const recentAfter = await stepOf(recent);
  expect(JSON.stringify(recentAfter.request)).toContain('the recent prompt');
  expect(JSON.stringify(recentAfter.response)).toContain('the recent answer');
  expect(await read(`/v1/runs/${old.run_id}`)).toEqual(runBefore);
  expect(JSON.stringify(await read(`/v1/runs/${old.run_id}/ledger`))).toContain(old.id as string);

  // The sweep goes on from where it stopped: nothing new is old enough yet.
  expect(await g.t.services.stepContentRetention.sweep()).toBe(0);
  g.t.clock.advance(DAY_MS);
  expect(await g.t.services.stepContentRetention.sweep()).toBe(1);
  expect((await stepOf(recent)).request).toBeNull();
});

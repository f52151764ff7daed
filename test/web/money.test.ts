import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { type DashboardBrowser, openDashboardBrowser, soon } from '../support/browser.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';
import { StripeServer, signedEvent } from '../support/stripe.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The dashboard's money pages in a real browser against a listening server
// whose tasks run in sandboxes and call the mock provider, with credits
// tracked and Stripe billing pointed at a local stand-in: the overview's spend
// chart, sandboxes and balance; the analytics page's charts with its range,
// figure and split kept in the address; credits and billing (a threshold set,
// a credit pack bought through Checkout and credited by Stripe's signed
// webhook, auto top-up saved, the ledger filtered); the provider keys' health
// with one circuit opened by a failing provider; a sandbox's metrics charts.
// Each chart's figures are read from its table (its text alternative) and
// compared with the API's. Every page passes axe-core; screenshots go to
// .test-artifacts/screenshots/.

const WEBHOOK_SECRET = 'whsec_paddockMoneyPagesSecret';
const stripe = new StripeServer();
let f: TaskFixture;
let b: DashboardBrowser;
let page: Page;
let base: string;
let flakyKey: Json;

const get = async (url: string, query?: Record<string, string>): Promise<Json> => {
  const res = await f.t.call('GET', url, { token: f.user.token, ...(query ? { query } : {}) });
  expect(res.status, `${url}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body;
};

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  const stripeUrl = await stripe.start();
  f = await startTasks({
    env: {
      PADDOCK_CREDITS: 'track',
      PADDOCK_STRIPE_SECRET_KEY: 'sk_test_paddockMoneyPages123',
      PADDOCK_STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      PADDOCK_STRIPE_API_URL: stripeUrl,
      PADDOCK_BILLING_PLANS: JSON.stringify([
        {
          id: 'pro',
          name: 'Pro',
          stripe_price_id: 'price_pro',
          included_credits: 1000,
          limits: { agents: 10 },
        },
      ]),
      PADDOCK_BILLING_CREDIT_PACKS: JSON.stringify([
        { id: 'small', name: 'Small', credits: 500, stripe_price_id: 'price_small', price_usd: 5 },
      ]),
    },
  });
  base = await f.t.app.listen({ port: 0, host: '127.0.0.1' });

  // Real traffic: two tasks that call the mock provider (one runs bash in its sandbox)…
  const writer = await f.agent({ agent: { name: 'writer', tools: ['bash'] } });
  f.script([{ tool: 'bash', args: { command: 'echo spent' } }, { text: 'Done.' }, { text: 'Also done.' }]);
  for (const prompt of ['Echo something.', 'Say done.']) {
    const task = await f.submit({ agent_id: writer.id, prompt });
    expect((await f.finished(task.id)).task.status).toBe('completed');
  }
  // …and one whose provider fails: its key's circuit opens at the first failure (this policy's breaker).
  flakyKey = f.keys.anthropic;
  const flaky = await f.agent({
    agent: { name: 'flaky', model: 'claude-sonnet-4-5' },
    bindings: { anthropic: flakyKey.id },
    policy: {
      routing: { max_retries: 1, circuit_breaker: { failure_threshold: 1, recovery_timeout_ms: 600_000 } },
    },
  });
  f.script([{ status: 500, message: 'the provider is down' }]);
  const failing = await f.submit({ agent_id: flaky.id, prompt: 'Try.' });
  expect((await f.finished(failing.id)).task.status).toBe('failed');

  b = await openDashboardBrowser();
  page = b.page;
  await b.signIn(base, f.user);
}, 180_000);

afterAll(async () => {
  await b?.close();
  await f?.close();
  await stripe.close();
});

const step = (name: string, run: () => Promise<void>) => b.step(name, run);

async function nav(label: string): Promise<void> {
  await page
    .getByRole('navigation', { name: 'Main' })
    .getByRole('link', { name: label, exact: true })
    .click();
}

/** A chart's figures: opens its table (the text alternative) and answers its rows as cell texts. */
async function figures(title: string): Promise<string[][]> {
  const details = page.locator('details.chart-data').filter({ hasText: `Show the figures: ${title}` });
  if ((await details.getAttribute('open')) === null) await details.locator('summary').click();
  return details
    .locator('tbody tr')
    .evaluateAll((rows: Array<{ children: ArrayLike<{ textContent: string | null }> }>) =>
      rows.map((r) => Array.from(r.children).map((c) => (c.textContent ?? '').trim())),
    );
}

const dollars = (text: string) => Number(text.replace(/[$,]/g, ''));
const today = () => new Date().toISOString().slice(0, 10);
const rowsOf = (table: Locator) => table.locator('tbody tr');

it('shows spend over time, sandboxes and the credit balance on the overview', async () => {
  await step('overview', async () => {
    await page.goto(`${base}/`);
    const title = 'Spend per day, last 30 days: model calls and sandboxes';
    await page.getByRole('img', { name: new RegExp(`^${title}`) }).waitFor(soon);
    // Today's bar against the API's own figures for today.
    const from = `${today()}T00:00:00.000Z`;
    const report = await get('/v1/analytics/costs', { from, granularity: 'day' });
    const model = report.data.reduce((a: number, r: Json) => a + r.model_cost_usd, 0);
    expect(model).toBeGreaterThan(0);
    const rows = await figures(title);
    // 30 days up to the next whole hour: 31 days, unless that hour is midnight.
    expect(rows.length).toBeGreaterThanOrEqual(30);
    const last = rows[rows.length - 1]!;
    expect(dollars(last[1]!)).toBeCloseTo(model, 6);
    await page.getByText('Model calls', { exact: true }).first().waitFor();

    const credits = page.getByRole('region', { name: 'Credits' });
    const account = await get('/v1/credits');
    expect(account.mode).toBe('track');
    expect(account.balance).toBeLessThan(0);
    await credits.getByText(`mode track`).waitFor();
    await credits.getByText('exhausted').waitFor();
    const sandboxes = page.getByRole('region', { name: 'Sandboxes' });
    await sandboxes.getByText('Running now').waitFor();
    await page.getByText(`Show the figures: ${title}`).click();
    await b.check('overview-charts');
  });
}, 60_000);

it('charts tokens by model over a chosen range, kept in the address, with the top models', async () => {
  await step('analytics', async () => {
    await nav('Analytics');
    await page.getByRole('heading', { name: 'Analytics', level: 1 }).waitFor();
    await page.getByLabel('Show').selectOption('tokens');
    await page.getByLabel('Split by').selectOption('model');
    await page.getByLabel('Range').selectOption('24h');
    await page.waitForURL(/range=24h/);
    expect(new URL(page.url()).searchParams.get('metric')).toBe('tokens');

    const title = 'Tokens per hour, last 24 hours';
    await page.getByRole('img', { name: new RegExp(`^${title}`) }).waitFor(soon);
    // The mock answers with the model's dated name, as OpenAI does.
    const byModel = await get('/v1/analytics/costs', { group_by: 'model' });
    const model = byModel.data.find((r: Json) => /^gpt-4o-mini/.test(r.group ?? ''))?.group as string;
    await page
      .getByRole('list', { name: `${title}: legend` })
      .getByText(model)
      .waitFor();
    const tokens = byModel.data
      .filter((r: Json) => r.group === model)
      .reduce((a: number, r: Json) => a + r.total_tokens, 0);
    expect(tokens).toBeGreaterThan(0);
    // The table's column of that model adds up to the API's figure.
    const header = await page
      .locator('details.chart-data')
      .filter({ hasText: title })
      .locator('thead th')
      .allTextContents();
    const column = header.indexOf(model);
    expect(column).toBeGreaterThan(0);
    const rows = await figures(title);
    expect(rows).toHaveLength(24);
    const charted = rows.reduce((a, r) => a + (Number(r[column]!.replace(/\D/g, '')) || 0), 0);
    expect(charted).toBe(tokens);

    // The top models by spend, and the failed call in the error rate.
    const top = page.getByRole('region', { name: 'Top models by spend' });
    await expect.poll(() => rowsOf(top.locator('table')).first().textContent(), soon).toContain(model);
    await page.getByText(/1 of \d+ calls failed/).waitFor(soon);
    // Per agent: the writer's two tasks succeeded, the flaky one's failed.
    const agents = page.getByRole('region', { name: 'Agents' });
    const writerRow = agents.getByRole('row').filter({ hasText: 'writer' });
    await expect.poll(() => writerRow.locator('td').nth(1).textContent(), soon).toBe('2 of 2');
    expect(await writerRow.locator('td').nth(2).textContent()).toBe('100%');
    await expect
      .poll(() => agents.getByRole('row').filter({ hasText: 'flaky' }).locator('td').nth(2).textContent())
      .toBe('0%');
    await b.check('analytics');
    // The charts read in the dark theme too (their colours are the theme's).
    await page.getByRole('button', { name: 'Switch to the dark theme' }).click();
    await b.check('analytics-dark');
    await page.getByRole('button', { name: 'Switch to the light theme' }).click();

    // The address keeps the choice: a reload shows the same.
    await page.reload();
    await page.getByRole('img', { name: new RegExp(`^${title}`) }).waitFor(soon);
    expect(await page.getByLabel('Show').inputValue()).toBe('tokens');
    expect(await page.getByLabel('Range').inputValue()).toBe('24h');

    // Two pickers changed in one go, before the page re-renders with the first: both are kept.
    // (A string: the page's DOM types are not the tests'.)
    await page.evaluate(`{
      const pick = (label, value) => {
        const control = [...document.querySelectorAll('label')].find((l) => l.textContent.trim() === label).control;
        Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, 'value').set.call(control, value);
        control.dispatchEvent(new Event('change', { bubbles: true }));
      };
      pick('Show', 'cost');
      pick('Range', '7d');
    }`);
    await page.waitForURL(/range=7d/);
    const address = new URL(page.url()).searchParams;
    expect([address.get('metric'), address.get('range'), address.get('group')]).toEqual([
      'cost',
      '7d',
      'model',
    ]);
  });
}, 60_000);

it('shows credits, sets a threshold, buys a pack through Checkout, saves auto top-up and filters the ledger', async () => {
  await step('billing', async () => {
    await nav('Credits and billing');
    const creditsRegion = page.getByRole('region', { name: 'Credits' });
    await creditsRegion.getByText('Balance (credits)').waitFor(soon);
    const before = (await get('/v1/credits')).balance as number;

    // The ledger: what the tasks consumed, filtered by type.
    const ledger = page.getByRole('region', { name: 'Ledger' });
    await ledger.getByLabel('Type').selectOption('consume');
    await expect.poll(() => rowsOf(ledger.locator('table')).count(), soon).toBeGreaterThan(0);
    const consumed = (await get('/v1/credits/transactions', { type: 'consume' })).data;
    expect(await rowsOf(ledger.locator('table')).count()).toBe(consumed.length);
    await ledger.getByRole('link', { name: consumed[0].reference_id }).first().waitFor();

    // The low threshold, saved through the API.
    await page.getByLabel('Low balance threshold (credits)').fill('50');
    await page.getByRole('button', { name: 'Save threshold' }).click();
    await expect.poll(async () => (await get('/v1/credits')).low_threshold, soon).toBe(50);

    // A pack bought: the browser goes to Stripe's Checkout (the stand-in's URL, answered here).
    await page.route('https://checkout.stripe.test/**', (route) =>
      route.fulfill({ status: 200, contentType: 'text/html', body: '<title>Checkout</title><h1>Pay</h1>' }),
    );
    await page.getByRole('button', { name: 'Buy Small' }).click();
    await page.waitForURL(/^https:\/\/checkout\.stripe\.test\/c\/cs_test/, soon);
    const session = stripe.sent('POST', '/v1/checkout/sessions').at(-1)!;
    expect(session.form).toMatchObject({
      mode: 'payment',
      success_url: `${base}/billing?checkout=done`,
      cancel_url: `${base}/billing?checkout=cancelled`,
      'metadata[pack_id]': 'small',
    });
    // Stripe tells the server the payment went through, signed with the endpoint's secret.
    const customer = session.form.customer!;
    const { payload, signature } = signedEvent(WEBHOOK_SECRET, {
      id: 'evt_money_pack',
      type: 'checkout.session.completed',
      object: {
        id: 'cs_money_pack',
        object: 'checkout.session',
        mode: 'payment',
        payment_status: 'paid',
        customer,
        payment_intent: 'pi_money_pack',
        metadata: { team_id: f.user.team.id, kind: 'credit_pack', pack_id: 'small', credits: '500' },
      },
    });
    const hook = await f.t.call('POST', '/v1/billing/stripe/webhook', {
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body: payload,
    });
    expect(hook.status).toBe(200);
    // Back from Checkout: the balance is 500 credits more, and the purchase is in the ledger.
    await page.goto(`${base}/billing?checkout=done`);
    await page.getByText('Back from checkout').waitFor(soon);
    const after = (await get('/v1/credits')).balance as number;
    expect(after).toBeCloseTo(before + 500, 4);
    const balance = (n: number) =>
      n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    await creditsRegion.getByText(balance(after), { exact: true }).first().waitFor(soon);
    await ledger.getByLabel('Type').selectOption('purchase');
    await ledger.getByRole('cell', { name: '+500.00' }).waitFor(soon);

    // Auto top-up, now that the team has a Stripe customer (and so a portal).
    await page.getByRole('button', { name: 'Cards and invoices' }).waitFor();
    await page.getByLabel('Top up automatically').check();
    await page.getByLabel('Below (credits)').fill('100');
    await page.getByLabel('Monthly cap (USD)').fill('20');
    await page.getByRole('button', { name: 'Save auto top-up' }).click();
    await expect
      .poll(async () => (await get('/v1/billing')).auto_top_up, soon)
      .toMatchObject({ enabled: true, threshold_credits: 100, pack_id: 'small', monthly_cap_usd: 20 });
    await page.getByRole('region', { name: 'Auto top-up' }).getByText('active').waitFor(soon);
    await b.check('billing');
  });
}, 60_000);

it("shows each provider key's circuit, with the failing key's open", async () => {
  await step('provider-keys', async () => {
    await nav('Provider keys');
    const health = (await get('/v1/providers/health')).data as Json[];
    expect(health.find((h) => h.provider_key_id === flakyKey.id)).toMatchObject({
      state: 'open',
      failure_count: 1,
    });
    const region = page.getByRole('region', { name: 'Health' });
    const row = region.getByRole('row').filter({ hasText: flakyKey.name });
    await row.getByText('open', { exact: true }).waitFor(soon);
    await expect.poll(() => row.locator('td').nth(3).textContent()).toBe('1');
    const healthy = region.getByRole('row').filter({ hasText: f.keys.openai.name });
    await healthy.getByText('closed', { exact: true }).waitFor();
    await expect.poll(() => healthy.locator('td').last().textContent()).toMatch(/^\d+ ms$/);
    const reliability = page.getByRole('region', { name: 'Reliability, last 30 days' });
    await reliability.getByRole('cell', { name: 'openai', exact: true }).waitFor(soon);
    await b.check('provider-keys-health');
  });
}, 60_000);

it("charts a running sandbox's CPU, memory and disk", async () => {
  await step('capsule-metrics', async () => {
    const created = await f.t.call('POST', '/v1/capsules', { token: f.user.token, body: {} });
    expect(created.status).toBe(202);
    const id = created.body.id as string;
    await waitForCapsule(f.t, f.user.token, id, 'running');
    await page.goto(`${base}/capsules/${id}`);
    const metrics = page.getByRole('region', { name: 'Metrics' });
    await metrics.getByRole('heading', { name: 'CPU' }).waitFor(soon);
    // The host samples every 2 s and the page asks every 5 s: the memory chart fills in.
    await metrics.getByRole('img', { name: /^Memory in use/ }).waitFor(soon);
    await expect.poll(async () => (await figures('Memory in use')).length, soon).toBeGreaterThan(1);
    const api = (await get(`/v1/capsules/${id}/metrics`)).points as Json[];
    expect(api.length).toBeGreaterThan(1);
    const rows = await figures('Memory in use');
    expect(rows.every((r) => /^[\d,.]+ MB$/.test(r[1]!))).toBe(true);
    // The oldest sample is the same one either way: the page's figure is the API's, in MB to 3 digits.
    const mb = Number((api[0]!.mem_bytes / 1024 / 1024).toPrecision(3));
    expect(rows[0]![1]).toBe(`${mb.toLocaleString('en-US', { maximumFractionDigits: 6 })} MB`);
    await b.check('capsule-metrics');
    await metrics.getByLabel('Metrics range').selectOption('1h');
    await metrics.getByRole('img', { name: /^CPU use/ }).waitFor(soon);
    // Paused, it keeps its history (and the page asks no more).
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByText('Resume it to open a shell.').waitFor(soon);
    await metrics.getByRole('img', { name: /^Memory in use/ }).waitFor(soon);
    await f.t.call('DELETE', `/v1/capsules/${id}`, { token: f.user.token });
  });
}, 60_000);

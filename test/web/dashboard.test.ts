import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, INITIAL_JS_LIMIT_BYTES, initialJsGzipBytes, webStaleReason } from '../../bin/build.js';
import { createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The dashboard in a real browser (Debian's Chromium driven by playwright-core)
// against a real listening server whose tasks run in sandboxes and call the
// mock provider: a new user signs up, adds a provider key, two policies and two
// agents, watches a task complete live, approves another's tool call in the
// approvals queue and sees it complete, and makes an API key. Every page passes
// axe-core with no serious or critical violation and breaks no CSP rule; each
// leaves a screenshot in .test-artifacts/screenshots/.

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.resolve('.test-artifacts/screenshots');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let t: TestApp;
let mock: MockLlm;
let browser: Browser;
let page: Page;
let base: string;
/** How long a page may take to show what a step waits for (the machine may be busy). */
const soon = { timeout: 20_000 };
/** The calls the walk-through makes fail on purpose (the browser logs each failed request). */
const EXPECTED_FAILURES = [
  // Signed out, the shell's GET /v1/me answers 401 and the page goes to the sign-in page.
  /status of 401 .*\(http:[^ ]+\/v1\/me\)$/,
  // A second provider key of the same name, refused with the API's message.
  /status of 409 .*\(http:[^ ]+\/v1\/provider-keys\)$/,
];
/** Console errors and uncaught exceptions of the page (a CSP refusal shows up here). */
const pageErrors: string[] = [];

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  [t, mock] = await Promise.all([
    createTestApp({ env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1' }, start: new Date() }),
    startMockLlm(),
  ]);
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Chromium's own sandbox cannot start as root (CI's containers).
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const line = `${m.text()} (${m.location().url})`;
    if (!EXPECTED_FAILURES.some((expected) => expected.test(line))) pageErrors.push(line);
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  mkdirSync(SHOTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
  await mock?.close();
});

/** axe-core on the page as it is now: no serious or critical violation; then its screenshot. */
async function check(name: string): Promise<void> {
  await page.waitForLoadState('networkidle');
  await expect.poll(() => page.locator('[role="status"] .spinner').count(), soon).toBe(0);
  // Evaluated by the driver, not loaded by the page: the page's CSP allows no inline script.
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    type Axe = { run(): Promise<{ violations: Array<Record<string, unknown>> }> };
    const axe = (globalThis as unknown as { axe: Axe }).axe;
    const result = await axe.run();
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: (v.nodes as unknown[]).length }));
  });
  expect(violations, `axe on ${name}`).toEqual([]);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function nav(label: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label }).click();
}

it('keeps the first page load under its JavaScript budget', () => {
  const bytes = initialJsGzipBytes();
  expect(bytes).toBeGreaterThan(10_000);
  expect(bytes).toBeLessThan(INITIAL_JS_LIMIT_BYTES);
});

it('takes a new user from sign-up to a task completed live, and one approved in the queue', async () => {
  try {
    await walkThrough();
  } catch (err) {
    // Where it stopped, for the CI artifacts.
    await page.screenshot({ path: path.join(SHOTS, 'failure.png'), fullPage: true });
    if (pageErrors.length > 0)
      throw new Error(`${String(err)}\nthe page's errors:\n${pageErrors.join('\n')}`);
    throw err;
  }
  expect(pageErrors).toEqual([]);
}, 240_000);

async function walkThrough(): Promise<void> {
  // Signed out, any page leads to the sign-in page.
  await page.goto(`${base}/tasks`);
  await page.waitForURL(`${base}/login`);
  await check('login');

  await page.getByRole('link', { name: 'Create one' }).click();
  await page.getByLabel('Name').fill('Ada');
  await page.getByLabel('Email').fill(uniqueEmail('ada'));
  await page.getByLabel('Password').fill('a long password');
  await check('signup');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Get started' }).waitFor();
  await check('overview-new');

  // A provider key pointing at the mock upstream.
  await nav('Provider keys');
  await page.getByText('No provider keys yet.').waitFor();
  await page.getByLabel('Name').fill('mock-openai');
  await page.getByLabel('API key').fill('sk-test-dashboard');
  await page.getByLabel('Base URL').fill(mock.url);
  await page.getByRole('button', { name: 'Add key' }).click();
  await page.getByRole('cell', { name: 'mock-openai', exact: true }).waitFor();
  await check('provider-keys');
  // A refused call shows the API's own message.
  await page.getByLabel('Name').fill('mock-openai');
  await page.getByLabel('API key').fill('sk-test-again');
  await page.getByRole('button', { name: 'Add key' }).click();
  await expect
    .poll(() => page.getByRole('alert').textContent(), soon)
    .toBe('a provider key named "mock-openai" already exists in this team');

  // A policy with a budget, and one that asks before bash runs.
  await nav('Policies');
  await page.getByRole('link', { name: 'New policy' }).click();
  await page.getByLabel('Name').fill('everyday');
  await page.getByLabel('Limit per run (USD)').fill('2');
  await check('policy-form');
  await page.getByRole('button', { name: 'Create policy' }).click();
  await page.getByRole('link', { name: 'everyday' }).waitFor();
  await page.getByRole('link', { name: 'New policy' }).click();
  await page.getByLabel('Name').fill('careful');
  await page.getByLabel('Tools that need approval').fill('bash');
  await page.getByRole('button', { name: 'Create policy' }).click();
  await page.getByRole('link', { name: 'careful' }).waitFor();
  await check('policies');
  // Edited: the list shows the new limit.
  await page.getByRole('link', { name: 'everyday' }).click();
  await page.getByLabel('Limit per run (USD)').fill('3');
  await check('policy-edit');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.getByRole('cell', { name: '$3.00 a run' }).waitFor();

  // Two agents on the key: one per policy.
  for (const [name, policy] of [
    ['helper', 'everyday'],
    ['cautious', 'careful'],
  ] as const) {
    await nav('Agents');
    await page.getByRole('link', { name: 'New agent' }).click();
    await page.getByLabel('Name').fill(name);
    await page.getByLabel('Model').fill('gpt-4o-mini');
    await page.getByLabel('Policy').selectOption({ label: policy });
    await page.getByLabel('System prompt').fill('You are a careful assistant.');
    if (name === 'helper') await check('agent-form');
    await page.getByRole('button', { name: 'Create agent' }).click();
    await expect.poll(() => page.locator('code.secret').textContent(), soon).toMatch(/^pda_/);
    if (name === 'helper') await check('agent-created');
  }
  await nav('Agents');
  await page.getByRole('link', { name: 'cautious' }).waitFor();
  await check('agents');
  await page.getByRole('link', { name: 'helper' }).click();
  await page.getByRole('heading', { name: 'Agent helper' }).waitFor();
  await check('agent-edit');

  // A task: a slow first model call, so the page shows it running before it completes.
  mock.reply([
    { toolCalls: [{ name: 'bash', arguments: { command: 'echo hello-from-the-sandbox' } }], delayMs: 1500 },
    { text: 'The sandbox said hello-from-the-sandbox.' },
  ]);
  await nav('Tasks');
  await page.getByLabel('Agent', { exact: true }).selectOption({ label: 'helper (gpt-4o-mini)' });
  await page.getByLabel('Prompt').fill('Say hello from the sandbox.');
  await page.getByRole('button', { name: 'Submit task' }).click();
  await page.waitForURL(/\/tasks\/task_/);
  const status = page.getByRole('status').filter({ has: page.locator('.badge') });
  await expect.poll(() => status.textContent(), { timeout: 20_000 }).toMatch(/running|queued/);
  // Completed without a reload: the page follows the task's event stream.
  await expect.poll(() => status.textContent(), { timeout: 60_000 }).toMatch(/completed/);
  await page.getByText('The sandbox said hello-from-the-sandbox.').first().waitFor();
  await expect
    .poll(() => page.locator('pre.output').first().textContent(), soon)
    .toContain('hello-from-the-sandbox');
  await page
    .getByText(/^\$0\.0\d+/)
    .first()
    .waitFor();
  await check('task');

  await nav('Tasks');
  await expect.poll(() => page.getByRole('row').count(), soon).toBe(2);
  await check('tasks');

  // A task whose model call offers bash under the careful policy waits for a person.
  mock.reply([{ text: 'Approved, and done.' }]);
  await page.getByLabel('Agent', { exact: true }).selectOption({ label: 'cautious (gpt-4o-mini)' });
  await page.getByLabel('Prompt').fill('List the workspace.');
  await page.getByRole('button', { name: 'Submit task' }).click();
  await page.waitForURL(/\/tasks\/task_/);
  const waiting = page.url();
  await expect.poll(() => status.textContent(), { timeout: 60_000 }).toMatch(/awaiting approval/);
  await page.getByRole('link', { name: 'Decide in Approvals' }).click();
  const card = page.getByRole('article', { name: /Approval for bash by cautious/ });
  await card.waitFor();
  await check('approvals');
  await card.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('Nothing is waiting for you.').waitFor();

  await page.goto(waiting);
  await expect.poll(() => status.textContent(), { timeout: 60_000 }).toMatch(/completed/);
  await page.getByText('Approved, and done.').first().waitFor();
  await check('task-approved');

  // A team API key, shown once, then revoked.
  await nav('API keys');
  await page.getByLabel('Name').fill('ci');
  await page.getByRole('button', { name: 'Create key' }).click();
  await expect.poll(() => page.locator('code.secret').textContent(), soon).toMatch(/^pdk_/);
  await check('api-keys');
  page.once('dialog', (d) => void d.accept());
  await page.getByRole('button', { name: 'Revoke ci' }).click();
  await expect.poll(() => page.getByRole('row', { name: /ci/ }).textContent(), soon).toMatch(/revoked/);

  // Keyboard: the first Tab reaches the skip link, which moves focus to the page's content.
  await nav('Overview');
  // The router commits the URL once the page's chunk is in: reload only after it did.
  await page.waitForURL(`${base}/`);
  await page.reload();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.keyboard.press('Tab');
  await expect.poll(() => page.evaluate('document.activeElement?.textContent'), soon).toBe('Skip to content');
  await page.keyboard.press('Enter');
  await expect.poll(() => page.evaluate('document.activeElement?.id'), soon).toBe('main');

  await page.getByText('Tasks this month by status').waitFor();
  await check('overview');
  await page.getByRole('button', { name: 'Switch to the dark theme' }).click();
  await check('overview-dark');
  await nav('Tasks');
  await page.getByRole('row').nth(1).getByRole('link').click();
  await expect.poll(() => status.textContent(), soon).toMatch(/completed/);
  await check('task-dark');
  await page.goto(`${base}/no-such-page`);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
  await check('not-found');
}

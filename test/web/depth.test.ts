import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { SmtpCatcher, tokenIn } from '../mail/smtp.ts';
import { type DashboardBrowser, openDashboardBrowser, soon } from '../support/browser.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The fuller parts of the dashboard's pages, in a real browser against a
// listening server whose tasks run in sandboxes and call the mock provider,
// and which sends its e-mail to a real SMTP catcher: a policy made with every
// part of its document and edited (its history says what changed); a task's
// output files downloaded; a workspace's files uploaded, downloaded and
// deleted, the workspace renamed, starred and given a model; a sandbox's
// terminal fitted to its box (the shell told the new size), a snapshot taken,
// restored into a new sandbox and deleted; a password reset by e-mailed link.
// Every page passes axe-core and breaks no CSP rule; screenshots go to
// .test-artifacts/screenshots/.

let smtp: SmtpCatcher;
let f: TaskFixture;
let b: DashboardBrowser;
let page: Page;
let base: string;
let helper: Json & { api_key: string };

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  smtp = new SmtpCatcher();
  await smtp.start();
  f = await startTasks({
    env: {
      PADDOCK_SMTP_URL: smtp.url,
      PADDOCK_MAIL_FROM: 'Paddock <noreply@paddock.example.com>',
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
    },
  });
  base = await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  helper = await f.agent({
    policy: { blocked_models: ['gpt-3*'] },
    agent: { name: 'helper', tools: ['bash'] },
  });
  b = await openDashboardBrowser();
  page = b.page;
  await b.signIn(base, f.user);
}, 120_000);

afterAll(async () => {
  await b?.close();
  await f?.close();
  await smtp?.stop();
});

const get = async (url: string) => f.t.call('GET', url, { token: f.user.token });
const step = (name: string, run: () => Promise<void>, expected?: RegExp[]) => b.step(name, run, expected);
const statusLine = () => page.getByRole('status').filter({ has: page.locator('.badge') });

async function downloaded(click: () => Promise<void>): Promise<string> {
  const download = page.waitForEvent('download');
  await click();
  return readFileSync((await (await download).path())!, 'utf8');
}

let policyId: string;

it('creates a policy with every part of its document', async () => {
  await step('policy-form', async () => {
    await page.goto(`${base}/policies/new`);
    await page.getByLabel('Name').fill('full-coverage');
    await page.getByLabel('Limit per run (USD)').fill('2.5');
    await page.getByLabel('Limit per run (tokens)').fill('500000');
    await page.getByLabel('Alert at (USD per run)').fill('2');
    await page.getByLabel('When a run passes its alert').selectOption('stop_and_alert');
    await page.getByLabel('Limit per hour (USD)').fill('10');
    await page.getByLabel('Requests per minute').fill('60');
    await page.getByLabel('Tokens per minute').fill('90000');
    await page.getByLabel('Allowed models').fill('gpt-4o*, claude-*');
    await page.getByLabel('Default model').fill('gpt-4o-mini');
    await page.getByRole('button', { name: 'Add a mapping' }).click();
    await page.getByLabel('Model asked for (mapping 1)').fill('gpt-4o');
    await page.getByLabel('Provider (mapping 1)').selectOption('anthropic');
    await page.getByLabel('Model sent (mapping 1)').fill('claude-sonnet-4');
    await page.getByLabel('Blocked tools').fill('fetch');
    await page.getByLabel('Tools that need approval').fill('bash, write_*');
    await page.getByLabel('Approval expires after (minutes)').fill('30');
    await page.getByLabel('Default provider chain').fill('openai, anthropic');
    await page.getByLabel('Load balancing').selectOption('round_robin');
    await page.getByLabel('Attempts in all').fill('4');
    await page.getByLabel('Timeout (ms)', { exact: true }).fill('60000');
    await page.getByLabel('Circuit opens after (failures)').fill('3');
    await page.getByRole('button', { name: 'Add a route' }).click();
    await page.getByLabel('Model pattern (route 1)').fill('claude-*');
    await page.getByLabel('Provider chain (route 1)').fill('anthropic');
    await page.getByLabel('Timeout in ms (route 1)').fill('30000');
    await page.getByLabel('Stop runaway runs').check();
    await page.getByLabel('Steps per run at most').fill('40');
    await page.getByLabel('Content logging').selectOption('disabled');
    await page.getByLabel('cost limit', { exact: true }).selectOption('failed');
    await b.check('policy-form-full');
    await page.getByRole('button', { name: 'Create policy' }).click();
    await page.getByRole('link', { name: 'full-coverage' }).waitFor(soon);

    const list = await get('/v1/policies?name=full-coverage');
    const policy = list.body.data[0] as Json;
    policyId = policy.id as string;
    expect(policy).toMatchObject({
      budget: {
        hard_limit_usd: 2.5,
        hard_limit_tokens: 500000,
        alert_threshold_usd: 2,
        alert_threshold_tokens: null,
        on_alert_threshold: 'stop_and_alert',
        max_cost_per_hour_usd: 10,
      },
      rate_limits: { max_requests_per_minute: 60, max_tokens_per_minute: 90000 },
      allowed_models: ['gpt-4o*', 'claude-*'],
      default_model: 'gpt-4o-mini',
      model_override: null,
      model_mapping: { 'gpt-4o': { anthropic: 'claude-sonnet-4' } },
      blocked_tools: ['fetch'],
      require_approval: ['bash', 'write_*'],
      approval_expiry_ms: 1_800_000,
      routing: {
        default_chain: ['openai', 'anthropic'],
        load_balancing: 'round_robin',
        max_retries: 4,
        timeout_ms: 60000,
        connect_timeout_ms: 10000,
        circuit_breaker: { failure_threshold: 3, recovery_timeout_ms: 30000 },
        model_routes: [{ pattern: 'claude-*', chain: ['anthropic'], timeout_ms: 30000 }],
      },
      runaway_prevention: { enabled: true, max_steps_per_run: 40 },
      content_logging: 'disabled',
      dry_run: false,
    });
    expect((policy.outcome_defaults as Json).cost_limit).toBe('failed');
  });
}, 90_000);

it('edits the policy, and its history shows each changed field before and after', async () => {
  await step('policy-history', async () => {
    await page.goto(`${base}/policies/${policyId}`);
    const runLimit = page.getByLabel('Limit per run (USD)');
    await expect.poll(() => runLimit.inputValue(), soon).toBe('2.5');
    await runLimit.fill('3');
    await page.getByRole('button', { name: 'Remove mapping 1' }).click();
    await page.getByLabel('Dry run').check();
    // An emptied defaulted field goes back to its default.
    await page.getByLabel('Attempts in all').fill('');
    // A rule the server refuses across fields: its message, and nothing saved.
    await page.getByLabel('Connect timeout (ms)').fill('90000');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('must be ≤ routing.timeout_ms').waitFor(soon);
    await page.getByLabel('Connect timeout (ms)').fill('');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.waitForURL(`${base}/policies`);

    const saved = (await get(`/v1/policies/${policyId}`)).body as Json;
    expect(saved).toMatchObject({ version: 2, dry_run: true, model_mapping: {} });
    expect(saved.budget).toMatchObject({ hard_limit_usd: 3 });
    expect(saved.routing).toMatchObject({ max_retries: 3, connect_timeout_ms: 10000 });

    await page.getByRole('link', { name: 'full-coverage' }).click();
    await page.getByRole('link', { name: 'History (version 2)' }).click();
    await page.getByRole('heading', { name: 'Version 2' }).waitFor(soon);
    await page.getByRole('heading', { name: 'Version 1: created' }).waitFor();
    const row = (field: string) =>
      page.getByRole('row').filter({ has: page.getByRole('cell', { name: field, exact: true }) });
    await expect.poll(() => row('budget.hard_limit_usd').textContent()).toMatch(/2\.5\s*3/);
    await expect.poll(() => row('routing.max_retries').textContent()).toMatch(/4\s*3/);
    await row('dry_run').waitFor();
    await expect.poll(() => row('model_mapping.gpt-4o').textContent()).toContain('claude-sonnet-4');
    await b.check('policy-history');
  }, [/status of 400 .*\/v1\/policies\//]);
}, 90_000);

it("lists a task's output files and downloads one", async () => {
  await step('task-files', async () => {
    f.script([
      {
        tool: 'bash',
        args: {
          command:
            'mkdir -p /workspace/outputs/charts && printf "the report\\n" > /workspace/outputs/report.txt && echo x > /workspace/outputs/charts/a.svg',
        },
      },
      { text: 'Wrote the report.' },
    ]);
    const task = await f.submit({ agent_id: helper.id, prompt: 'Write a report file.' });
    await page.goto(`${base}/tasks/${task.id as string}`);
    await page.getByRole('cell', { name: 'report.txt', exact: true }).waitFor(soon);
    await page.getByRole('cell', { name: 'charts/a.svg', exact: true }).waitFor();
    expect(await downloaded(() => page.getByRole('link', { name: 'Download report.txt' }).click())).toBe(
      'the report\n',
    );
    await b.check('task-files');
  });
}, 90_000);

it('moves files in and out of a workspace, renames, stars it and sets its model', async () => {
  await step('workspace-files', async () => {
    f.script([{ text: 'Ready.' }, { text: 'A ready agent' }]);
    const first = await f.submit({ agent_id: helper.id, prompt: 'Be ready.', mode: 'session' });
    const id = first.workspace_id as string;
    // Opened at once: before its first turn has a sandbox the page lists nothing (and asks nothing).
    await page.goto(`${base}/workspaces/${id}`);
    await page.getByText('Ready.', { exact: true }).waitFor(soon);
    await f.until(first.id as string, ['completed']);
    await page.getByRole('cell', { name: 'outputs/', exact: true }).waitFor(soon);

    await page.getByLabel('Upload into folder').fill('notes');
    await page.getByLabel('Upload a file').setInputFiles({
      name: 'plan.txt',
      mimeType: 'text/plain',
      buffer: Buffer.from('step one\n'),
    });
    await page.getByRole('cell', { name: 'notes/plan.txt', exact: true }).waitFor(soon);
    expect(await downloaded(() => page.getByRole('link', { name: 'Download notes/plan.txt' }).click())).toBe(
      'step one\n',
    );
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete notes/plan.txt' }).click();
    await expect
      .poll(() => page.getByRole('cell', { name: 'notes/plan.txt', exact: true }).count(), soon)
      .toBe(0);

    await page.getByRole('button', { name: /^Star / }).click();
    await expect
      .poll(() => page.getByRole('button', { name: /^Star / }).getAttribute('aria-pressed'), soon)
      .toBe('true');
    // A model the agent's policy blocks: the API's message.
    await page.getByLabel('Model of the next turns').fill('gpt-3.5-turbo');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByRole('alert').filter({ hasText: 'gpt-3.5-turbo' }).waitFor(soon);
    await page.getByLabel('Name', { exact: true }).fill('Planning');
    await page.getByLabel('Model of the next turns').fill('gpt-4o');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByRole('heading', { name: 'Planning' }).waitFor(soon);
    expect((await get(`/v1/workspaces/${id}`)).body).toMatchObject({
      name: 'Planning',
      starred: true,
      model_override: 'gpt-4o',
    });
    await page.getByRole('cell', { name: 'notes/', exact: true }).waitFor();
    await b.check('workspace-files');

    // Archived: out of the list until the list shows them.
    await page.getByLabel('Archived').click();
    await expect.poll(async () => (await get(`/v1/workspaces/${id}`)).body.archived, soon).toBe(true);
    await page.goto(`${base}/workspaces`);
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await expect.poll(() => page.getByRole('link', { name: 'Planning' }).count(), soon).toBe(0);
    await page.getByLabel('Show archived conversations').check();
    await page.getByRole('link', { name: 'Planning' }).waitFor(soon);

    // Ended while its files are listed: the files go, and nothing asks for them (no 409 in the page).
    await page.getByRole('link', { name: 'Planning' }).click();
    await page.getByRole('cell', { name: 'outputs/', exact: true }).waitFor(soon);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'End Planning' }).click();
    await page.getByText('This conversation has ended').waitFor(soon);
    await expect.poll(() => page.getByRole('heading', { name: 'Files' }).count()).toBe(0);
  }, [/status of 400 .*\/v1\/workspaces\//]);
}, 120_000);

it("fits a sandbox's terminal to its box, and takes, restores and deletes a snapshot", async () => {
  await step('capsule-snapshots', async () => {
    await page.goto(`${base}/capsules`);
    await page.getByRole('button', { name: 'Start sandbox' }).click();
    await page.waitForURL(/\/capsules\/cap_/);
    const sourceUrl = page.url();
    await page.getByText('Connected: type into the terminal below.').waitFor(soon);

    // The shell is told the size the terminal fits, before and after the window narrows.
    const size = async () => {
      const text = (await page.locator('.terminal-size').textContent()) ?? '';
      const [, cols, rows] = /(\d+) columns × (\d+) rows/.exec(text) ?? [];
      return { cols: Number(cols), rows: Number(rows) };
    };
    const sttyReports = async (expected: { cols: number; rows: number }) => {
      await page.locator('.capsule-terminal').click();
      await page.keyboard.type('clear; stty size');
      await page.keyboard.press('Enter');
      await expect
        .poll(() => page.locator('.xterm-accessibility').textContent(), soon)
        .toContain(`${expected.rows} ${expected.cols}`);
    };
    await expect.poll(async () => (await size()).cols, soon).toBeGreaterThan(0);
    const wide = await size();
    expect(wide.cols).not.toBe(100);
    await sttyReports(wide);
    await page.setViewportSize({ width: 900, height: 860 });
    await expect.poll(async () => (await size()).cols, soon).toBeLessThan(wide.cols);
    await sttyReports(await size());
    await page.setViewportSize({ width: 1280, height: 860 });

    await page.getByLabel('Snapshot name').fill('depth-snap');
    await page.getByRole('button', { name: 'Take a snapshot' }).click();
    await page.getByRole('cell', { name: 'depth-snap', exact: true }).waitFor(soon);
    await b.check('capsule-snapshots');
    expect((await get('/v1/snapshots/depth-snap')).body).toMatchObject({
      type: 'snapshot',
      source_capsule_id: sourceUrl.split('/').pop(),
    });

    await page.getByRole('button', { name: 'Restore depth-snap into a new sandbox' }).click();
    await page.waitForURL((url) => /\/capsules\/cap_/.test(url.pathname) && url.href !== sourceUrl, soon);
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/running.*depth-snap/);

    await page.goto(sourceUrl);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete depth-snap' }).click();
    await page.getByText('No snapshots of this sandbox.').waitFor(soon);
    expect((await get('/v1/snapshots/depth-snap')).status).toBe(404);
  });
}, 120_000);

it('resets a forgotten password with the e-mailed link', async () => {
  const user = await f.t.signup({ name: 'Forgetful', password: 'the old password' });
  await step('reset-password', async () => {
    await page.goto('about:blank');
    await b.context.clearCookies();
    await page.goto(`${base}/login`);
    await page.getByRole('button', { name: 'Forgot password?' }).click();
    await page.getByLabel('Email').fill(user.user.email);
    await page.getByRole('button', { name: 'E-mail me a reset link' }).click();
    await page.getByText('Check your inbox.').waitFor(soon);

    const mail = await smtp.mailTo(user.user.email);
    expect(mail.body).toContain('/reset-password?token=');
    const token = tokenIn(mail);
    await page.goto(`${base}/reset-password?token=${token}`);
    await page.getByLabel('New password', { exact: true }).fill('a brand new secret');
    await page.getByLabel('New password again').fill('a different secret');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByText('The two passwords differ.').waitFor();
    await b.check('reset-password');
    await page.getByLabel('New password again').fill('a brand new secret');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByText('Your new password is set').waitFor(soon);
    // The session the account had is over, and only the new password signs in.
    expect((await f.t.call('GET', '/v1/me', { token: user.token })).status).toBe(401);
    expect(
      (
        await f.t.call('POST', '/v1/auth/login', {
          body: { email: user.user.email, password: 'the old password' },
        })
      ).status,
    ).toBe(401);

    await page.getByRole('link', { name: 'Sign in with your new password' }).click();
    await page.getByLabel('Email').fill(user.user.email);
    await page.getByLabel('Password').fill('a brand new secret');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/`);
    await expect.poll(() => page.locator('.topbar .user').textContent(), soon).toBe(user.user.email);

    // The same link again: the API's reason.
    await page.goto(`${base}/reset-password?token=${token}`);
    await page.getByLabel('New password', { exact: true }).fill('yet another secret');
    await page.getByLabel('New password again').fill('yet another secret');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByRole('alert').waitFor(soon);
  }, [/status of 400 .*\/v1\/auth\/password-reset\/complete\)$/]);
}, 90_000);

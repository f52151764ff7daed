import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { type DashboardBrowser, openDashboardBrowser, soon } from '../support/browser.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The dashboard's workspaces, sandboxes and playbooks pages in a real browser
// against a listening server whose tasks run in sandboxes and call the mock
// provider: a conversation continued in the chat view with its reply streamed
// in, a turn cancelled; a sandbox's terminal running a command, a file
// uploaded and downloaded, the sandbox paused, resumed and deleted; a
// playbook's schedule previewed, the playbook created, fired and its run seen;
// the runs with a run's steps and ledger; the activity feed; the audit log.
// Every page passes axe-core and breaks no CSP rule; screenshots go to
// .test-artifacts/screenshots/.

let f: TaskFixture;
let b: DashboardBrowser;
let page: Page;
let base: string;

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  f = await startTasks();
  base = await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  await f.agent({ agent: { name: 'helper', tools: ['bash'] } });
  b = await openDashboardBrowser();
  page = b.page;
  // Signed in as the fixture's user: its session token is the session cookie.
  await b.signIn(base, f.user);
}, 120_000);

afterAll(async () => {
  await b?.close();
  await f?.close();
});

async function nav(label: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label }).click();
}

const step = (name: string, run: () => Promise<void>) => b.step(name, run);

const statusLine = () => page.getByRole('status').filter({ has: page.locator('.badge') });

it('continues a workspace conversation in the chat view and sees the reply stream in', async () => {
  await step('workspaces', async () => {
    await page.goto(`${base}/workspaces`);
    await page.getByText('No conversations yet.').waitFor();
    await b.check('workspaces-empty');

    // The first turn, then the title call after it.
    f.script([{ text: 'Hello, I am listening.' }, { text: 'A listening agent' }]);
    await page.getByLabel('First message').fill('Are you there?');
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await page.waitForURL(/\/workspaces\/ws_/);
    await page.getByText('Hello, I am listening.').waitFor(soon);
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/idle/);

    // The next turn: a bash call, then the answer streamed in three deltas, slowly.
    f.script([
      { tool: 'bash', args: { command: 'echo hello-from-turn-two' } },
      { chunks: ['The sandbox ', 'said ', 'hello-from-turn-two.'], delayMs: 300 },
    ]);
    const box = page.getByLabel('Message');
    await box.fill('Run echo in the sandbox.');
    await box.press('Enter');
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/active/);
    await page.getByText('The sandbox said hello-from-turn-two.').waitFor(soon);
    await expect
      .poll(() => page.locator('pre.output').first().textContent(), soon)
      .toContain('hello-from-turn-two');
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/idle/);
    await page.locator('.chat-user').getByText('Run echo in the sandbox.').waitFor(soon);
    await b.check('workspace');

    // A turn that hangs is cancelled from the page, and the workspace takes messages again.
    // Cancelled once the model call hangs: cancelled before it, the turn would leave its 60 s step
    // queued in the mock for the next test's first call.
    f.script([{ text: 'too late', delayMs: 60_000 }]);
    const asked = f.mock.requests.length;
    await box.fill('Take your time.');
    await page.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => f.mock.requests.length, soon).toBeGreaterThan(asked);
    await page.getByRole('button', { name: 'Cancel turn' }).click();
    await page.locator('.chat-note').getByText('cancelled').waitFor(soon);
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/idle/);

    await nav('Workspaces');
    await page.getByRole('link', { name: 'A listening agent' }).waitFor(soon);
    await b.check('workspaces');
  });
}, 120_000);

it("opens a sandbox's terminal, runs a command, moves a file both ways, pauses, resumes and deletes it", async () => {
  await step('capsule', async () => {
    await nav('Sandboxes');
    await page.getByRole('heading', { name: 'Start a sandbox' }).waitFor();
    await b.check('capsules');
    await page.getByRole('button', { name: 'Start sandbox' }).click();
    await page.waitForURL(/\/capsules\/cap_/);
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/running/);
    await page.getByText('Connected: type into the terminal below.').waitFor(soon);
    await page.locator('.capsule-terminal').click();
    await page.keyboard.type('echo hello-$((6*7))');
    await page.keyboard.press('Enter');
    // The canvas draws the screen; xterm's screen-reader rows carry the same text.
    await expect.poll(() => page.locator('.xterm-accessibility').textContent(), soon).toContain('hello-42');

    await page.getByLabel('Upload to /home/user').setInputFiles({
      name: 'notes.txt',
      mimeType: 'text/plain',
      buffer: Buffer.from('uploaded from the dashboard\n'),
    });
    await page.getByRole('cell', { name: 'notes.txt', exact: true }).waitFor(soon);
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: 'Download notes.txt' }).click();
    const saved = await (await download).path();
    expect(readFileSync(saved, 'utf8')).toBe('uploaded from the dashboard\n');
    await b.check('capsule');

    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/paused/);
    await page.getByText('Resume it to open a shell.').waitFor();
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/running/);
    await page.getByText('Connected: type into the terminal below.').waitFor(soon);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: /^Delete cap_/ }).click();
    await page.waitForURL(`${base}/capsules`);
  });
}, 120_000);

it('previews a schedule, creates a playbook, fires it and sees its run complete', async () => {
  await step('playbooks', async () => {
    await nav('Playbooks');
    await page.getByText('No playbooks yet.').waitFor();
    await page.getByRole('link', { name: 'New playbook' }).first().click();
    await page.getByLabel('Name').fill('morning report');
    await page.getByLabel('Prompt').fill('Report on the morning.');
    await page.getByLabel('Schedule', { exact: true }).fill('30 7 * * 1-5');
    await page.getByLabel('Time zone').fill('Europe/Paris');
    await expect.poll(() => page.locator('.runs-next li').count()).toBe(5);
    await page.getByLabel('Schedule', { exact: true }).fill('30 7 * *');
    await page.getByText('A schedule has 5 fields').waitFor();
    await page.getByLabel('Schedule', { exact: true }).fill('*/15 * * * *');
    await expect.poll(() => page.locator('.runs-next li').count()).toBe(5);
    await b.check('playbook-form');
    await page.getByRole('button', { name: 'Create playbook' }).click();
    await page.waitForURL(/\/playbooks\/pb_/);
    await page.getByText('No runs yet.').waitFor(soon);

    f.script([{ text: 'The morning was quiet.' }, { text: 'Morning report' }]);
    await page.getByRole('button', { name: 'Fire now' }).click();
    const run = page.getByRole('row', { name: /manual/ });
    await expect.poll(() => run.textContent(), { timeout: 60_000 }).toMatch(/completed/);
    expect(await run.textContent()).toContain('pass');
    await b.check('playbook');
    await run.getByRole('link').click();
    await page.getByText('The morning was quiet.').waitFor(soon);

    await nav('Playbooks');
    await page.getByRole('link', { name: 'morning report' }).waitFor();
    await b.check('playbooks');
  });
}, 120_000);

it("lists the runs, shows a run's steps and ledger, the activity feed and the audit log", async () => {
  await step('runs', async () => {
    await nav('Runs');
    const rows = page.getByRole('row');
    await expect.poll(() => rows.count(), soon).toBeGreaterThan(1);
    await b.check('runs');
    // The newest run is the playbook's (its chain's model call and the title call): a failover
    // recorded on it, as the gateway records one when a provider fails and another answers.
    const newest = (await f.t.call('GET', '/v1/runs', { token: f.user.token })).body.data[0];
    f.t.services.runs.recordFailoverTransition({
      teamId: f.user.team.id,
      runId: newest.id,
      agentId: newest.agent_id,
      attempted: [
        {
          provider: 'anthropic',
          provider_key_id: 'pkey_x',
          status: 503,
          error: 'overloaded',
          kind: 'http_error',
        },
      ],
      resolvedProvider: 'openai',
      resolvedModel: 'gpt-4o-mini',
      originalModel: 'claude-sonnet-4',
    });
    await f.t.services.runs.flush();
    await page.getByLabel('Failover').selectOption('yes');
    await page.waitForURL(/failover=yes/);
    await expect.poll(() => rows.count(), soon).toBe(2);
    await expect.poll(() => rows.nth(1).getByRole('cell', { name: 'failover' }).count()).toBe(1);
    await rows.nth(1).getByRole('link').click();
    await page.getByText('after 1 failed attempt').click();
    await page.getByText('anthropic: 503 overloaded').waitFor(soon);
    await page.getByRole('cell', { name: 'llm call' }).first().waitFor(soon);
    await page.getByRole('cell', { name: 'model', exact: true }).first().waitFor(soon);
    await b.check('run');

    await nav('Activity');
    await page
      .getByRole('cell', { name: /morning report/ })
      .first()
      .waitFor(soon);
    await b.check('activity');

    // The audit log, narrowed to the playbooks' entries by an action prefix.
    await nav('Audit log');
    await page.getByLabel('Action').fill('playbook.*');
    await page.getByLabel('Action').press('Enter');
    await page.waitForURL(/action=playbook/);
    await page.getByRole('cell', { name: 'playbook.created' }).first().waitFor(soon);
    await expect.poll(() => page.getByRole('cell', { name: /^agent\./ }).count()).toBe(0);
    await b.check('audit');
  });
}, 60_000);

it('the chat view in the dark theme, and a conversation ended from it', async () => {
  await step('dark', async () => {
    await nav('Workspaces');
    await page.getByRole('button', { name: 'Switch to the dark theme' }).click();
    await page.getByRole('link', { name: 'A listening agent' }).click();
    await page.getByText('The sandbox said hello-from-turn-two.').waitFor(soon);
    await b.check('workspace-dark');

    // Ended from the page: the history stays, the message box goes.
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'End A listening agent' }).click();
    await page.getByText('This conversation has ended').waitFor(soon);
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/terminated/);
    expect(await page.getByLabel('Message').count()).toBe(0);
    await page.getByText('The sandbox said hello-from-turn-two.').waitFor();
  });
}, 60_000);

import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { type DashboardBrowser, openDashboardBrowser, soon } from '../support/browser.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The dashboard's agent area in a real browser against a listening server
// whose tasks run in sandboxes and call the mock provider: an environment
// created, built and changed (its versions and build logs); an agent moved
// onto it, its versions compared, a task tried from its page that runs in
// that environment, its key rotated (the old one refused) and the agent
// forked; secrets added, given a new value and deleted (a value never on
// screen again); a skill written, edited and deleted; memories added,
// searched and deleted. Every page passes axe-core and breaks no CSP rule;
// screenshots go to .test-artifacts/screenshots/.

let f: TaskFixture;
let b: DashboardBrowser;
let page: Page;
let base: string;
let helper: Json & { api_key: string };
let envId: string;

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  f = await startTasks();
  base = await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  helper = await f.agent({ agent: { name: 'helper', tools: ['bash'] } });
  b = await openDashboardBrowser();
  page = b.page;
  // Signed in as the fixture's user: its session token is the session cookie.
  await b.signIn(base, f.user);
}, 120_000);

afterAll(async () => {
  await b?.close();
  await f?.close();
});

const get = async (url: string, token = f.user.token) => f.t.call('GET', url, { token });

async function nav(label: string): Promise<void> {
  await page
    .getByRole('navigation', { name: 'Main' })
    .getByRole('link', { name: label, exact: true })
    .click();
}

const step = (name: string, run: () => Promise<void>, expected?: RegExp[]) => b.step(name, run, expected);

const statusLine = () => page.getByRole('status').filter({ has: page.locator('.badge') });
const build = { timeout: 60_000 };

it('creates an environment, watches it build, changes it and reads both build logs', async () => {
  await step('environments', async () => {
    await page.goto(`${base}/environments`);
    await page.getByRole('link', { name: 'minimal', exact: true }).waitFor();
    await page.getByRole('link', { name: 'New environment' }).click();
    await page.getByLabel('Name').fill('py-tools');
    await page.getByLabel('Setup commands').fill('echo built-$((6*7)) > "$HOME/built"\necho step-two');
    await page.getByLabel('Variables').fill('STAGE=first');
    await page.getByRole('button', { name: 'Create and build' }).click();
    await page.waitForURL(/\/environments\/env_/);
    envId = new URL(page.url()).pathname.split('/').pop()!;
    await expect.poll(() => statusLine().first().textContent(), build).toMatch(/ready/);
    const log = page.locator('pre.build-log');
    await expect.poll(() => log.textContent(), soon).toContain('$ echo step-two');
    expect(await log.textContent()).toContain('[exit 0]');
    expect((await get(`/v1/environments/${envId}`)).body.current_version).toMatchObject({
      version: 1,
      status: 'ready',
      env_vars: { STAGE: 'first' },
    });

    // What runs changes: version 2, built on its own; version 1's log is still there.
    await page.getByLabel('Variables').fill('STAGE=second');
    await page.getByRole('button', { name: /^Save/ }).click();
    await page.getByRole('heading', { name: 'Version 2 (current)' }).waitFor(soon);
    await expect.poll(() => statusLine().first().textContent(), build).toMatch(/ready/);
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(3);
    await page.getByRole('button', { name: 'Build log of version 1' }).click();
    await page.getByRole('heading', { name: 'Build log of version 1' }).waitFor();
    await expect.poll(() => log.textContent(), soon).toContain('built-$((6*7))');
    await b.check('environment');

    await nav('Environments');
    await page.getByRole('link', { name: 'py-tools' }).waitFor();
    await b.check('environments');

    // The platform's is read-only: forked, and the fork archived.
    await page.getByRole('link', { name: 'minimal', exact: true }).click();
    await page.getByText('A platform environment is read-only').waitFor();
    await page.getByRole('button', { name: 'Fork' }).click();
    await page.getByRole('heading', { name: /^Environment minimal-/ }).waitFor(soon);
    const forkId = new URL(page.url()).pathname.split('/').pop()!;
    expect(forkId).not.toBe('env_minimal');
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: /^Archive minimal-/ }).click();
    await page.waitForURL(`${base}/environments`);
    await page.getByRole('link', { name: 'py-tools' }).waitFor(soon);
    await expect.poll(() => page.getByRole('link', { name: /^minimal-/ }).count()).toBe(0);
    expect((await get(`/v1/environments/${forkId}`)).body.archived).toBe(true);
  });
}, 150_000);

it('moves an agent onto the environment, compares its versions and tries it from its page', async () => {
  await step('agent-versions', async () => {
    await page.goto(`${base}/agents/${helper.id}`);
    await page.getByLabel('Environment').selectOption({ label: 'py-tools' });
    await page.getByLabel('System prompt').fill('Be brief.');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.waitForURL(`${base}/agents`);
    const saved = (await get(`/v1/agents/${helper.id}`)).body;
    expect(saved).toMatchObject({ version: 2, environment_id: envId, environment_version: 2 });

    await page.getByRole('link', { name: 'helper' }).click();
    await page.getByRole('link', { name: 'Versions (now v2)' }).click();
    await page.waitForURL(/\/versions$/);
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(3);
    await b.check('agent-versions');

    await page.getByRole('button', { name: 'Compare version 2 with version 1' }).click();
    await page.waitForURL(/from=1&to=2/);
    await page.getByRole('heading', { name: 'Changes from version 1 to version 2' }).waitFor();
    await page.getByRole('cell', { name: 'system_prompt' }).waitFor(soon);
    await page.getByRole('cell', { name: 'environment_id' }).waitFor();
    await page.getByRole('cell', { name: 'Be brief.' }).waitFor();
    await expect.poll(() => page.getByRole('cell', { name: 'tools', exact: true }).count()).toBe(0);
    // The same version twice: nothing differs.
    await page.getByLabel('From', { exact: true }).selectOption('2');
    await page.getByRole('button', { name: 'Compare', exact: true }).click();
    await page.getByText('No differences.').waitFor(soon);
    await page.getByLabel('From', { exact: true }).selectOption('1');
    await page.getByRole('button', { name: 'Compare', exact: true }).click();
    await page.getByRole('cell', { name: 'system_prompt' }).waitFor(soon);
    await b.check('agent-diff');
  });

  await step('agent-try-it', async () => {
    await page.getByRole('link', { name: 'Back to the agent' }).click();
    f.script([
      { tool: 'bash', args: { command: 'cat "$HOME/built"; echo "stage=$STAGE"' } },
      { text: 'The environment says hello.' },
    ]);
    await page.getByLabel('Prompt for helper').fill('What does the environment say?');
    await page.getByRole('button', { name: 'Run task' }).click();
    await page.getByText('The environment says hello.').waitFor(soon);
    await expect.poll(() => statusLine().textContent(), soon).toMatch(/completed/);
    await b.check('agent-try-it');

    await page.getByRole('link', { name: 'Open the live task page' }).click();
    await page.waitForURL(/\/tasks\/task_/);
    const taskId = new URL(page.url()).pathname.split('/').pop()!;
    await page.getByText('The environment says hello.').first().waitFor(soon);
    const events = await f.events(taskId);
    const out = events.find((e) => e.type === 'tool_result' && e.payload.name === 'bash');
    expect(out?.payload.output).toContain('built-42');
    expect(out?.payload.output).toContain('stage=second');
  });

  await step('agent-key-fork', async () => {
    await page.goto(`${base}/agents/${helper.id}`);
    expect((await get('/v1/me', helper.api_key)).status).toBe(200);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Rotate key' }).click();
    const secret = page.locator('code.secret');
    await secret.waitFor(soon);
    const rotated = (await secret.textContent())!;
    expect(rotated).toMatch(/^pda_/);
    expect((await get('/v1/me', helper.api_key)).status).toBe(401);
    expect((await get('/v1/me', rotated)).status).toBe(200);
    await page.getByRole('button', { name: 'Done' }).click();
    await expect.poll(() => secret.count()).toBe(0);
    expect(await page.content()).not.toContain(rotated);

    await page.getByLabel('Name of the fork').fill('helper-copy');
    await page.getByRole('button', { name: 'Fork agent' }).click();
    await page.getByText('The key of helper-copy, the new fork').waitFor(soon);
    const forkKey = (await secret.textContent())!;
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('heading', { name: 'Agent helper-copy' }).waitFor(soon);
    const forkId = new URL(page.url()).pathname.split('/').pop()!;
    const fork = (await get(`/v1/agents/${forkId}`)).body;
    expect(fork).toMatchObject({ name: 'helper-copy', system_prompt: 'Be brief.', environment_id: envId });
    expect((await get('/v1/me', forkKey)).body).toMatchObject({ id: forkId });
  });
}, 150_000);

it('adds a secret, gives it a new value and deletes it, never showing a value again', async () => {
  await step('secrets', async () => {
    await nav('Secrets');
    await page.getByText('No secrets yet.').waitFor();
    await page.getByLabel('Name', { exact: true }).fill('DEPLOY_TOKEN');
    await page.getByLabel('Value', { exact: true }).fill('first-sekrit-value');
    await page.getByLabel('Given to').selectOption('agents');
    await page.getByRole('checkbox', { name: 'helper', exact: true }).check();
    await page.getByRole('button', { name: 'Add secret' }).click();
    const row = page.getByRole('row', { name: /DEPLOY_TOKEN/ });
    await expect.poll(() => row.textContent(), soon).toContain('version 1');
    expect(await row.textContent()).toContain('helper');
    expect(await page.getByLabel('Value', { exact: true }).inputValue()).toBe('');

    await page.getByRole('button', { name: 'New value for DEPLOY_TOKEN' }).click();
    await page.getByLabel('New value of DEPLOY_TOKEN').fill('second-sekrit-value');
    await page.getByRole('button', { name: 'Save value' }).click();
    await expect.poll(() => row.textContent(), soon).toContain('version 2');
    const html = await page.content();
    expect(html).not.toContain('first-sekrit-value');
    expect(html).not.toContain('second-sekrit-value');
    const listed = (await get('/v1/secrets')).body.data;
    expect(listed).toMatchObject([{ name: 'DEPLOY_TOKEN', value_version: 2, agent_ids: [helper.id] }]);
    const revealed = await f.t.call('POST', '/v1/secrets/DEPLOY_TOKEN/reveal', { token: f.user.token });
    expect(revealed.body.value).toBe('second-sekrit-value');

    // A value the API refuses: its message on the page.
    await page.getByLabel('Name', { exact: true }).fill('lower-case');
    await page.getByLabel('Value', { exact: true }).fill('another-value');
    await page.getByRole('button', { name: 'Add secret' }).click();
    await page.getByRole('alert').filter({ hasText: /name/ }).waitFor(soon);
    await b.check('secrets');

    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete DEPLOY_TOKEN' }).click();
    await page.getByText('No secrets yet.').waitFor(soon);
    expect((await get('/v1/secrets')).body.data).toEqual([]);
  }, [/status of 400 \(Bad Request\) \(http:\/\/[^)]*\/v1\/secrets\)/]);
}, 60_000);

it('writes a skill, edits it and deletes it', async () => {
  await step('skills', async () => {
    await nav('Skills');
    await page.getByText('No skills yet.').waitFor();
    await page.getByRole('link', { name: 'New skill' }).click();
    await page.getByLabel('Name').fill('release-notes');
    await page.getByLabel('Description').fill('How to write the release notes');
    await page.getByLabel('Instructions').fill('# Release notes\n\nList every change, newest first.');
    await page.getByRole('button', { name: 'Create skill' }).click();
    await page.waitForURL(`${base}/skills`);
    await page.getByRole('link', { name: 'release-notes' }).click();
    await page.getByRole('heading', { name: 'Skill release-notes' }).waitFor();
    expect(await page.getByLabel('Instructions').inputValue()).toContain('List every change');
    await page.getByLabel('Description').fill('How to write the release notes of a version');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByRole('cell', { name: 'How to write the release notes of a version' }).waitFor(soon);
    await b.check('skills');
    const skills = (await get('/v1/skills')).body.data;
    expect(skills).toMatchObject([
      { name: 'release-notes', description: 'How to write the release notes of a version' },
    ]);

    // Given to the agent on its page (with its memory on), it cannot be deleted until dropped.
    const setSkill = async (given: boolean) => {
      await page.goto(`${base}/agents/${helper.id}`);
      await page.getByRole('checkbox', { name: 'release-notes' }).setChecked(given);
      await page.getByRole('checkbox', { name: /^Memory/ }).check();
      await page.getByRole('button', { name: 'Save changes' }).click();
      await page.waitForURL(`${base}/agents`);
    };
    await setSkill(true);
    expect((await get(`/v1/agents/${helper.id}`)).body).toMatchObject({
      skill_ids: [skills[0].id],
      memory_enabled: true,
    });
    const remove = async () => {
      await nav('Skills');
      await page.getByRole('link', { name: 'release-notes' }).click();
      page.once('dialog', (d) => void d.accept());
      await page.getByRole('button', { name: 'Delete release-notes' }).click();
    };
    await remove();
    await page.getByRole('alert').filter({ hasText: 'listed by 1 agent' }).waitFor(soon);
    await setSkill(false);
    expect((await get(`/v1/agents/${helper.id}`)).body).toMatchObject({
      skill_ids: [],
      memory_enabled: true,
    });
    await remove();
    await page.getByText('No skills yet.').waitFor(soon);
    expect((await get('/v1/skills')).body.data).toEqual([]);
  }, [/status of 409 \(Conflict\) \(http:\/\/[^)]*\/v1\/skills\/skl_/]);
}, 60_000);

it("adds memories, searches an agent's memories and deletes one", async () => {
  await step('memories', async () => {
    await nav('Memories');
    await page.getByText('No memories yet.').waitFor();
    await page.getByLabel('For agent').selectOption({ label: 'helper' });
    for (const content of ['The deploy day is Thursday.', 'Coffee is in the kitchen.']) {
      await page.getByLabel('What it should remember').fill(content);
      await page.getByRole('button', { name: 'Add memory' }).click();
      await page.getByRole('cell', { name: content, exact: true }).waitFor(soon);
    }
    await page.getByLabel('Agent', { exact: true }).selectOption({ label: 'helper' });
    await page.getByLabel('Search').fill('deploys');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.waitForURL(/q=deploys/);
    await page.getByRole('heading', { name: /matching “deploys”/ }).waitFor();
    await page.getByRole('cell', { name: 'The deploy day is Thursday.', exact: true }).waitFor(soon);
    await expect
      .poll(() => page.getByRole('cell', { name: 'Coffee is in the kitchen.', exact: true }).count())
      .toBe(0);
    await b.check('memories');

    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: /^Delete memory “The deploy day/ }).click();
    await page.getByText('Nothing matches.').waitFor(soon);
    const left = (await f.t.call('GET', '/v1/memories', { token: f.user.token })).body.data;
    expect(left).toMatchObject([{ content: 'Coffee is in the kitchen.', agent_id: helper.id }]);
  });
}, 60_000);

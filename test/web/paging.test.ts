import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { type DashboardBrowser, openDashboardBrowser, soon } from '../support/browser.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// Paged lists in a real browser: more tasks than one page (submitted through
// the API to a server that runs none of them, so they stay queued and cost
// nothing), paged through with DataTable's "Load more" on the tasks list, the
// audit log and the activity feed. Each list shows every row once, in the
// API's order, also when rows arrive at the top while the reader pages.

let f: TaskFixture;
let b: DashboardBrowser;
let page: Page;
let base: string;
let agent: Json;
/** The prompts submitted so far, in order. */
const prompts: string[] = [];

async function submitTasks(count: number): Promise<void> {
  // Ten at a time: fast, and the server is not flooded.
  for (let i = 0; i < count; i += 10) {
    const batch = Array.from({ length: Math.min(10, count - i) }, () => {
      const prompt = `paged task ${String(prompts.length + 1).padStart(3, '0')}`;
      prompts.push(prompt);
      return prompt;
    });
    await Promise.all(batch.map((prompt) => f.submit({ agent_id: agent.id, prompt })));
  }
}

/** Every row of a list as the API pages it (at most 200 a page), in its order. */
async function everything(path: string): Promise<Json[]> {
  const rows: Json[] = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const res: { status: number; body: Json } = await f.t.call(
      'GET',
      `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      { token: f.user.token },
    );
    expect(res.status).toBe(200);
    rows.push(...res.body.data);
    cursor = res.body.next_cursor;
  } while (cursor);
  return rows;
}

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  // No task runs: a submitted task stays queued, a row that costs a request and nothing more.
  f = await startTasks({ runner: { concurrency: 0 } });
  base = await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  agent = await f.agent({ agent: { name: 'pager' } });
  await submitTasks(230);
  b = await openDashboardBrowser();
  page = b.page;
  await b.signIn(base, f.user);
}, 180_000);

afterAll(async () => {
  await b?.close();
  await f?.close();
});

const step = (name: string, run: () => Promise<void>) => b.step(name, run);
const rows = () => page.locator('table.table tbody tr');
const loadMore = () => page.getByRole('button', { name: 'Load more' });

it('pages through the tasks with Load more: every task once, in the order the API lists them', async () => {
  await step('tasks', async () => {
    await page.goto(`${base}/tasks`);
    const links = page.locator('table.table tbody tr td:first-child a');
    await expect.poll(() => links.count(), soon).toBe(100);
    await page.getByText('Showing the first 100.').waitFor();

    // Five more arrive while the first page is on screen: the list (refreshed every 3 s) shows
    // them at the top, and the rows they push down come on the next page, not twice.
    await submitTasks(5);
    await expect.poll(() => links.allTextContents(), soon).toContain('paged task 235');
    expect(await links.count()).toBe(100);

    await loadMore().click();
    await expect.poll(() => links.count(), soon).toBe(200);
    await page.getByText('Showing the first 200.').waitFor();
    // The button kept the focus: the keyboard asks for the last page.
    await expect.poll(() => page.locator(':focus').textContent()).toBe('Load more');
    await page.keyboard.press('Enter');
    await expect.poll(() => links.count(), soon).toBe(235);
    await page.getByText('All 235 shown.').waitFor();
    expect(await loadMore().count()).toBe(0);

    const shown = await links.allTextContents();
    expect(new Set(shown).size).toBe(235);
    expect([...shown].sort()).toEqual([...prompts].sort());
    const listed = await everything('/v1/tasks');
    expect(shown).toEqual(listed.map((t) => t.prompt));
    await b.check('tasks-paged');
  });

  await step('tasks-filtered', async () => {
    // A filter starts again from its first page.
    await page.getByLabel('Status').selectOption('completed');
    await page.getByText('No completed tasks.').waitFor(soon);
    expect(await rows().count()).toBe(0);
    await page.getByLabel('Status').selectOption('queued');
    await expect.poll(() => rows().count(), soon).toBe(100);
    await loadMore().waitFor();
  });
}, 120_000);

it('pages through the audit log, each task submission once', async () => {
  await step('audit-paged', async () => {
    await page.goto(`${base}/audit?action=task.created`);
    await expect.poll(() => rows().count(), soon).toBe(200);
    await page.getByText('Showing the first 200.').waitFor();
    await loadMore().click();
    await expect.poll(() => rows().count(), soon).toBe(235);
    await page.getByText('All 235 shown.').waitFor();
    // The Resource column: each task's id once, in the API's order.
    const resources = await page.locator('table.table tbody tr td:nth-child(5)').allTextContents();
    const listed = await everything('/v1/audit-logs?action=task.created');
    expect(resources).toEqual(listed.map((e) => e.resource_id));
    expect(new Set(resources).size).toBe(235);
  });
}, 60_000);

it('pages through the activity feed to its end', async () => {
  await step('activity-paged', async () => {
    // The feed is written from the team's events: wait until the API lists every submission.
    let listed: Json[] = [];
    await expect
      .poll(async () => {
        listed = await everything('/v1/activity');
        return listed.filter((a) => a.resource_type === 'task').length;
      }, soon)
      .toBeGreaterThanOrEqual(235);
    await page.goto(`${base}/activity`);
    await expect.poll(() => rows().count(), soon).toBe(100);
    while ((await rows().count()) < listed.length) {
      const before = await rows().count();
      await loadMore().click();
      await expect.poll(() => rows().count(), soon).toBeGreaterThan(before);
    }
    await page.getByText(`All ${listed.length} shown.`).waitFor();
    // Each row's task link, in the API's order: no task twice, none left out.
    const taskOfRow = await rows().evaluateAll((trs) =>
      trs.map(
        (tr) => tr.querySelector('a[href^="/tasks/"]')?.getAttribute('href')?.slice('/tasks/'.length) ?? null,
      ),
    );
    expect(taskOfRow).toEqual(listed.map((a) => (a.resource_type === 'task' ? a.resource_id : null)));
    await b.check('activity-paged');
  });
}, 60_000);

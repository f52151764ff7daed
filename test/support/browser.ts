import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';

// Debian's Chromium driven by playwright-core for the dashboard's browser
// tests: no test tool downloads a browser (.ci/run installs it with apt-get).

const CHROMIUM = '/usr/bin/chromium';
export const SHOTS = path.resolve('.test-artifacts/screenshots');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
/** How long a page may take to show what a step waits for (the machine may be busy). */
export const soon = { timeout: 20_000 };

export interface DashboardBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions of the page (a CSP refusal shows up here). */
  pageErrors: string[];
  /** axe-core on the page as it is now (no serious or critical violation), then its screenshot. */
  check(name: string): Promise<void>;
  /** Signs the browser in as a user of the server at `base`: its session token as the session cookie. */
  signIn(base: string, user: { token: string; csrf: string }): Promise<void>;
  /**
   * Runs a test's step: a failure leaves a screenshot of where it stopped and names the page's
   * errors, and the step fails on any page error but the `expected` ones (failed calls made on
   * purpose, which the browser logs).
   */
  step(name: string, run: () => Promise<void>, expected?: RegExp[]): Promise<void>;
  close(): Promise<void>;
}

export async function openDashboardBrowser(): Promise<DashboardBrowser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Chromium's own sandbox cannot start as root (CI's containers).
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  mkdirSync(SHOTS, { recursive: true });
  async function check(name: string): Promise<void> {
    // Not 'networkidle': a live page keeps its event stream open.
    await page.waitForLoadState('load');
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
  async function signIn(base: string, user: { token: string; csrf: string }): Promise<void> {
    const { hostname } = new URL(base);
    await context.addCookies([
      { name: 'paddock_session', value: user.token, domain: hostname, path: '/', httpOnly: true },
      { name: 'paddock_csrf', value: user.csrf, domain: hostname, path: '/' },
    ]);
  }
  async function step(name: string, run: () => Promise<void>, expected: RegExp[] = []): Promise<void> {
    const before = pageErrors.length;
    try {
      await run();
    } catch (err) {
      await page.screenshot({ path: path.join(SHOTS, `failure-${name}.png`), fullPage: true });
      if (pageErrors.length > 0)
        throw new Error(`${String(err)}\nthe page's errors:\n${pageErrors.join('\n')}`);
      throw err;
    }
    expect(pageErrors.slice(before).filter((line) => !expected.some((e) => e.test(line)))).toEqual([]);
  }
  return { browser, context, page, pageErrors, check, signIn, step, close: () => browser.close() };
}

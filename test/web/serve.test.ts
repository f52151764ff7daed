import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.ts';

// How `paddock serve` serves the dashboard beside the API: its files at `/`,
// index.html for the pages the SPA routes itself, and never in the API's way.

const HTML = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
let t: TestApp;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'paddock-web-'));
  mkdirSync(path.join(dir, 'assets'));
  writeFileSync(path.join(dir, 'index.html'), '<!doctype html><div id="root"></div>');
  writeFileSync(path.join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
  t = await createTestApp({ dashboardDir: dir });
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the dashboard at /', () => {
  it('serves index.html at / with a self-only CSP and no caching', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/', headers: HTML });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toContain('<div id="root">');
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('serves hashed assets as immutable', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/assets/index-abc123.js' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/javascript/);
    expect(res.headers['cache-control']).toContain('immutable');
  });

  it("answers the SPA's own routes (a task page, a reload) with index.html", async () => {
    for (const url of ['/tasks', '/tasks/task_01ABC', '/agents/new?x=1', '/login']) {
      const res = await t.app.inject({ method: 'GET', url, headers: HTML });
      expect(res.statusCode, url).toBe(200);
      expect(res.body, url).toContain('<div id="root">');
      expect(res.headers['content-security-policy'], url).toBeDefined();
    }
  });

  it("leaves every API path to the API: an unknown /v1 path is the API's JSON 404, even for a browser", async () => {
    for (const url of ['/v1/nope', '/v1', '/docs/nope', '/health/x', '/host/nope']) {
      const res = await t.app.inject({ method: 'GET', url, headers: HTML });
      expect(res.statusCode, url).toBe(404);
      expect(res.json(), url).toMatchObject({ error: { code: 'route_not_found' } });
    }
    const health = await t.app.inject({ method: 'GET', url: '/health', headers: HTML });
    expect(health.json()).toMatchObject({ status: 'ok' });
    const me = await t.app.inject({ method: 'GET', url: '/v1/me', headers: HTML });
    expect(me.statusCode).toBe(401);
  });

  it('answers JSON 404 to what is not a page: a missing asset, a non-HTML client, a POST', async () => {
    const asset = await t.app.inject({ method: 'GET', url: '/assets/gone-123.js' });
    expect(asset.statusCode).toBe(404);
    const api = await t.app.inject({ method: 'GET', url: '/tasks', headers: { accept: 'application/json' } });
    expect(api.statusCode).toBe(404);
    expect(api.json()).toMatchObject({ error: { code: 'route_not_found' } });
    const post = await t.app.inject({ method: 'POST', url: '/tasks', headers: HTML });
    expect(post.statusCode).toBe(404);
  });
});

describe('without a built dashboard', () => {
  it('the API still starts and answers; / is a JSON 404', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'paddock-web-empty-'));
    const bare = await createTestApp({ dashboardDir: empty });
    try {
      const res = await bare.app.inject({ method: 'GET', url: '/', headers: HTML });
      expect(res.statusCode).toBe(404);
      expect((await bare.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    } finally {
      await bare.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.ts';
import { openApiPath, servedRoutes } from '../support/routes.ts';

interface Operation {
  summary?: string;
  tags?: string[];
  security?: Array<Record<string, string[]>>;
  parameters?: Array<{ in: string; name: string; required?: boolean }>;
  requestBody?: { content?: Record<string, { schema?: { type?: string } }> };
  responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>;
  description?: string;
  'x-websocket'?: boolean;
}
interface OpenApiDoc {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, unknown> };
}

let t: TestApp;
let doc: OpenApiDoc;
let operations: Array<{ method: string; path: string; op: Operation }>;

const FAKE_ID = 'x_01J00000000000000000000000';
const fillParams = (path: string) => path.replace(/\{[^}]+\}/g, FAKE_ID);
const WITH_BODY = new Set(['POST', 'PUT', 'PATCH']);

/** Hidden on purpose: the document does not describe itself. */
const UNDOCUMENTED = new Set(['GET /v1/openapi.json']);

/** The WebSocket routes: GET operations answering 101, marked `x-websocket`, their frames in the description. */
const WEBSOCKETS = [
  'GET /v1/capsules/{id}/exec/stream',
  'GET /v1/capsules/{id}/processes/{selector}/stream',
  'GET /v1/capsules/{id}/pty',
  'GET /v1/workspaces/{id}/ws',
];

beforeAll(async () => {
  t = await createTestApp();
  const res = await t.call('GET', '/v1/openapi.json');
  expect(res.status).toBe(200);
  expect(String(res.headers['content-type'])).toContain('application/json');
  doc = res.body;
  operations = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ method: method.toUpperCase(), path, op })),
  );
});
afterAll(() => t.close());

describe('GET /v1/openapi.json', () => {
  it('is an OpenAPI 3.1 document of this server, readable without a token', async () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info.title).toBe('Paddock API');
    const version = await t.call('GET', '/version');
    expect(doc.info.version).toBe(version.body.version);
    expect(Object.keys(doc.components.securitySchemes).length).toBeGreaterThan(0);
  });

  it('documents every route the app serves under /v1, and only those', () => {
    const served = servedRoutes(t.app);
    // The parser must see through the tree's shared prefixes.
    const names = served.map((r) => `${r.method} ${r.path}`);
    expect(names).toEqual(
      expect.arrayContaining(['POST /v1/auth/logout-all', 'DELETE /v1/teams/:id/members/:user_id']),
    );

    const servedV1 = served
      .filter((r) => r.path.startsWith('/v1/') && r.method !== 'HEAD')
      .map((r) => `${r.method} ${openApiPath(r.path)}`)
      .filter((name) => !UNDOCUMENTED.has(name));
    const documented = new Set(operations.map((o) => `${o.method} ${o.path}`));
    expect(servedV1.filter((name) => !documented.has(name))).toEqual([]);

    const servedSet = new Set(served.map((r) => `${r.method} ${openApiPath(r.path)}`));
    expect([...documented].filter((name) => !servedSet.has(name))).toEqual([]);
    expect(servedV1.length).toBeGreaterThan(20);
  });

  it('documents /health, /ready and /version with the shape they answer', async () => {
    for (const path of ['/health', '/ready', '/version']) {
      const op = doc.paths[path]?.get;
      expect(op, path).toBeDefined();
      expect(op!.security ?? []).toEqual([]);
      const schema = op!.responses?.['200']?.content?.['application/json']?.schema as {
        properties: Record<string, unknown>;
      };
      expect(schema, path).toBeDefined();
      const res = await t.call('GET', path);
      expect(res.status, path).toBe(200);
      expect(Object.keys(res.body).sort(), path).toEqual(Object.keys(schema.properties).sort());
    }
  });

  it('gives every operation a summary, tags and a 2xx response with a schema (or a 204)', () => {
    const problems: string[] = [];
    for (const { method, path, op } of operations) {
      const name = `${method} ${path}`;
      if (!op.summary) problems.push(`${name}: no summary`);
      if (!op.tags?.length) problems.push(`${name}: no tags`);
      // A WebSocket's success is its upgrade, a 101 without a body.
      const success = op['x-websocket'] ? /^101$/ : /^2\d\d$/;
      const ok = Object.entries(op.responses ?? {}).filter(([status]) => success.test(status));
      const described = ok.some(
        ([status, response]) =>
          status === '204' ||
          status === '101' ||
          Object.values(response.content ?? {}).some((media) => media.schema !== undefined),
      );
      if (!described) problems.push(`${name}: no 2xx response with a schema`);
      for (const [status, response] of ok) {
        if (status === '204' && response.content !== undefined) problems.push(`${name}: 204 with a body`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('describes the WebSocket routes: a 101, the x-websocket mark and the frames each way', () => {
    const marked = operations.filter((o) => o.op['x-websocket']).map((o) => `${o.method} ${o.path}`);
    expect(marked.sort()).toEqual([...WEBSOCKETS].sort());
    for (const { op } of operations.filter((o) => o.op['x-websocket'])) {
      expect(Object.keys(op.responses ?? {})).toContain('101');
      expect(op.description).toContain('Server → client');
      expect(op.security?.length).toBeGreaterThan(0);
    }
  });

  it('names every path parameter', () => {
    const problems: string[] = [];
    for (const { method, path, op } of operations) {
      for (const [, param] of path.matchAll(/\{([^}]+)\}/g)) {
        const found = op.parameters?.find((p) => p.in === 'path' && p.name === param);
        if (!found?.required) problems.push(`${method} ${path}: path parameter ${param}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('gives every POST/PUT/PATCH that takes a body a JSON object schema for it', async () => {
    const problems: string[] = [];
    let u: Awaited<ReturnType<TestApp['signup']>> | undefined;
    for (const { method, path, op } of operations) {
      if (!WITH_BODY.has(method)) continue;
      if (op.requestBody) {
        // JSON bodies, or uploads described as multipart forms.
        const content = op.requestBody.content ?? {};
        const schema = (content['application/json'] ?? content['multipart/form-data'])?.schema;
        if (schema?.type !== 'object')
          problems.push(`${method} ${path}: requestBody without an object schema`);
        continue;
      }
      // Documented as taking no body: then it must not require one. A fresh
      // owner whenever the last call ended the session (logout) or left its team.
      if (!u || (await t.call('GET', '/v1/me', { token: u.token })).status !== 200) u = await t.signup();
      const res = await t.call(method, fillParams(path), { token: u.token });
      if (res.status === 400 && /body/.test(String(res.body?.error?.message))) {
        problems.push(`${method} ${path}: requires a body the document does not describe`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('lists security on exactly the operations that need a token', async () => {
    const schemes = Object.keys(doc.components.securitySchemes);
    const problems: string[] = [];
    for (const { method, path, op } of operations) {
      const name = `${method} ${path}`;
      const security = op.security ?? [];
      for (const requirement of security) {
        for (const scheme of Object.keys(requirement)) {
          if (!schemes.includes(scheme)) problems.push(`${name}: unknown security scheme ${scheme}`);
        }
      }
      const res = await t.call(method, fillParams(path), WITH_BODY.has(method) ? { body: {} } : {});
      if (res.status === 401 && security.length === 0)
        problems.push(`${name}: needs a token, lists no security`);
      if (res.status !== 401 && security.length > 0)
        problems.push(`${name}: lists security, answers ${res.status} without a token`);
    }
    expect(problems).toEqual([]);
    // The public doors are the documented public ones.
    const open = operations
      .filter((o) => (o.op.security ?? []).length === 0)
      .map((o) => `${o.method} ${o.path}`);
    expect(open).toEqual(
      expect.arrayContaining([
        'POST /v1/auth/signup',
        'POST /v1/auth/login',
        'GET /v1/invitations/lookup',
        'POST /v1/invitations/accept',
      ]),
    );
    expect(open).not.toContain('POST /v1/api-keys');
  });
});

describe('GET /docs', () => {
  it('serves the API reference as an HTML page', async () => {
    const res = await t.call('GET', '/docs');
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toContain('text/html');
    expect(String(res.body).toLowerCase()).toContain('<html');
  });

  it('serves the same document the UI reads', async () => {
    const res = await t.call('GET', '/docs/json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe(doc.openapi);
    expect(Object.keys(res.body.paths)).toEqual(Object.keys(doc.paths));
  });
});

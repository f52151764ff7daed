import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallResult, createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from '../support/factories.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';
import { openApiPath, servedRoutes } from '../support/routes.ts';
import { type Receiver, startReceiver } from '../webhooks/receiver.ts';

/**
 * Every operation of /v1/openapi.json, sent hostile values in each path
 * parameter, query parameter and body field (and as a whole body), by a
 * platform admin owning a team (agent-only routes with an agent key), on
 * real resources so that the other parts of each request are valid. No
 * answer may be a 5xx, the server must still be ready afterwards, and its
 * log (the production format) must hold none of the secrets made on the way.
 *
 * The operations are shared out among the files openapi-fuzz-1.test.ts …
 * openapi-fuzz-<FUZZ_FILES>.test.ts, which run side by side, each on an app
 * and resources of its own: each file fuzzes its share, and checks that its
 * share was reached and that every route served is in some file's share.
 */

// A loose view of the JSON Schemas in the document.
interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  anyOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  minItems?: number;
  items?: Schema;
  default?: unknown;
}
interface Parameter {
  in: 'path' | 'query' | 'header';
  name: string;
  required?: boolean;
  schema?: Schema;
}
interface Operation {
  'x-websocket'?: boolean;
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}
interface Op {
  method: string;
  path: string;
  op: Operation;
  /** A WebSocket route (`x-websocket` in the document): only its path parameters are fuzzed. */
  webSocket?: boolean;
}

const PASSWORD = 'fuzz password 0123';

/** A value spliced into the JSON text as written (what JSON.stringify cannot produce). */
class Raw {
  constructor(readonly text: string) {}
}
const nest = (depth: number) => new Raw(`${'['.repeat(depth)}${']'.repeat(depth)}`);

// Hostile values for one body field. A string field gets every string attack and one of each
// other type; a number field every number attack and one of each other type; the rest get all.
const STRING_ATTACKS: unknown[] = [
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\udc00\ud800',
  '',
  ' ',
  '../../../../etc/passwd',
  '%00',
  '__proto__',
  'x'.repeat(1_000_000),
];
const NUMBER_ATTACKS: unknown[] = [
  1e300,
  -1e300,
  1e-300,
  -1e-300,
  Number.MAX_SAFE_INTEGER + 2,
  -(Number.MAX_SAFE_INTEGER + 2),
  2 ** 31,
  -1,
  0,
  1.5,
  new Raw('1e999'),
  new Raw('-1e999'),
  new Raw('-0'),
  'NaN',
  'Infinity',
  '-1e300',
];
const TYPE_ATTACKS: unknown[] = [
  true,
  null,
  [],
  ['\u0000'],
  {},
  { '\u0000': 'x' },
  { a: { b: { c: '\ud800' } } },
  new Raw('{"__proto__": {"is_admin": true}}'),
  new Raw('{"constructor": {"prototype": {"is_admin": true}}}'),
  nest(5000),
  nest(64),
];

// Nested fields (a policy's budget.hard_limit_usd) get the sharpest of each, to keep the run short.
const NESTED_ATTACKS: unknown[] = [
  '\u0000',
  'x\udfffy',
  '',
  1e300,
  -1e300,
  1e-300,
  Number.MAX_SAFE_INTEGER + 2,
  new Raw('1e999'),
  'NaN',
  null,
  [],
  { '\u0000': 'x' },
  nest(5000),
];

function hostileValuesFor(schema: Schema | undefined, nested: boolean): unknown[] {
  if (nested) return NESTED_ATTACKS;
  const types = new Set(
    [schema, ...(schema?.anyOf ?? [])].flatMap((s) => [s?.type ?? []].flat()).filter((t) => t !== 'null'),
  );
  const only = types.size === 1 ? [...types][0] : undefined;
  if (only === 'string') return [...STRING_ATTACKS, 1e300, -1, new Raw('1e999'), ...TYPE_ATTACKS];
  if (only === 'number' || only === 'integer')
    return [...NUMBER_ATTACKS, '\u0000', '\ud800', ...TYPE_ATTACKS];
  return [...STRING_ATTACKS, ...NUMBER_ATTACKS, ...TYPE_ATTACKS];
}

// Path parameters go into the URL as written (already percent-encoded).
const HOSTILE_PATH_VALUES = [
  '%00',
  'a%00b',
  '%ED%A0%80',
  '%C0%80',
  '%F0%9F%98%80',
  '%FF',
  '..',
  '%2E%2E%2F%2E%2E',
  '%2F',
  'x'.repeat(100),
  '0',
  '-1',
  '1e300',
  '99999999999999999999999',
  'NaN',
  '__proto__',
  'constructor',
  '%20',
  "x'%3B%20drop%20table%20users%3B--",
];

const HOSTILE_QUERY_VALUES = [
  '%00',
  'a%00b',
  '%ED%A0%80',
  '%ED%B0%80%ED%A0%80',
  '%FF',
  '1e300',
  '-1e300',
  '1e-300',
  '1e999',
  '9007199254740993',
  'NaN',
  'Infinity',
  '-1',
  '0',
  'true',
  '',
  'x'.repeat(10_000),
  '__proto__',
  '%5B%5D',
];

const HOSTILE_BODIES = [
  'null',
  '[]',
  '"\\u0000"',
  '0',
  '1e999',
  'true',
  '{"\\u0000": 1}',
  '{"a": "\\ud800"}',
  '{"__proto__": {"is_admin": true}}',
  '{"constructor": {"prototype": {"is_admin": true}}}',
  `${'['.repeat(5000)}${']'.repeat(5000)}`,
  `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`,
  `${'['.repeat(65)}${']'.repeat(65)}`,
  '{"a": ',
  'not json',
  '\u0000',
];

// Content types that are not what the route takes, or broken versions of it.
const HOSTILE_CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'multipart/form-data; boundary=',
  'application/json; charset=utf-16',
  'application/octet-stream',
];

// Not in the document (a frame protocol OpenAPI cannot describe): a plain GET must still not 5xx.
// Operations that end credentials or take resources away, in the order they run after the rest.
const LAST = [
  'DELETE /v1/me/sessions/{id}',
  'PATCH /v1/me',
  'DELETE /v1/teams/{id}',
  'POST /v1/auth/logout',
  'POST /v1/auth/logout-all',
  'POST /v1/auth/switch-team',
  'POST /v1/teams/{id}/transfer-ownership',
];
const ENDING = /\/(revoke|disable|stop|leave|rotate-key|roll|rotate|drain|token|complete|complete-all)$/;

/** Where an operation goes in the run: reads and writes first, then what ends things, deepest first. */
function order(o: Op): number {
  const last = LAST.indexOf(`${o.method} ${o.path}`);
  if (last >= 0) return 3000 + last;
  const depth = o.path.split('/').length;
  if (o.method === 'DELETE' || o.path.endsWith('/revoke')) return 2000 - depth;
  if (ENDING.test(o.path)) return 1000 - depth;
  return 0;
}

const CREDENTIAL_FIELDS = new Set([
  'session_token',
  'csrf_token',
  'token',
  'refresh_token',
  'registration_token',
  'key',
  'api_key',
  'password',
]);

/** JSON text of `body` with Raw values spliced in as written. */
function jsonText(body: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(body, (_key, value) => {
    if (value instanceof Raw) {
      raws.push(value.text);
      return `\u0001raw${raws.length - 1}\u0001`;
    }
    return value;
  });
  return text.replace(/"\\u0001raw(\d+)\\u0001"/g, (_, i: string) => raws[Number(i)]!);
}

/** Copy of `body` with the field at `path` (a list of keys) set to `value`. */
function withField(body: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path;
  const copy = { ...body };
  if (rest.length === 0) copy[head!] = value;
  else {
    const inner = body[head!];
    copy[head!] = withField(
      inner !== null && typeof inner === 'object' && !Array.isArray(inner)
        ? (inner as Record<string, unknown>)
        : {},
      rest,
      value,
    );
  }
  return copy;
}

/** Every field of a body schema, nested objects' fields included: ['budget', 'hard_limit_usd']. */
function fields(
  schema: Schema | undefined,
  prefix: string[] = [],
  depth = 0,
): Array<{ path: string[]; schema: Schema }> {
  const out: Array<{ path: string[]; schema: Schema }> = [];
  const objectSchema = schema?.anyOf?.find((s) => s.properties) ?? schema;
  for (const [key, child] of Object.entries(objectSchema?.properties ?? {})) {
    out.push({ path: [...prefix, key], schema: child });
    if (depth < 3) out.push(...fields(child, [...prefix, key], depth + 1));
  }
  return out;
}

interface Failure {
  method: string;
  path: string;
  field: string;
  value: string;
  status: number;
  body: string;
}

function shown(value: unknown): string {
  const text =
    value instanceof Raw ? value.text : typeof value === 'string' ? JSON.stringify(value) : jsonText(value);
  return text.length > 60 ? `${text.slice(0, 60)}… (${text.length} chars)` : text;
}

/** Uploads that are not what they say: no boundary, cut short, too many parts, bad fields. */
function hostileMultipart(): Array<[string, string, string]> {
  const b = 'fuzzboundary';
  const part = (name: string, value: string, filename?: string) =>
    `--${b}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n${value}\r\n`;
  const ok = `${part('path', '/tmp/fuzz.txt')}${part('file', 'hello', 'f.txt')}--${b}--\r\n`;
  return [
    ['valid', `multipart/form-data; boundary=${b}`, ok],
    ['no boundary', 'multipart/form-data', ok],
    ['empty boundary', 'multipart/form-data; boundary=', ok],
    ['other boundary', 'multipart/form-data; boundary=other', ok],
    ['boundary too long', `multipart/form-data; boundary=${'b'.repeat(200)}`, ok],
    ['cut short in a field', `multipart/form-data; boundary=${b}`, ok.slice(0, 30)],
    ['cut short in the file', `multipart/form-data; boundary=${b}`, ok.slice(0, ok.length - 20)],
    ['no closing boundary', `multipart/form-data; boundary=${b}`, ok.slice(0, ok.lastIndexOf(`--${b}--`))],
    ['empty', `multipart/form-data; boundary=${b}`, ''],
    ['too many fields', `multipart/form-data; boundary=${b}`, `${part('x', 'y').repeat(50)}${ok}`],
    [
      'too many files',
      `multipart/form-data; boundary=${b}`,
      `${part('path', '/tmp/a')}${part('file', 'a', 'a').repeat(5)}--${b}--\r\n`,
    ],
    ['NUL in path', `multipart/form-data; boundary=${b}`, ok.replace('/tmp/fuzz.txt', '/tmp/a\u0000b')],
    ['relative path', `multipart/form-data; boundary=${b}`, ok.replace('/tmp/fuzz.txt', '../../etc/passwd')],
    ['huge field', `multipart/form-data; boundary=${b}`, `${part('path', 'x'.repeat(20_000))}${ok}`],
    ['bad part header', `multipart/form-data; boundary=${b}`, `--${b}\r\nnonsense\r\n\r\nx\r\n--${b}--\r\n`],
    ['proto field', `multipart/form-data; boundary=${b}`, `${part('__proto__', 'x')}${ok}`],
    ['garbage', `multipart/form-data; boundary=${b}`, 'garbage'],
  ];
}

/** How many files the operations are shared out among (openapi-fuzz-1.test.ts …). */
export const FUZZ_FILES = 3;
/** Each file's share goes in this many parts, in their order (deletes last), each a test with its own time. */
const PARTS = 2;

const nameOf = (o: Op) => `${o.method} ${o.path}`;

/**
 * Which file (1 … FUZZ_FILES) fuzzes each operation, by name: the costliest first, each to the
 * file with the least cost so far (the lower file on a tie), so that the files take about as
 * long. Every operation gets one file, and every file computes the same shares.
 */
function shareOf(ops: Op[], weight: (o: Op) => number): Map<string, number> {
  const weighed = ops
    .map((o) => ({ name: nameOf(o), weight: weight(o) }))
    .sort((a, b) => b.weight - a.weight || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const load = Array.from({ length: FUZZ_FILES }, () => 0);
  const owners = new Map<string, number>();
  for (const { name, weight: w } of weighed) {
    const lightest = load.indexOf(Math.min(...load));
    load[lightest] = load[lightest]! + w;
    owners.set(name, lightest + 1);
  }
  return owners;
}

/**
 * About how long a list of requests takes, in plain requests: a body field of a million
 * characters takes as long as some 25 plain requests (measured: ~160 ms against ~6 ms).
 */
function cost(requests: Iterable<Planned>): number {
  let total = 0;
  for (const { value } of requests) total += 1 + (typeof value === 'string' ? value.length / 40_000 : 0);
  return total;
}

/** One request of the fuzz: the part made hostile, its value, and the request (built when sent). */
interface Planned {
  field: string;
  value: unknown;
  request: () => { url: string; body?: string; contentType?: string };
}

/**
 * Registers the fuzz of one file's share: `testFile` is the file's own `import.meta.url`
 * (…/openapi-fuzz-<n>.test.ts), whose number says which share.
 */
export function fuzzOpenApi(testFile: string): void {
  const file = Number(/openapi-fuzz-(\d+)\.test\.ts$/.exec(testFile)?.[1]);
  if (!(file >= 1 && file <= FUZZ_FILES)) throw new Error(`not a fuzz file: ${testFile}`);
  let t: TestApp;
  let mock: MockLlm;
  const logLines: string[] = [];
  const secrets = new Set<string>();
  const ids: Record<string, string> = {};
  let chat: Receiver;
  const chatUrl = () => `http://127.0.0.1:${chat.port}/chat`;
  let sessionToken = '';
  let agentKey = '';
  let hostToken = '';
  let ownerEmail = '';
  /** Every operation of the document and every WebSocket route, in their order. */
  let all: Op[] = [];
  /** This file's operations, in their order. */
  let share: Op[] = [];
  let requests = 0;

  /** Every credential an answer hands out, so the log check can look for it. */
  function collectSecrets(value: unknown, key = ''): void {
    if (typeof value === 'string') {
      // A masked value (`…`, bullets) in a credential's field is no credential: the log may hold it.
      const credential = value.length >= 12 && CREDENTIAL_FIELDS.has(key);
      if (credential || /^(pd[a-z]|csrf)_[A-Za-z0-9]{16}/.test(value)) secrets.add(value);
      return;
    }
    if (Array.isArray(value)) for (const v of value) collectSecrets(v, key);
    else if (value !== null && typeof value === 'object')
      for (const [k, v] of Object.entries(value)) collectSecrets(v, k);
  }

  function must(res: CallResult, status: number, what: string): Json {
    if (res.status !== status) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
    collectSecrets(res.body);
    return res.body;
  }

  async function signIn(): Promise<void> {
    const signedIn = await t.services.auth.login(
      { email: ownerEmail, password: PASSWORD },
      { userAgent: 'fuzz', ipAddress: '127.0.0.1' },
    );
    sessionToken = signedIn.session_token;
    secrets.add(signedIn.session_token);
    secrets.add(signedIn.csrf_token);
  }

  async function renewAgentKey(): Promise<void> {
    const res = await t.call('POST', `/v1/agents/${ids.proxyAgent}/rotate-key`, { token: sessionToken });
    agentKey = must(res, 200, 'rotate the proxy agent key').api_key;
  }

  beforeAll(async () => {
    t = await createTestApp({
      // Provider keys point at the mock upstream on loopback.
      env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1' },
      logDestination: { write: (line) => void logLines.push(line) },
    });
    mock = await startMockLlm({ record: false });
    // Where channels post (their test sends one at once): any request answered 200.
    chat = await startReceiver(() => ({ status: 200 }));
    secrets.add(PASSWORD);

    // The first user is the platform admin, owner of a personal team.
    ownerEmail = uniqueEmail('fuzz-owner');
    const owner = must(
      await t.call('POST', '/v1/auth/signup', {
        body: { email: ownerEmail, password: PASSWORD, name: 'Owner' },
      }),
      201,
      'signup',
    );
    expect(owner.user.is_admin).toBe(true);
    sessionToken = owner.session_token;
    ids.team = owner.team.id;
    ids.user = owner.user.id;
    const token = () => ({ token: sessionToken });

    const member = must(
      await t.call('POST', '/v1/auth/signup', {
        body: { email: uniqueEmail('fuzz-member'), password: PASSWORD, name: 'Member' },
      }),
      201,
      'member signup',
    );
    ids.member = member.user.id;
    must(
      await t.call('POST', `/v1/teams/${ids.team}/members`, {
        ...token(),
        body: { email: member.user.email, role: 'member' },
      }),
      201,
      'add member',
    );
    // A second session of the owner's, for the sessions routes.
    await signIn();
    const sessions = must(await t.call('GET', '/v1/me/sessions', token()), 200, 'sessions');
    ids.session = sessions.data.find((s: Json) => !s.current)?.id ?? sessions.data[0].id;
    const invitation = must(
      await t.call('POST', '/v1/invitations', { ...token(), body: { email: uniqueEmail('fuzz-invitee') } }),
      201,
      'invite',
    );
    ids.invitation = invitation.id;
    ids.invitationToken = invitation.token;
    // Another one for accept, so the first stays pending for revoke and resend.
    ids.acceptToken = must(
      await t.call('POST', '/v1/invitations', { ...token(), body: { email: uniqueEmail('fuzz-accept') } }),
      201,
      'invite',
    ).token;
    // A team of the owner's for DELETE /v1/teams/{id}; the personal team stays for everything else.
    ids.victimTeam = must(
      await t.call('POST', '/v1/teams', { ...token(), body: { name: 'victim' } }),
      201,
      'team',
    ).id;
    ids.apiKey = must(
      await t.call('POST', '/v1/api-keys', { ...token(), body: { name: 'fuzz key', scopes: ['admin'] } }),
      201,
      'api key',
    ).id;

    const policy = await createPolicy(t, sessionToken, { name: 'fuzz-policy' });
    ids.policy = policy.id;
    ids.policyName = policy.name;
    const keys = {
      openai: await createProviderKey(t, sessionToken, {
        provider: 'openai',
        api_key: 'sk-fuzz-openai-secret-0001',
        base_url: mock.url,
      }),
      anthropic: await createProviderKey(t, sessionToken, {
        provider: 'anthropic',
        api_key: 'sk-fuzz-anthropic-secret-0002',
        base_url: mock.url,
      }),
    };
    secrets.add('sk-fuzz-openai-secret-0001');
    secrets.add('sk-fuzz-anthropic-secret-0002');
    const target = await createProviderKey(t, sessionToken, {
      name: 'fuzz-pkey',
      provider: 'openai',
      api_key: 'sk-fuzz-target-secret-0003',
      base_url: mock.url,
    });
    secrets.add('sk-fuzz-target-secret-0003');
    ids.providerKey = target.id;
    ids.providerKeyName = target.name;
    const bindings = { provider_keys: { openai: keys.openai.id, anthropic: keys.anthropic.id } };

    // The proxy's agent: its own policy (not one the fuzz rewrites), with a tool that needs approval.
    const proxyPolicy = await createPolicy(t, sessionToken, { require_approval: ['deploy'] });
    const proxyAgent = await createAgent(t, sessionToken, { ...bindings, policy_id: proxyPolicy.id });
    ids.proxyAgent = proxyAgent.id;
    agentKey = proxyAgent.api_key;
    secrets.add(agentKey);
    const agent = await createAgent(t, sessionToken, {
      ...bindings,
      name: 'fuzz-agent',
      policy_id: ids.policy,
    });
    ids.agent = agent.id;
    ids.agentName = agent.name;
    secrets.add(agent.api_key);

    // A run with a step, and an approval request.
    const call = await t.call('POST', '/v1/chat/completions', {
      token: agentKey,
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 16 },
    });
    must(call, 200, 'proxy call');
    ids.run = String(call.headers['x-paddock-run-id']);
    // A stored Responses API answer (from the Anthropic key, by translation).
    const stored = await t.call('POST', '/v1/responses', {
      token: agentKey,
      body: { model: 'claude-haiku-4-5', input: 'hello', max_output_tokens: 16 },
    });
    ids.response = must(stored, 200, 'stored response').id;
    const awaiting = await t.call('POST', '/v1/chat/completions', {
      token: agentKey,
      body: {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'deploy it' }],
        tools: [{ type: 'function', function: { name: 'deploy', parameters: { type: 'object' } } }],
      },
    });
    ids.approval = must(awaiting, 202, 'approval request').approval_requests[0].id;

    // A running capsule with a background process, and a snapshot of it.
    const capsule = must(await t.call('POST', '/v1/capsules', { ...token(), body: {} }), 202, 'capsule');
    ids.capsule = capsule.id;
    await waitForCapsule(t, sessionToken, capsule.id, 'running');
    must(
      await t.call('POST', `/v1/capsules/${capsule.id}/exec`, {
        ...token(),
        body: { cmd: 'sleep 600', background: true, tag: 'fuzz-bg' },
      }),
      202,
      'background process',
    );
    ids.selector = 'fuzz-bg';
    const snapshot = await t.call('POST', '/v1/snapshots', {
      ...token(),
      body: { sandbox_id: capsule.id, name: 'fuzz-snap' },
    });
    expect([200, 201, 202], JSON.stringify(snapshot.body)).toContain(snapshot.status);
    ids.snapshot = 'fuzz-snap';

    // A secret, and a file that came in through a prepared upload (PUT with its token, then complete).
    ids.secret = must(
      await t.call('POST', '/v1/secrets', {
        ...token(),
        body: { name: 'FUZZ_SECRET', value: 'fuzz-value-1234' },
      }),
      201,
      'secret',
    ).id;
    // Its value comes back from POST /v1/secrets/{id}/reveal: the log must not hold it.
    secrets.add('fuzz-value-1234');
    ids.skill = must(
      await t.call('POST', '/v1/skills', {
        ...token(),
        body: { name: 'fuzz-skill', description: 'fuzz', content: 'fuzz content' },
      }),
      201,
      'skill',
    ).id;
    const prepared = must(
      await t.call('POST', '/v1/files/uploads', { ...token(), body: { filename: 'fuzz.txt' } }),
      201,
      'prepared upload',
    );
    const put = await t.app.inject({
      method: 'PUT',
      url: prepared.upload_url.slice(prepared.upload_url.indexOf('/v1/')),
      payload: 'fuzz bytes',
    });
    expect(put.statusCode, put.body).toBe(200);
    ids.file = must(
      await t.call('POST', `/v1/files/uploads/${prepared.upload_id}/complete`, token()),
      201,
      'completed upload',
    ).id;

    // A task (the mock answers its first call with text, so it completes while the fuzzer works).
    ids.task = must(
      await t.call('POST', '/v1/tasks', {
        ...token(),
        body: { agent_id: ids.agent, model: 'gpt-4o-mini', prompt: 'fuzz' },
      }),
      202,
      'task',
    ).id;

    // A workspace (a session task opens it) and a memory of the agent.
    ids.workspace = must(
      await t.call('POST', '/v1/tasks', {
        ...token(),
        body: { agent_id: ids.agent, model: 'gpt-4o-mini', prompt: 'fuzz', mode: 'session' },
      }),
      202,
      'session task',
    ).workspace_id;
    ids.webhook = must(
      await t.call('POST', '/v1/webhooks', {
        ...token(),
        body: { url: mock.url, event_types: ['agent.*'] },
      }),
      201,
      'webhook',
    ).id;
    ids.queueJob = must(
      await t.call('POST', '/v1/queues/fuzz-queue/jobs', { ...token(), body: { type: 'fuzz' } }),
      201,
      'queue job',
    ).id;
    ids.playbook = must(
      await t.call('POST', '/v1/playbooks', {
        ...token(),
        body: { agent_id: ids.agent, name: 'fuzz-playbook', prompt: 'fuzz', trigger: 'manual' },
      }),
      201,
      'playbook',
    ).id;
    ids.channel = must(
      await t.call('POST', '/v1/channels', {
        ...token(),
        body: {
          name: 'fuzz-channel',
          provider: 'slack',
          config: { webhook_url: chatUrl() },
          events: ['agent.*'],
        },
      }),
      201,
      'channel',
    ).id;
    ids.alertRule = must(
      await t.call('POST', '/v1/alert-rules', {
        ...token(),
        body: {
          name: 'fuzz-alert',
          condition_type: 'cost_threshold',
          condition_config: { threshold_usd: 1 },
        },
      }),
      201,
      'alert rule',
    ).id;
    // A delivery to redeliver: the test event's (the mock answers whatever it answers; it ended either way).
    ids.delivery = must(
      await t.call('POST', `/v1/webhooks/${ids.webhook}/test`, token()),
      200,
      'webhook test',
    ).delivery_id;
    ids.memory = must(
      await t.call('POST', '/v1/memories', {
        ...token(),
        body: { agent_id: ids.agent, content: 'fuzz memory' },
      }),
      201,
      'memory',
    ).id;
    // A work item with a comment and a link to the task.
    ids.workItem = must(
      await t.call('POST', '/v1/work-items', { ...token(), body: { title: 'fuzz item' } }),
      201,
      'work item',
    ).id;
    ids.workItemComment = must(
      await t.call('POST', `/v1/work-items/${ids.workItem}/comments`, { ...token(), body: { body: 'fuzz' } }),
      201,
      'work item comment',
    ).id;
    ids.workItemLink = must(
      await t.call('POST', `/v1/work-items/${ids.workItem}/links`, {
        ...token(),
        body: { type: 'task', id: ids.task },
      }),
      201,
      'work item link',
    ).id;

    // An environment (its build runs in the background while the fuzzer works).
    ids.environment = must(
      await t.call('POST', '/v1/environments', { ...token(), body: { name: 'fuzz-env' } }),
      201,
      'environment',
    ).id;

    // A registered remote host (unreachable, which is fine) with a tag.
    const host = must(
      await t.call('POST', '/v1/hosts', { ...token(), body: { type: 'regular', tags: ['fuzz-tag'] } }),
      201,
      'host',
    );
    ids.host = host.host.id;
    ids.hostTag = 'fuzz-tag';
    const registered = must(
      await t.call('POST', '/v1/hosts/register', {
        body: { token: host.registration_token, address: '127.0.0.1:1' },
      }),
      201,
      'host registration',
    );
    hostToken = registered.token;
    ids.refreshToken = registered.refresh_token;
    // A pending host whose registration token is the register route's to use.
    ids.registrationToken = must(
      await t.call('POST', '/v1/hosts', { ...token(), body: { type: 'regular' } }),
      201,
      'host',
    ).registration_token;

    const doc = (await t.call('GET', '/v1/openapi.json')).body as {
      paths: Record<string, Record<string, Operation>>;
    };
    // The WebSocket routes are in the document too, marked x-websocket.
    all = Object.entries(doc.paths)
      .flatMap(([path, item]) =>
        Object.entries(item).map(([method, op]) => ({
          method: method.toUpperCase(),
          path,
          op,
          ...(op['x-websocket'] ? { webSocket: true } : {}),
        })),
      )
      .sort((a, b) => order(a) - order(b));
    const owners = shareOf(all, (o) => cost(requestsOf(o)));
    share = all.filter((o) => owners.get(nameOf(o)) === file);
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await mock?.close();
    await chat?.close();
  });

  /** A real value for a path parameter of this path, so that the other parts of a request can be valid. */
  function pathValue(path: string, name: string): string {
    const resource = path.split('/')[2];
    if (name === 'user_id') return ids.member!;
    if (name === 'n') return '1';
    if (name === 'selector') return ids.selector!;
    if (name === 'file_id') return ids.file!;
    if (name === 'delivery_id') return ids.delivery!;
    if (name === 'comment_id') return ids.workItemComment!;
    if (name === 'link_id') return ids.workItemLink!;
    if (name === 'tag') return ids.hostTag!;
    if (name === '*') return 'fuzz.txt';
    // Platform admins' routes name the team or user they act on.
    if (path.startsWith('/v1/admin/teams/')) return ids.team!;
    if (path.startsWith('/v1/admin/users/')) return ids.member!;
    if (name === 'name') {
      if (resource === 'policies') return ids.policyName!;
      if (resource === 'agents') return ids.agentName!;
      if (resource === 'provider-keys') return ids.providerKeyName!;
      if (resource === 'snapshots') return ids.snapshot!;
      if (resource === 'queues') return 'fuzz-queue';
    }
    const byResource: Record<string, string | undefined> = {
      me: ids.session,
      teams: ids.team,
      invitations: ids.invitation,
      'api-keys': ids.apiKey,
      policies: ids.policy,
      agents: ids.agent,
      'provider-keys': ids.providerKey,
      runs: ids.run,
      approvals: ids.approval,
      capsules: ids.capsule,
      hosts: ids.host,
      secrets: ids.secret,
      skills: ids.skill,
      workspaces: ids.workspace,
      memories: ids.memory,
      webhooks: ids.webhook,
      queues: ids.queueJob,
      playbooks: ids.playbook,
      channels: ids.channel,
      // Made only when an in_app channel takes an event; a well-formed unknown id is answered 404.
      notifications: `ntf_${'0'.repeat(26)}`,
      'alert-rules': ids.alertRule,
      'work-items': ids.workItem,
      // No run is made (it would start a task); a well-formed unknown id is answered 404.
      'playbook-runs': `pbr_${'0'.repeat(26)}`,
      hooks: `pbh_${'x'.repeat(43)}`,
      files: ids.file,
      environments: ids.environment,
      tasks: ids.task,
      responses: ids.response,
      models: 'gpt-4o-mini',
      // Billing is off in this app: its routes answer 404 billing_disabled whatever the pack.
      billing: 'fuzz-pack',
    };
    const value = byResource[resource ?? ''];
    if (value === undefined) throw new Error(`no value for {${name}} of ${path}: add one`);
    return value;
  }

  function fillPath(o: Op, override?: { name: string; value: string }): string {
    return o.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      if (override?.name === name) return override.value;
      if (o.method === 'DELETE' && o.path === '/v1/teams/{id}') return ids.victimTeam!;
      return encodeURIComponent(pathValue(o.path, name));
    });
  }

  /** A valid value for a schema (as far as one can be guessed), so one field at a time can be hostile. */
  function example(schema: Schema | undefined, name = ''): unknown {
    if (!schema) return 'fuzz';
    if (schema.const !== undefined) return schema.const;
    if (schema.enum) return schema.enum[0];
    if (schema.default !== undefined) return schema.default;
    if (schema.anyOf) return example(schema.anyOf.find((s) => s.type !== 'null') ?? schema.anyOf[0], name);
    const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
    switch (type) {
      case 'string':
        if (schema.format === 'email') return uniqueEmail('fuzz');
        if (schema.format === 'date-time') return new Date(Date.now() + 86_400_000).toISOString();
        if (schema.format === 'uri') return mock.url;
        if (schema.pattern === '^/') return '/tmp/fuzz.txt';
        if (schema.pattern?.startsWith('^[a-z0-9]')) return 'fuzz-name';
        if (/address/.test(name)) return '127.0.0.1:1';
        return `fuzz-${name || 'value'}`.padEnd(schema.minLength ?? 0, 'x');
      case 'integer':
      case 'number':
        return Math.max(schema.minimum ?? 1, Math.min(1, schema.maximum ?? 1));
      case 'boolean':
        return false;
      case 'array':
        return Array.from({ length: schema.minItems ?? 0 }, () => example(schema.items, name));
      case 'object': {
        const out: Record<string, unknown> = {};
        for (const key of schema.required ?? []) out[key] = example(schema.properties?.[key], key);
        return out;
      }
      default:
        return 'fuzz';
    }
  }

  /** Bodies the generic example cannot guess: references to real resources, a known password. */
  function baseBody(method: string, path: string, schema: Schema | undefined): Record<string, unknown> {
    const body = (example(schema) ?? {}) as Record<string, unknown>;
    const known: Record<string, Record<string, unknown>> = {
      'POST /v1/auth/signup': { password: PASSWORD },
      'POST /v1/auth/login': { email: ownerEmail, password: PASSWORD },
      'POST /v1/auth/switch-team': { team_id: ids.team },
      'POST /v1/teams/{id}/transfer-ownership': { user_id: ids.member },
      'POST /v1/invitations/accept': { token: ids.acceptToken, name: 'Invitee', password: PASSWORD },
      'POST /v1/agents': { policy_id: ids.policy },
      'POST /v1/tasks': { agent_id: ids.agent, model: 'gpt-4o-mini' },
      'POST /v1/provider-keys': { provider: 'openai', base_url: mock.url },
      'POST /v1/webhooks': { url: mock.url, event_types: ['agent.*'] },
      'PATCH /v1/webhooks/{id}': { url: mock.url, event_types: ['agent.*'] },
      'POST /v1/channels': { provider: 'slack', config: { webhook_url: chatUrl() }, events: ['agent.*'] },
      'POST /v1/channels/test': { provider: 'slack', config: { webhook_url: chatUrl() } },
      'PUT /v1/channels/{id}/config': { config: { webhook_url: chatUrl() } },
      'PATCH /v1/channels/{id}': { events: ['agent.*'] },
      'POST /v1/work-items/{id}/links': { type: 'task', id: ids.task },
      'POST /v1/alert-rules': { condition_type: 'cost_threshold', condition_config: { threshold_usd: 1 } },
      'POST /v1/snapshots': { sandbox_id: ids.capsule },
      'POST /v1/capsules/{id}/exec': { cmd: 'true' },
      'POST /v1/chat/completions': {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hello' }],
        max_tokens: 16,
      },
      'POST /v1/messages': {
        model: 'claude-3-5-haiku-latest',
        messages: [{ role: 'user', content: 'hello' }],
        max_tokens: 16,
      },
      'POST /v1/embeddings': { model: 'text-embedding-3-small', input: 'hello' },
      'POST /v1/completions': { model: 'gpt-3.5-turbo-instruct', prompt: 'hello', max_tokens: 16 },
      'POST /v1/messages/count_tokens': {
        model: 'claude-3-5-haiku-latest',
        messages: [{ role: 'user', content: 'hello' }],
      },
      'POST /v1/hosts/register': { token: ids.registrationToken, address: '127.0.0.1:1' },
      'POST /v1/hosts/auth/refresh': { refresh_token: ids.refreshToken },
      'POST /v1/capsules/{id}/files/list': { path: '/tmp' },
      'POST /v1/capsules/{id}/files/mkdir': { path: '/tmp/fuzz-dir' },
    };
    return { ...body, ...known[`${method} ${path}`] };
  }

  /** Capsules the create fuzz started would compete for the CPU with the rest of the run. */
  async function removeCapsulesButOurs(): Promise<void> {
    await t.services.capsules.settled();
    const list = await t.call('GET', '/v1/capsules', { token: sessionToken, query: { limit: '200' } });
    for (const c of list.body.data ?? []) {
      if (c.id !== ids.capsule) await t.call('DELETE', `/v1/capsules/${c.id}`, { token: sessionToken });
    }
  }

  const failures: Failure[] = [];
  const reached = new Set<string>();
  const agentOperations = new Set(['POST /v1/chat/completions', 'POST /v1/messages']);

  async function send(
    o: Op,
    request: { url: string; body?: string; contentType?: string },
    field: string,
    value: unknown,
  ): Promise<void> {
    const public_ = (o.op.security ?? []).length === 0;
    const attempt = () => {
      const asAgent = agentOperations.has(`${o.method} ${o.path}`);
      const headers: Record<string, string> = {};
      if (!public_) headers.authorization = `Bearer ${asAgent ? agentKey : sessionToken}`;
      if (o.path === '/v1/hosts/{id}/heartbeat') headers['x-host-token'] = hostToken;
      if (request.body !== undefined) headers['content-type'] = request.contentType ?? 'application/json';
      requests++;
      return t.app.inject({
        method: o.method as 'GET',
        url: request.url,
        headers,
        ...(request.body !== undefined ? { payload: request.body } : {}),
      });
    };
    let res = await attempt();
    // Routes only agents may call say so: send them (and their later requests) with the agent key.
    if (res.statusCode === 403 && res.body.includes('"agent_key_required"')) {
      agentOperations.add(`${o.method} ${o.path}`);
      res = await attempt();
    }
    const asAgent = agentOperations.has(`${o.method} ${o.path}`);
    // Logout, a password change, a rotated key: sign in again and repeat, so the run goes on.
    if (res.statusCode === 401 && !public_) {
      const me = await t.app.inject({
        method: 'GET',
        url: '/v1/me',
        headers: { authorization: `Bearer ${asAgent ? agentKey : sessionToken}` },
      });
      if (me.statusCode === 401) {
        if (asAgent) await renewAgentKey();
        else await signIn();
        res = await attempt();
      }
    }
    if (res.headers['content-type']?.toString().includes('json') && res.statusCode < 300) {
      try {
        const answer = res.json();
        collectSecrets(answer);
        // switch-team rotates the session: carry on with the new token.
        if (o.path === '/v1/auth/switch-team' && typeof answer.session_token === 'string')
          sessionToken = answer.session_token;
      } catch {
        // a stream or bytes: nothing to collect
      }
    }
    reached.add(`${o.method} ${o.path}`);
    if (res.statusCode >= 500) {
      failures.push({
        method: o.method,
        path: o.path,
        field,
        value: shown(value),
        status: res.statusCode,
        body: res.body.slice(0, 200),
      });
    }
  }

  /**
   * The requests fuzzing `o` sends, each made when it is sent: as it should be, then each path
   * parameter, each query parameter and each body field hostile, then whole bodies and content
   * types (a WebSocket route: a plain GET, then each path parameter hostile).
   */
  function* requestsOf(o: Op): Generator<Planned> {
    if (o.webSocket) {
      yield { field: '(plain GET)', value: '', request: () => ({ url: fillPath(o) }) };
      for (const name of ['id', 'selector', 'file_id'].filter((n) => o.path.includes(`{${n}}`))) {
        for (const value of HOSTILE_PATH_VALUES) {
          yield { field: name, value, request: () => ({ url: fillPath(o, { name, value }) }) };
        }
      }
      return;
    }
    const params = o.op.parameters ?? [];
    const content = o.op.requestBody?.content ?? {};
    const jsonSchema = content['application/json']?.schema;
    const multipart = content['multipart/form-data'] !== undefined;
    const knownQuery: Record<string, string | undefined> = { token: ids.invitationToken };
    const requiredQuery = params
      .filter((p) => p.in === 'query' && p.required)
      .map((p) => `${p.name}=${encodeURIComponent(knownQuery[p.name] ?? String(example(p.schema, p.name)))}`);
    const query = (extra?: string) => {
      const parts = [...requiredQuery.filter((q) => !extra || !q.startsWith(`${extra.split('=')[0]}=`))];
      if (extra) parts.push(extra);
      return parts.length > 0 ? `?${parts.join('&')}` : '';
    };
    const base = () => (jsonSchema ? jsonText(baseBody(o.method, o.path, jsonSchema)) : undefined);

    yield { field: '(valid)', value: '', request: () => ({ url: fillPath(o) + query(), body: base() }) };
    for (const p of params.filter((p) => p.in === 'path')) {
      for (const value of HOSTILE_PATH_VALUES) {
        yield {
          field: p.name,
          value,
          request: () => ({ url: fillPath(o, { name: p.name, value }) + query(), body: base() }),
        };
      }
    }
    for (const p of params.filter((p) => p.in === 'query')) {
      for (const value of HOSTILE_QUERY_VALUES) {
        yield {
          field: `?${p.name}`,
          value,
          request: () => ({ url: fillPath(o) + query(`${p.name}=${value}`), body: base() }),
        };
      }
      // Given twice.
      yield {
        field: `?${p.name}`,
        value: '[1,2]',
        request: () => ({ url: `${fillPath(o)}${query(`${p.name}=1&${p.name}=2`)}`, body: base() }),
      };
    }
    for (const extra of ['__proto__=1', 'constructor[prototype]=1', '%00=1', '%ED%A0%80=1']) {
      yield {
        field: '?(unknown)',
        value: extra,
        request: () => ({ url: fillPath(o) + query(extra), body: base() }),
      };
    }
    if (jsonSchema) {
      for (const field of fields(jsonSchema)) {
        for (const value of hostileValuesFor(field.schema, field.path.length > 1)) {
          yield {
            field: field.path.join('.'),
            value,
            request: () => ({
              url: fillPath(o) + query(),
              body: jsonText(withField(baseBody(o.method, o.path, jsonSchema), field.path, value)),
            }),
          };
        }
      }
      for (const text of HOSTILE_BODIES) {
        yield {
          field: '(body)',
          value: new Raw(text),
          request: () => ({ url: fillPath(o) + query(), body: text }),
        };
      }
      for (const type of HOSTILE_CONTENT_TYPES) {
        yield {
          field: '(content-type)',
          value: type,
          request: () => ({ url: fillPath(o) + query(), body: base(), contentType: type }),
        };
      }
    } else if (!multipart && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(o.method)) {
      // Routes without a body, sent one anyway.
      for (const text of ['{}', '{"a": "\\u0000"}', `${'['.repeat(5000)}${']'.repeat(5000)}`, 'not json']) {
        yield {
          field: '(body)',
          value: new Raw(text),
          request: () => ({ url: fillPath(o) + query(), body: text }),
        };
      }
    }
    if (multipart) {
      for (const [label, contentType, body] of hostileMultipart()) {
        yield {
          field: '(multipart)',
          value: label,
          request: () => ({ url: fillPath(o) + query(), body, contentType }),
        };
      }
    }
  }

  async function fuzzOperation(o: Op): Promise<void> {
    for (const planned of requestsOf(o)) await send(o, planned.request(), planned.field, planned.value);
  }
  const failureLines = (from = 0) =>
    failures.slice(from).map((f) => `${f.status} ${f.method} ${f.path} ${f.field}=${f.value}: ${f.body}`);

  describe(`the OpenAPI document, fuzzed (file ${file} of ${FUZZ_FILES})`, () => {
    for (let part = 0; part < PARTS; part++) {
      it(`answers every hostile request to each operation of this file's share with something other than a 5xx (part ${part + 1} of ${PARTS})`, async () => {
        expect(all.length).toBeGreaterThan(100);
        const size = Math.ceil(share.length / PARTS);
        const before = failures.length;
        for (const o of share.slice(part * size, (part + 1) * size)) {
          await fuzzOperation(o);
          if (o.method === 'POST' && o.path === '/v1/capsules') await removeCapsulesButOurs();
        }
        expect(failureLines(before)).toEqual([]);
      }, 300_000);
    }

    it("reached every route of this file's share, and every route served is in one file's share", async () => {
      // Every operation of the document and every WebSocket route is some file's (shareOf gives
      // each one a file), and each file of 1…FUZZ_FILES is there to fuzz its share.
      const files = readdirSync(path.dirname(fileURLToPath(testFile)))
        .filter((f) => /^openapi-fuzz-\d+\.test\.ts$/.test(f))
        .sort();
      expect(files).toEqual(Array.from({ length: FUZZ_FILES }, (_, i) => `openapi-fuzz-${i + 1}.test.ts`));
      const owners = shareOf(all, (o) => cost(requestsOf(o)));
      expect(new Set(owners.values())).toEqual(new Set(Array.from({ length: FUZZ_FILES }, (_, i) => i + 1)));
      // No route left out: each one served (WebSockets too) is in the document, so in a share.
      const missed = servedRoutes(t.app)
        .filter((r) => r.path.startsWith('/v1/') && r.method !== 'HEAD' && r.path !== '/v1/openapi.json')
        .map((r) => `${r.method} ${openApiPath(r.path)}`)
        .filter((name) => owners.get(name) === undefined);
      expect(missed).toEqual([]);
      // And this file sent requests to each route of its share.
      expect(share.map(nameOf).filter((name) => !reached.has(name))).toEqual([]);
      console.info(`fuzz file ${file}: ${requests} requests over ${reached.size} routes of ${owners.size}`);
      expect(failureLines()).toEqual([]);
    });

    it('is still ready afterwards', async () => {
      const ready = await t.call('GET', '/ready');
      expect(ready.status).toBe(200);
      expect(ready.body.ready).toBe(true);
    });

    it('logged none of the secrets and hashes it made', async () => {
      await t.services.runs.flush();
      // What the database holds: password hashes, token and key hashes, sealed provider keys.
      const stored = (await t.database.db.execute(
        sql`select password_hash as v from users
            union all select token_hash from sessions
            union all select token_hash from invitations
            union all select key_hash from api_keys
            union all select previous_key_hash from api_keys where previous_key_hash is not null
            union all select key_hash from agents
            union all select sealed_key from provider_keys where sealed_key is not null
            union all select hash from host_tokens
            union all select secret_sealed from webhooks
            union all select config_sealed from channels`,
      )) as unknown as { rows: Array<{ v: string }> };
      for (const row of stored.rows) secrets.add(row.v);
      expect(stored.rows.length).toBeGreaterThan(10);
      expect(logLines.length).toBeGreaterThan(1000);
      const log = logLines.join('');
      const leaked = [...secrets].filter((s) => log.includes(s));
      expect(leaked).toEqual([]);
      // Hashes of rows that were never written (a refused insert's parameters) have no stored copy: by their form.
      expect(log).not.toMatch(/scrypt\$\d+\$/);
      expect(log).not.toMatch(/\b[0-9a-f]{64}\b/);
      expect(log).not.toMatch(/"params"|\bparams: /);
    });
  });
}

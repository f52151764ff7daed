import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// An agent's MCP servers end to end: a stdio server started inside the task's
// capsule (a small JSON-RPC server written here, run by the capsule's
// python3), an HTTP server reached through the egress allow-list and the
// outbound guard, their tools offered and governed like any tool.

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const SECRET = 'tok-mcp-4c1d9e8f7a6b';

/** A stdio MCP server: newline-delimited JSON-RPC, answering initialize, tools/list and tools/call. */
const SERVER_PY = String.raw`
import json, os, sys
TOOLS = [
  {"name": "where", "description": "Says what the server sees", "inputSchema": {"type": "object", "properties": {"file": {"type": "string"}}, "required": ["file"]}},
  {"name": "broken", "description": "Always fails", "inputSchema": {"type": "object", "properties": {}}},
  {"name": "picture", "inputSchema": {"type": "object"}},
  {"name": "quit", "description": "Ends the server", "inputSchema": {"type": "object"}},
  {"name": "not a valid name!", "description": "cannot be offered", "inputSchema": {"type": "object"}},
]
print("a line on stdout that is not JSON-RPC", flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method = msg["method"]
    if method == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "probe", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        name = msg["params"]["name"]
        args = msg["params"].get("arguments") or {}
        if name == "where" and not isinstance(args.get("file"), str):
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32602, "message": "file must be a string"}}) + "\n")
            sys.stdout.flush()
            continue
        if name == "where":
            seen = open(args["file"]).read().strip()
            text = "seen=%s cwd=%s token=%s" % (seen, os.getcwd(), os.environ.get("DEPLOY_TOKEN", ""))
            result = {"content": [{"type": "text", "text": text}]}
        elif name == "broken":
            result = {"content": [{"type": "text", "text": "it broke"}], "isError": True}
        elif name == "picture":
            result = {"content": [{"type": "text", "text": "here:"}, {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"}]}
        else:
            sys.stderr.write("asked to quit\n")
            sys.exit(5)
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no such method"}}) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
`;

/** Setup commands that write the server into /workspace, and a file only the capsule has. */
const SETUP = [`cat > server.py <<'EOF'\n${SERVER_PY}\nEOF`, 'echo "capsule-only-8d3f" > only-here.txt'];

const PROBE = { name: 'probe', transport: 'stdio', command: 'python3', args: ['server.py'] };

async function secret(agentId: string) {
  const res = await f.t.call('POST', '/v1/secrets', {
    token: f.user.token,
    body: { name: 'DEPLOY_TOKEN', value: SECRET, agent_ids: [agentId] },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

/** The tool messages of the mock's `n`th request, by the name of the call they answer. */
function toolMessages(n: number): string[] {
  const body = f.mock.requests[n]!.body as Json;
  return body.messages.filter((m: Json) => m.role === 'tool').map((m: Json) => m.content as string);
}

describe('a stdio MCP server', () => {
  it('runs inside the task’s capsule; its tools are offered as mcp__<server>__<tool> and their results reach the model', async () => {
    const agent = await f.agent({ agent: { setup_commands: SETUP, mcp_servers: [PROBE] } });
    await secret(agent.id);
    f.mock.reset();
    f.script([
      { tool: 'mcp__probe__where', args: { file: 'only-here.txt' } },
      { tool: 'mcp__probe__broken', args: {} },
      { tool: 'mcp__probe__picture', args: {} },
      { tool: 'mcp__probe__where', args: { file: 42 } },
      { tool: 'submit_result', args: { result: 'done' } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'use the server' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'done', error: null });

    // Offered beside the built-ins, with the server's description and schema; a name that
    // cannot be a tool name is left out.
    const offered = (f.mock.requests[0]!.body as Json).tools.map((t: Json) => t.function);
    const names = offered.map((t: Json) => t.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'bash',
        'submit_result',
        'mcp__probe__where',
        'mcp__probe__broken',
        'mcp__probe__picture',
        'mcp__probe__quit',
      ]),
    );
    expect(names.filter((n: string) => n.startsWith('mcp__'))).toHaveLength(4);
    expect(offered.find((t: Json) => t.name === 'mcp__probe__where')).toEqual({
      name: 'mcp__probe__where',
      description: 'Says what the server sees',
      parameters: { type: 'object', properties: { file: { type: 'string' } }, required: ['file'] },
    });

    // The server read a file only the capsule has, from /workspace, with the task's secret in its
    // environment (taken out before the model sees it); the host has no such file.
    const [where] = toolMessages(1);
    expect(where).toBe('seen=capsule-only-8d3f cwd=/workspace token=[secret:DEPLOY_TOKEN]');
    expect(existsSync('/workspace/only-here.txt')).toBe(false);
    // isError is a failed call; other content is described; the server's own error answer too.
    expect(toolMessages(2)[1]).toBe('it broke');
    expect(toolMessages(3)[2]).toBe('here:\n[image content (image/png, 5 bytes), not shown]');
    expect(toolMessages(4)[3]).toBe(
      'the MCP server probe answered an error: MCP error -32602: file must be a string',
    );

    const events = await f.events(task.id);
    const results = events.filter((e) => e.type === 'tool_result').map((e) => e.payload);
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      ['mcp__probe__where', true],
      ['mcp__probe__broken', false],
      ['mcp__probe__picture', true],
      ['mcp__probe__where', false],
      ['submit_result', true],
    ]);
    expect(JSON.stringify(events)).not.toContain(SECRET);
    expect(JSON.stringify(f.mock.requests.map((r) => r.body))).not.toContain(SECRET);
  });

  it('tells the model when its server is gone mid-task, and the task goes on', async () => {
    const agent = await f.agent({ agent: { setup_commands: SETUP, mcp_servers: [PROBE] } });
    f.mock.reset();
    f.script([
      { tool: 'mcp__probe__quit', args: {} },
      { tool: 'mcp__probe__where', args: { file: 'only-here.txt' } },
      { tool: 'submit_result', args: { result: 'went on' } },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'quit it' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'went on' });
    const gone =
      'MCP server probe is no longer running: its process exited with code 5: stderr: asked to quit';
    expect(toolMessages(1)[0]).toBe(gone);
    expect(toolMessages(2)[1]).toBe(gone);
  });

  it('ends the task with mcp_server_failed naming a server that does not start, with its stderr', async () => {
    const agent = await f.agent({
      agent: {
        setup_commands: SETUP,
        mcp_servers: [
          PROBE,
          {
            name: 'crashy',
            transport: 'stdio',
            command: 'python3',
            args: ['-c', 'import sys; sys.stderr.write("no config file here\\n"); sys.exit(2)'],
          },
        ],
      },
    });
    f.mock.reset();
    f.script([{ text: 'never asked' }]);
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'start' })).id);
    expect(task.status).toBe('failed');
    expect(task.error).toEqual({
      code: 'mcp_server_failed',
      message: 'MCP server crashy did not start: its process exited with code 2: stderr: no config file here',
    });
    // No model call was made for a task whose tools could not all be offered.
    expect(f.mock.requests).toHaveLength(0);
  });

  it('ends the task with mcp_server_failed naming a server whose command does not exist', async () => {
    const agent = await f.agent({
      agent: { mcp_servers: [{ name: 'ghost', transport: 'stdio', command: 'no-such-mcp-server' }] },
    });
    f.mock.reset();
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'start' })).id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'mcp_server_failed' } });
    expect(task.error.message).toMatch(/^MCP server ghost did not start: .*no-such-mcp-server/);
    expect(f.mock.requests).toHaveLength(0);
  });

  it('is governed by the policy’s tool rules: blocked_tools mcp__* refuses the call that offers them', async () => {
    const agent = await f.agent({
      policy: { blocked_tools: ['mcp__*'] },
      agent: { setup_commands: SETUP, mcp_servers: [PROBE] },
    });
    f.mock.reset();
    f.script([{ tool: 'mcp__probe__where', args: { file: 'only-here.txt' } }]);
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'try' })).id);
    expect(task.status).toBe('failed');
    expect(task.error.code).toBe('tool_blocked');
    expect(task.error.message).toContain('mcp__probe__where');
    // The provider never saw the request.
    expect(f.mock.requests).toHaveLength(0);
  });

  it('is governed by the policy’s approvals: require_approval on a server’s tools makes the task wait for a person', async () => {
    const agent = await f.agent({
      policy: { require_approval: ['mcp__probe__where'] },
      agent: { setup_commands: SETUP, mcp_servers: [PROBE] },
    });
    f.mock.reset();
    f.script([{ tool: 'mcp__probe__where', args: { file: 'only-here.txt' } }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'needs a human' });
    const asking = await f.untilEvent(
      submitted.id,
      (e) => e.type === 'status' && e.payload.status === 'awaiting_approval',
    );
    expect(asking.payload.tools).toEqual(['mcp__probe__where']);
    const no = await f.t.call('POST', `/v1/approvals/${asking.payload.approval_ids[0]}/reject`, {
      token: f.user.token,
      body: { reason: 'not today' },
    });
    expect(no.status, JSON.stringify(no.body)).toBe(200);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'approval_rejected' } });
    expect(f.mock.requests).toHaveLength(0);
  });
});

describe('an HTTP MCP server', () => {
  let server: http.Server;
  let port: number;
  const seenHeaders: http.IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    server = http.createServer(async (req, res) => {
      seenHeaders.push(req.headers);
      const mcp = new McpServer({ name: 'weather', version: '1' });
      mcp.registerTool(
        'forecast',
        { description: 'The forecast for a city', inputSchema: { city: z.string() } },
        async ({ city }) => ({ content: [{ type: 'text', text: `sunny in ${city}` }] }),
      );
      // Stateless: a server and transport for each request.
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      res.on('close', () => {
        void transport.close();
        void mcp.close();
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** A task whose model asks the server for Lyon's forecast, then submits; it must complete. */
  async function forecast(agentId: string): Promise<Json> {
    f.mock.reset();
    f.script([
      { tool: 'mcp__weather__forecast', args: { city: 'Lyon' } },
      { tool: 'submit_result', args: { result: 'ok' } },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: agentId, prompt: 'weather?' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'ok' });
    return task;
  }

  it('is reached through the egress allow-list and its tools are called like any tool', async () => {
    const agent = await f.agent({
      agent: {
        egress: ['127.0.0.1'],
        mcp_servers: [{ name: 'weather', transport: 'http', url: `http://127.0.0.1:${port}/mcp` }],
      },
    });
    const task = await forecast(agent.id);
    const offered = (f.mock.requests[0]!.body as Json).tools.map((t: Json) => t.function);
    expect(offered.find((t: Json) => t.name === 'mcp__weather__forecast')).toMatchObject({
      description: 'The forecast for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    });
    expect(toolMessages(1)[0]).toBe('sunny in Lyon');
  });

  it('sends the headers the agent sets, ${NAME} filled in from its secrets when the task runs and never stored', async () => {
    const weather = (headers: Record<string, string>) => ({
      name: 'weather',
      transport: 'http',
      url: `http://127.0.0.1:${port}/mcp`,
      headers,
    });
    const agent = await f.agent({
      agent: {
        egress: ['127.0.0.1'],
        mcp_servers: [
          weather({ Authorization: 'Bearer ${WEATHER_TOKEN}', 'X-Station': 'lyon-${WEATHER_TOKEN}-2' }),
        ],
      },
    });
    const made = await f.t.call('POST', '/v1/secrets', {
      token: f.user.token,
      body: { name: 'WEATHER_TOKEN', value: 'wt-8e1f-secret', agent_ids: [agent.id] },
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const stored = await f.t.call('GET', `/v1/agents/${agent.id}`, { token: f.user.token });
    expect(JSON.stringify(stored.body)).not.toContain('wt-8e1f-secret');
    expect(stored.body.mcp_servers[0].headers).toEqual({
      Authorization: 'Bearer ${WEATHER_TOKEN}',
      'X-Station': 'lyon-${WEATHER_TOKEN}-2',
    });

    const before = seenHeaders.length;
    const task = await forecast(agent.id);
    const sent = seenHeaders.slice(before);
    expect(sent.length).toBeGreaterThan(1);
    for (const h of sent) {
      expect(h.authorization).toBe('Bearer wt-8e1f-secret');
      expect(h['x-station']).toBe('lyon-wt-8e1f-secret-2');
    }
    // Never to the model, nor into the task's log.
    expect(JSON.stringify(f.mock.requests.map((r) => r.body))).not.toContain('wt-8e1f-secret');
    expect(JSON.stringify(await f.events(task.id))).not.toContain('wt-8e1f-secret');

    // A variable the task has no value for fails the server's start, naming it; nothing is sent.
    const unset = await f.agent({
      agent: { egress: ['127.0.0.1'], mcp_servers: [weather({ Authorization: 'Bearer ${NO_SUCH_TOKEN}' })] },
    });
    const quiet = seenHeaders.length;
    f.mock.reset();
    const failed = (await f.finished((await f.submit({ agent_id: unset.id, prompt: 'weather?' })).id)).task;
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'mcp_server_failed' } });
    expect(failed.error.message).toBe(
      'MCP server weather did not start: header Authorization names ${NO_SUCH_TOKEN}, which is no secret of the agent nor variable of its environment',
    );
    expect(seenHeaders.length).toBe(quiet);
  });

  it('refuses headers the MCP client sets itself, and names or values no header can carry', async () => {
    const refused = async (headers: Record<string, string>) => {
      const policy = await f.t.call('GET', '/v1/policies', { token: f.user.token });
      const res = await f.t.call('POST', '/v1/agents', {
        token: f.user.token,
        body: {
          name: `hdr-${Math.random().toString(36).slice(2, 8)}`,
          model: 'gpt-4o-mini',
          policy_id: policy.body.data[0].id,
          mcp_servers: [{ name: 'weather', transport: 'http', url: `http://127.0.0.1:${port}/mcp`, headers }],
        },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      return res.body.error;
    };
    expect(await refused({ host: 'evil.example' })).toMatchObject({
      code: 'invalid_mcp_server',
      message: 'mcp_servers[0].headers.host: the MCP client sets this header itself',
    });
    expect((await refused({ 'Mcp-Session-Id': 'x' })).code).toBe('invalid_mcp_server');
    expect((await refused({ 'Transfer-Encoding': 'chunked' })).code).toBe('invalid_mcp_server');
    expect((await refused({ 'X-Ok': 'a\r\nX-Injected: 1' })).code).toBe('validation_failed');
    expect((await refused({ 'Bad Name': 'x' })).code).toBe('validation_failed');
  });

  it('is not reached when its host is not on the egress allow-list', async () => {
    const before = seenHeaders.length;
    const agent = await f.agent({
      agent: { mcp_servers: [{ name: 'weather', transport: 'http', url: `http://127.0.0.1:${port}/mcp` }] },
    });
    f.mock.reset();
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'weather?' })).id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'mcp_server_failed' } });
    expect(task.error.message).toMatch(/^MCP server weather did not start: /);
    expect(task.error.message).toContain("127.0.0.1 is not on the task's egress allow-list");
    expect(seenHeaders.length).toBe(before);
    expect(f.mock.requests).toHaveLength(0);
  });

  it('cannot fill the worker’s memory: a response over 16 MiB ends the connection', async () => {
    const flood = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const more = () => {
        while (sent < 20 && res.write(chunk)) sent++;
        if (sent >= 20) res.end('{}');
        else res.once('drain', more);
      };
      more();
    });
    await new Promise<void>((resolve) => flood.listen(0, '127.0.0.1', resolve));
    try {
      const agent = await f.agent({
        agent: {
          egress: ['127.0.0.1'],
          mcp_servers: [
            {
              name: 'flood',
              transport: 'http',
              url: `http://127.0.0.1:${(flood.address() as AddressInfo).port}/mcp`,
            },
          ],
        },
      });
      f.mock.reset();
      const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'start' })).id);
      expect(task).toMatchObject({ status: 'failed', error: { code: 'mcp_server_failed' } });
      expect(task.error.message).toMatch(/^MCP server flood did not start: /);
      expect(task.error.message).toContain('127.0.0.1 sent a response over 16777216 bytes');
    } finally {
      flood.closeAllConnections();
      await new Promise((resolve) => flood.close(resolve));
    }
  });

  it('is not reached at a private address the outbound guard refuses, even on the allow-list', async () => {
    // 127.0.0.2 is loopback like 127.0.0.1, but not in this server's PADDOCK_ALLOW_PRIVATE_UPSTREAMS.
    const agent = await f.agent({
      agent: {
        egress: ['127.0.0.2'],
        mcp_servers: [{ name: 'sneaky', transport: 'http', url: `http://127.0.0.2:${port}/mcp` }],
      },
    });
    f.mock.reset();
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'weather?' })).id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'mcp_server_failed' } });
    expect(task.error.message).toMatch(/^MCP server sneaky did not start: /);
    expect(task.error.message).toContain('127.0.0.2 is a loopback address');
  });
});

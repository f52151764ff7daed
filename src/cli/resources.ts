import { unwrap } from '../../sdk/src/index.ts';
import { clientFor, pageQuery, resolveTarget } from './context.ts';
import { clip, formatUsd, printDetails, printJson, printPage } from './output.ts';
import { resolveAgentId } from './tasks.ts';

// The read-mostly commands: agents, playbooks, runs, API keys and queues.

interface Flags {
  json?: boolean;
  limit?: string;
  cursor?: string;
}

function one(object: unknown, flags: Flags, fields?: string[]): void {
  if (flags.json) printJson(object);
  else printDetails(object, fields);
}

const client = () => clientFor(resolveTarget());

export async function listAgents(flags: Flags): Promise<void> {
  const page = await unwrap(client().GET('/v1/agents', { params: { query: pageQuery(flags) } }));
  printPage(
    page,
    [
      ['id', (a) => a.id],
      ['name', (a) => a.name],
      ['status', (a) => a.status],
      ['version', (a) => a.version],
      ['presence', (a) => (a.presence as { status?: string } | null)?.status],
      ['description', (a) => clip(String(a.description ?? ''), 50)],
    ],
    flags,
    'no agents',
  );
}

export async function getAgent(nameOrId: string, flags: Flags): Promise<void> {
  const api = client();
  const id = await resolveAgentId(api, nameOrId);
  one(await unwrap(api.GET('/v1/agents/{id}', { params: { path: { id } } })), flags);
}

export async function listPlaybooks(flags: Flags): Promise<void> {
  const page = await unwrap(client().GET('/v1/playbooks', { params: { query: pageQuery(flags) } }));
  printPage(
    page,
    [
      ['id', (p) => p.id],
      ['name', (p) => p.name],
      ['trigger', (p) => p.trigger],
      ['schedule', (p) => p.schedule ?? (p.interval_seconds ? `every ${p.interval_seconds} s` : '')],
      ['enabled', (p) => p.enabled],
      ['next run', (p) => p.next_run_at],
    ],
    flags,
    'no playbooks',
  );
}

export async function firePlaybook(id: string, flags: Flags): Promise<void> {
  const run = await unwrap(client().POST('/v1/playbooks/{id}/run', { params: { path: { id } } }));
  if (flags.json) return printJson(run);
  process.stdout.write(`${run.id} ${run.status}${run.task_id ? ` (task ${run.task_id})` : ''}\n`);
}

export async function listPlaybookRuns(id: string, flags: Flags): Promise<void> {
  const page = await unwrap(
    client().GET('/v1/playbooks/{id}/runs', { params: { path: { id }, query: pageQuery(flags) } }),
  );
  printPage(
    page,
    [
      ['id', (r) => r.id],
      ['status', (r) => r.status],
      ['fired by', (r) => r.fired_by],
      ['task', (r) => r.task_id],
      ['cost', (r) => formatUsd(r.cost_usd)],
      ['created', (r) => r.created_at],
    ],
    flags,
    'no runs',
  );
}

export async function listRuns(flags: Flags & { agent?: string; status?: string }): Promise<void> {
  const api = client();
  const agentId = flags.agent ? await resolveAgentId(api, flags.agent) : undefined;
  const page = await unwrap(
    api.GET('/v1/runs', {
      params: {
        query: {
          ...pageQuery(flags),
          ...(agentId ? { agent_id: agentId } : {}),
          ...(flags.status ? { status: flags.status as 'running' } : {}),
        },
      },
    }),
  );
  printPage(
    page,
    [
      ['id', (r) => r.id],
      ['status', (r) => r.status],
      ['agent', (r) => r.agent_id],
      ['model', (r) => r.primary_model],
      ['steps', (r) => r.step_count],
      ['cost', (r) => formatUsd(r.cost_usd)],
      ['started', (r) => r.started_at],
    ],
    flags,
    'no runs',
  );
}

export async function getRun(id: string, flags: Flags): Promise<void> {
  one(await unwrap(client().GET('/v1/runs/{id}', { params: { path: { id } } })), flags);
}

export async function listKeys(flags: Flags): Promise<void> {
  const page = await unwrap(client().GET('/v1/api-keys', { params: { query: pageQuery(flags) } }));
  printPage(
    page,
    [
      ['id', (k) => k.id],
      ['name', (k) => k.name],
      ['prefix', (k) => k.key_prefix],
      ['scopes', (k) => (k.scopes as string[]).join(',')],
      ['status', (k) => k.status],
      ['last used', (k) => k.last_used_at],
    ],
    flags,
    'no API keys',
  );
}

export async function createKey(name: string, flags: Flags & { scope?: string[] }): Promise<void> {
  const scopes = (flags.scope?.length ? flags.scope : ['write']) as Array<'read' | 'write' | 'admin'>;
  const key = await unwrap(client().POST('/v1/api-keys', { body: { name, scopes } }));
  if (flags.json) return printJson(key);
  process.stdout.write(`${key.key}\n`);
  process.stderr.write(`key ${key.id} (${scopes.join(', ')}): shown once, keep it now\n`);
}

export async function revokeKey(id: string, flags: Flags): Promise<void> {
  const key = await unwrap(client().POST('/v1/api-keys/{id}/revoke', { params: { path: { id } } }));
  if (flags.json) return printJson(key);
  process.stdout.write(`${id} revoked\n`);
}

export async function listQueues(flags: Flags): Promise<void> {
  const page = await unwrap(client().GET('/v1/queues', { params: { query: pageQuery(flags) } }));
  printPage(
    page,
    [
      ['name', (q) => q.name],
      ['queued', (q) => q.queued],
      ['active', (q) => q.active],
      ['completed', (q) => q.completed],
      ['failed', (q) => q.failed],
      ['cancelled', (q) => q.cancelled],
    ],
    flags,
    'no queues',
  );
}

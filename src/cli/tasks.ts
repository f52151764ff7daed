import { followTaskEvents, type LogEvent, type PaddockClient, unwrap } from '../../sdk/src/index.ts';
import { CliError, clientFor, describeFailure, pageQuery, resolveTarget } from './context.ts';
import { EXIT } from './exit-codes.ts';
import { clip, formatUsd, printDetails, printJson, printPage, Spinner } from './output.ts';

// `paddock tasks …`: hand an agent a prompt and watch it work, and look at
// tasks. `run` follows the task's event stream (the SDK resumes it after a
// dropped connection), shows progress on stderr and the result on stdout.

type Task = Record<string, unknown> & { id: string; status: string };

/** An agent's id from its id or its name (names are unique in a team). */
export async function resolveAgentId(client: PaddockClient, nameOrId: string): Promise<string> {
  if (/^agt_[0-9A-Za-z]+$/.test(nameOrId)) return nameOrId;
  let cursor: string | undefined;
  do {
    const page = await unwrap(
      client.GET('/v1/agents', { params: { query: { limit: 200, ...(cursor ? { cursor } : {}) } } }),
    );
    const found = page.data.find((a) => a.name === nameOrId);
    if (found) return found.id;
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  throw new CliError(`no agent named "${nameOrId}" in this team (see paddock agents list)`, EXIT.notFound);
}

export interface RunFlags {
  agent: string;
  model?: string;
  maxTurns?: string;
  maxBudget?: string;
  timeout?: string;
  detach?: boolean;
  json?: boolean;
}

export async function runTask(prompt: string, flags: RunFlags): Promise<number> {
  const target = resolveTarget();
  const client = clientFor(target);
  const agentId = await resolveAgentId(client, flags.agent);
  const task = (await unwrap(
    client.POST('/v1/tasks', {
      body: {
        agent_id: agentId,
        prompt,
        // Stream mode: the answer's words reach the event log (and this terminal) as they come.
        mode: 'stream',
        ...(flags.model ? { model: flags.model } : {}),
        ...(flags.maxTurns ? { max_turns: positiveNumber('--max-turns', flags.maxTurns) } : {}),
        ...(flags.maxBudget ? { max_budget_usd: positiveNumber('--max-budget', flags.maxBudget) } : {}),
        ...(flags.timeout ? { timeout_sec: positiveNumber('--timeout', flags.timeout) } : {}),
      },
    }),
  )) as Task;
  if (flags.detach) {
    if (flags.json) printJson(task);
    else process.stdout.write(`${task.id}\n`);
    return EXIT.ok;
  }

  const interactive = !flags.json && process.stderr.isTTY === true;
  const spinner = new Spinner(interactive);
  const stop = new AbortController();
  let interrupted = false;
  // Ctrl-C cancels the task on the server, then exits 130; a second Ctrl-C exits at once.
  const onSigint = () => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
    spinner.stop();
    process.stderr.write(`\ncancelling ${task.id}… (Ctrl-C again to leave it running)\n`);
    stop.abort();
  };
  process.on('SIGINT', onSigint);
  if (!flags.json) process.stderr.write(`task ${task.id} queued\n`);
  spinner.update('queued');
  const view = new EventView(spinner, flags.json === true);
  try {
    for await (const event of followTaskEvents(
      { baseUrl: target.url, token: target.token, signal: stop.signal },
      task.id,
    ))
      view.show(event);
  } finally {
    spinner.stop();
    view.endLine();
  }
  if (interrupted) {
    const cancelled = await unwrap(
      client.POST('/v1/tasks/{id}/cancel', { params: { path: { id: task.id } } }),
    ).catch((err: unknown) => {
      process.stderr.write(`paddock: could not cancel ${task.id}: ${describeFailure(err).message}\n`);
      return undefined;
    });
    if (flags.json) printJson(cancelled ?? task);
    else if (cancelled) process.stderr.write(`task ${task.id} ${cancelled.status}\n`);
    process.off('SIGINT', onSigint);
    return EXIT.interrupted;
  }
  process.off('SIGINT', onSigint);
  const ended = (await unwrap(client.GET('/v1/tasks/{id}', { params: { path: { id: task.id } } }))) as Task;
  if (flags.json) {
    printJson(ended);
  } else {
    if (ended.result !== null && ended.result !== undefined) {
      const text = typeof ended.result === 'string' ? ended.result : JSON.stringify(ended.result, null, 2);
      // On a terminal the answer was just streamed: not twice. Redirected, stdout gets it whole.
      if (!(process.stdout.isTTY && interactive && view.lastText.trim() === text.trim()))
        process.stdout.write(`${text}\n`);
    }
    process.stderr.write(`${summary(ended)}\n`);
  }
  return ended.status === 'completed' ? EXIT.ok : EXIT.taskFailed;
}

function positiveNumber(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new CliError(`${flag} must be a positive number, got "${raw}"`, EXIT.usage);
  return n;
}

/** `completed · $0.0012 · 3 turns · 1234 in / 56 out tokens · 4.2 s`, and the error when it failed. */
export function summary(task: Task): string {
  const parts = [
    task.status,
    `cost ${formatUsd(task.cost_usd)}`,
    `${task.turns} turn${task.turns === 1 ? '' : 's'}`,
    `${task.input_tokens} in / ${task.output_tokens} out tokens`,
  ];
  // From submission to the end: what the person waited, queueing included.
  if (typeof task.created_at === 'string' && typeof task.finished_at === 'string') {
    const ms = Date.parse(task.finished_at) - Date.parse(task.created_at);
    parts.push(`${(ms / 1000).toFixed(1)} s`);
  }
  const error = task.error as { code?: string; message?: string } | null;
  return `${parts.join(' · ')}${error ? `\nerror: ${error.message} (${error.code})` : ''}`;
}

/** Renders a task's events: one line each for people; with --json, nothing (the task is printed at the end). */
class EventView {
  /** The last turn's text as shown. */
  lastText = '';
  /** The text deltas of the turn being streamed, before its whole `text` event. */
  private streamed = '';
  private midLine = false;

  constructor(
    private readonly spinner: Spinner,
    private readonly quiet: boolean,
  ) {}

  show(event: LogEvent): void {
    if (this.quiet) return;
    const p = event.payload;
    if (event.type === 'text_delta') {
      // The spinner would erase a line being written: it rests until the line ends.
      if (!this.midLine) this.spinner.stop();
      this.midLine = true;
      const text = String(p.text ?? '');
      this.streamed += text;
      process.stderr.write(text);
      return;
    }
    if (event.type === 'text') {
      const text = String(p.text ?? '');
      // In stream mode the deltas showed it already (the turn's model_call comes between).
      if (this.streamed.trim() !== text.trim()) {
        this.endLine();
        this.line(text);
      }
      this.streamed = '';
      this.lastText = text;
      this.endLine();
      return;
    }
    this.endLine();
    this.line(describeEvent(event));
    this.spinner.update(activity(event));
  }

  endLine(): void {
    if (this.midLine) process.stderr.write('\n');
    this.midLine = false;
  }

  private line(text: string): void {
    this.spinner.print(`${text}\n`);
  }
}

/** What the spinner says while the task waits for the next event. */
function activity(event: LogEvent): string {
  const p = event.payload;
  if (event.type === 'tool_call') return `running ${String(p.name)}…`;
  if (event.type === 'status' && p.status === 'awaiting_approval') return 'waiting for a person to approve…';
  if (event.type === 'status' && p.status === 'queued') return 'queued';
  return 'thinking…';
}

/** One line (or a few) that tells a person what an event says. */
export function describeEvent(event: LogEvent): string {
  const p = event.payload;
  switch (event.type) {
    case 'status': {
      const error = p.error as { code?: string; message?: string } | undefined;
      return `● ${String(p.status)}${error ? `: ${error.message} (${error.code})` : ''}`;
    }
    case 'capsule':
      return `● capsule ${String(p.capsule_id)} (${String(p.template)})`;
    case 'model_call':
      return `· ${String(p.model)}: ${p.input_tokens} in / ${p.output_tokens} out tokens, ${formatUsd(p.cost_usd)}`;
    case 'tool_call':
      return `→ ${String(p.name)} ${clip(JSON.stringify(p.arguments ?? {}), 200)}`;
    case 'tool_result': {
      const output = clip(String(p.output ?? '').trim(), 400)
        .split('\n')
        .slice(0, 6)
        .map((l) => `    ${l}`)
        .join('\n');
      const exit = p.exit_code === undefined || p.exit_code === null ? '' : ` (exit ${p.exit_code})`;
      return `← ${String(p.name)} ${p.ok ? 'ok' : 'failed'}${exit}${output ? `\n${output}` : ''}`;
    }
    case 'text':
    case 'text_delta':
      return String(p.text ?? '');
    case 'output_files':
      return `● output files: ${JSON.stringify(p.files ?? p)}`;
    default:
      return `● ${event.type} ${clip(JSON.stringify(p), 200)}`;
  }
}

export async function listTasks(flags: {
  status?: string;
  agent?: string;
  limit?: string;
  cursor?: string;
  json?: boolean;
}): Promise<void> {
  const client = clientFor(resolveTarget());
  const agentId = flags.agent ? await resolveAgentId(client, flags.agent) : undefined;
  const page = await unwrap(
    client.GET('/v1/tasks', {
      params: {
        query: {
          ...pageQuery(flags),
          ...(flags.status ? { status: flags.status as 'queued' } : {}),
          ...(agentId ? { agent_id: agentId } : {}),
        },
      },
    }),
  );
  printPage(
    page,
    [
      ['id', (t) => t.id],
      ['status', (t) => t.status],
      ['agent', (t) => t.agent_id],
      ['cost', (t) => formatUsd(t.cost_usd)],
      ['created', (t) => t.created_at],
      ['prompt', (t) => clip(String(t.prompt), 50)],
    ],
    flags,
    'no tasks',
  );
}

export async function getTask(id: string, flags: { json?: boolean }): Promise<void> {
  const client = clientFor(resolveTarget());
  const task = await unwrap(client.GET('/v1/tasks/{id}', { params: { path: { id } } }));
  if (flags.json) return printJson(task);
  printDetails(task, [
    'id',
    'status',
    'agent_id',
    'agent_version',
    'model',
    'mode',
    'prompt',
    'result',
    'error',
    'run_id',
    'turns',
    'input_tokens',
    'output_tokens',
    'cost_usd',
    'sandbox_seconds',
    'created_at',
    'started_at',
    'finished_at',
  ]);
}

export async function cancelTask(id: string, flags: { json?: boolean }): Promise<void> {
  const client = clientFor(resolveTarget());
  const task = await unwrap(client.POST('/v1/tasks/{id}/cancel', { params: { path: { id } } }));
  if (flags.json) return printJson(task);
  process.stdout.write(`${task.id} ${task.status}\n`);
}

/** The task's events: the log so far, or with --follow the log then live ones until the task ends. */
export async function taskLogs(id: string, flags: { follow?: boolean; json?: boolean }): Promise<void> {
  const target = resolveTarget();
  const client = clientFor(target);
  const print = (event: LogEvent) => {
    if (flags.json) process.stdout.write(`${JSON.stringify(event)}\n`);
    // The deltas' words come whole in the turn's `text` event.
    else if (event.type !== 'text_delta') process.stdout.write(`${describeEvent(event)}\n`);
  };
  if (flags.follow) {
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    for await (const event of followTaskEvents(
      { baseUrl: target.url, token: target.token, signal: stop.signal },
      id,
    ))
      print(event);
    return;
  }
  let after = 0;
  for (;;) {
    const page = await unwrap(
      client.GET('/v1/tasks/{id}/events', {
        params: { path: { id }, query: { after_seq: after, limit: 1000 } },
      }),
    );
    for (const event of page.data) print(event as LogEvent);
    if (page.data.length === 0 || page.next_after_seq === after) return;
    after = page.next_after_seq;
  }
}

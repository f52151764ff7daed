// Time to the first streamed delta: from sending what starts a streamed answer (a
// stream-mode task now; a workspace message once workspaces exist) to an SSE
// subscriber of its events receiving the first `text_delta`, less the mock
// upstream's own time to its first chunk. The sender is a parameter: a
// workspace message is measured the same way by passing a Sender that waits
// (unmeasured) for its workspace to be idle, then posts the message and
// answers its turn's events path. The upstream's own time is what the mock
// really took, from the call's arrival to its answer's first bytes (its
// 20 ms wait, and whatever its timer and its process added).
import type { MockCall, MockStep } from '../test/support/mock-llm.ts';
import { percentile } from './load.ts';
import { api, type Governed, positive, sleep, str } from './paddock.ts';

export const FIRST_DELTA_SAMPLES = positive('BENCH_STREAM_SAMPLES', 40);
/** The mock's time to its first chunk, asked: it waits this long before its headers and first event. */
export const UPSTREAM_FIRST_CHUNK_MS = positive('BENCH_UPSTREAM_FIRST_CHUNK_MS', 20);
const WARMUP = 3;
const PROMPT_PREFIX = 'bench stream';
const TIMEOUT_MS = 60_000;
export const FIRST_DELTA_TARGET_MS = 30;

/** One measured answer. performance.now() values on the benchmark's clock. */
export interface FirstDeltaSample {
  /** Sent → the subscriber's first text_delta, less the upstream's time to its first chunk. */
  overUpstreamMs: number;
  /** The mock received the model call → the subscriber's first text_delta, less the upstream's time. */
  callToDeltaMs: number;
  /** The upstream's own time: the mock received the call → it wrote its answer's first bytes. */
  upstreamMs: number;
  /** Sent → the mock received the model call (for a task: its queue, claim, run start and the gateway). */
  sentToCallMs: number;
}

/**
 * The mock's side: answers a streamed text to calls whose prompt starts with
 * PROMPT_PREFIX (undefined for the others), after UPSTREAM_FIRST_CHUNK_MS,
 * and notes when each call arrived and when its answer started.
 */
export class StreamedAnswers {
  private readonly arrived = new Map<string, number>();
  private readonly answered = new Map<string, number>();

  respond = ({ body }: MockCall): MockStep | undefined => {
    const messages = body.messages as Array<{ role: string; content: unknown }> | undefined;
    const prompt = String(messages?.findLast((m) => m.role === 'user')?.content ?? '');
    if (!prompt.startsWith(PROMPT_PREFIX)) return undefined;
    if (!this.arrived.has(prompt)) this.arrived.set(prompt, performance.now());
    return {
      delayMs: UPSTREAM_FIRST_CHUNK_MS,
      answering: () => {
        if (!this.answered.has(prompt)) this.answered.set(prompt, performance.now());
      },
      chunks: Array.from({ length: 20 }, (_, i) => `word${i} `),
    };
  };

  /** When the call of `prompt` arrived at the mock, and when the mock started its answer. */
  take(prompt: string): { arrived: number; answered: number } | undefined {
    const arrived = this.arrived.get(prompt);
    const answered = this.answered.get(prompt);
    this.arrived.delete(prompt);
    this.answered.delete(prompt);
    return arrived === undefined || answered === undefined ? undefined : { arrived, answered };
  }
}

/** Reads an SSE stream until its `end` event; answers when the first text_delta arrived. */
async function firstDeltaOf(url: string, token: string): Promise<number> {
  const abort = AbortSignal.timeout(TIMEOUT_MS);
  const res = await fetch(url, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
    signal: abort,
  });
  if (res.status !== 200 || !res.body) throw new Error(`${url} answered ${res.status}`);
  const decoder = new TextDecoder();
  let text = '';
  let first: number | undefined;
  for await (const bytes of res.body) {
    text += decoder.decode(bytes as Uint8Array, { stream: true });
    if (first === undefined && text.includes('\nevent: text_delta\n')) first = performance.now();
    if (text.includes('\nevent: end\n')) break;
    // Only the tail can still hold a marker cut in two.
    if (first !== undefined) text = text.slice(-64);
  }
  if (first === undefined) throw new Error(`${url} ended without a text_delta`);
  return first;
}

/** What starts a streamed answer: `ready` is waited for before the clock starts, `send` is measured. */
export interface Sender {
  ready?: () => Promise<void>;
  /** Starts an answer; answers the events path to follow. */
  send: (prompt: string) => Promise<string>;
}

/**
 * `samples` answers one after another: once the sender is ready, `send(prompt)`
 * starts one (and answers the events path to follow), a subscriber joins at
 * once and waits for its first text_delta.
 */
export async function measureFirstDelta(
  g: Governed,
  answers: StreamedAnswers,
  tag: string,
  sender: Sender,
  samples = FIRST_DELTA_SAMPLES,
): Promise<FirstDeltaSample[]> {
  const out: FirstDeltaSample[] = [];
  for (let i = 0; i < WARMUP + samples; i++) {
    const prompt = `${PROMPT_PREFIX} ${tag} ${i}: answer in twenty words`;
    await sender.ready?.();
    const sentAt = performance.now();
    const path = await sender.send(prompt);
    const deltaAt = await firstDeltaOf(`${g.base}${path}`, g.token);
    const call = answers.take(prompt);
    if (call === undefined) throw new Error(`the mock never answered the call of "${prompt}"`);
    const upstreamMs = call.answered - call.arrived;
    if (i >= WARMUP)
      out.push({
        overUpstreamMs: deltaAt - sentAt - upstreamMs,
        callToDeltaMs: deltaAt - call.arrived - upstreamMs,
        upstreamMs,
        sentToCallMs: call.arrived - sentAt,
      });
    await sleep(100);
  }
  return out;
}

/** A stream-mode task as the thing sent: POST /v1/tasks, then its events. */
export function streamTask(g: Governed): Sender {
  return {
    send: async (prompt) => {
      const task = await api(g.base, 'POST', '/v1/tasks', g.token, {
        agent_id: g.agentId,
        prompt,
        mode: 'stream',
      });
      return `/v1/tasks/${str(task.id, 'task id')}/events`;
    },
  };
}

/**
 * A message to a workspace as the thing sent: the workspace is opened once
 * (its first turn starts the capsule), then before each message the workspace
 * is waited for until idle (outside the measured time: a client that sends
 * after an answer ended does not ask first), and the message is posted and its
 * turn's events followed.
 */
export function workspaceMessage(g: Governed): Sender {
  let workspaceId: string | undefined;
  const idle = async (id: string) => {
    const deadline = performance.now() + TIMEOUT_MS;
    for (;;) {
      const ws = await api(g.base, 'GET', `/v1/workspaces/${id}`, g.token);
      if (ws.status === 'idle') return;
      if (ws.status !== 'active' || performance.now() > deadline)
        throw new Error(`workspace ${id} is ${String(ws.status)}`);
      await sleep(20);
    }
  };
  return {
    ready: async () => {
      if (!workspaceId) {
        const opening = await api(g.base, 'POST', '/v1/tasks', g.token, {
          agent_id: g.agentId,
          prompt: 'open a workspace for the benchmark',
          mode: 'session',
        });
        workspaceId = str(opening.workspace_id, 'workspace id');
      }
      await idle(workspaceId);
    },
    send: async (prompt) => {
      const turn = await api(g.base, 'POST', `/v1/workspaces/${workspaceId}/messages`, g.token, {
        content: prompt,
      });
      return `/v1/tasks/${str(turn.id, 'task id')}/events`;
    },
  };
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const pct = (xs: number[], p: number) => percentile(Float64Array.from(xs).sort(), p);

/**
 * Report lines for one kind of sender (`what`: "stream-mode task", "workspace
 * message"). `judged` is the line the 30 ms target applies to: the whole time
 * for a workspace message (its capsule and conversation are there already);
 * for a task, whose time also holds its start (queue, claim, run; the
 * first-call figure's target), the streaming path from the model call on.
 */
export function firstDeltaReport(
  what: string,
  samples: FirstDeltaSample[],
  judged: 'total' | 'stream path',
): string[] {
  const over = samples.map((s) => s.overUpstreamMs);
  const call = samples.map((s) => s.callToDeltaMs);
  const sent = samples.map((s) => s.sentToCallMs);
  const upstream = samples.map((s) => s.upstreamMs);
  const verdict = (xs: number[], on: typeof judged) => {
    if (on !== judged) return '| |';
    const p50 = pct(xs, 50);
    return `< ${FIRST_DELTA_TARGET_MS} ms p50 | ${p50 < FIRST_DELTA_TARGET_MS ? 'PASS' : 'FAIL'} |`;
  };
  return [
    `| ${what} sent → first text_delta at an SSE subscriber, less the upstream's own time to its first chunk, p50 / p95 (${samples.length} one after another) | ${f1(pct(over, 50))} / ${f1(pct(over, 95))} ms | ${verdict(over, 'total')}`,
    `| … the upstream's own time: the call at the mock → its answer's first bytes (${UPSTREAM_FIRST_CHUNK_MS} ms asked), p50 / p95 | ${f1(pct(upstream, 50))} / ${f1(pct(upstream, 95))} ms | | |`,
    `| … of which sent → the model call at the upstream, p50 / p95 | ${f1(pct(sent, 50))} / ${f1(pct(sent, 95))} ms | | |`,
    `| … of which the model call at the upstream → first text_delta at the subscriber, less the upstream's time, p50 / p95 | ${f1(pct(call, 50))} / ${f1(pct(call, 95))} ms | ${verdict(call, 'stream path')}`,
  ];
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECOND_MS } from '../../src/core/clock.ts';
import { type Context, silentLog } from '../../src/core/context.ts';
import { Sealer } from '../../src/core/crypto.ts';
import { NOOP_TRACER } from '../../src/core/tracing.ts';
import type { Jobs } from '../../src/jobs/jobs.ts';
import { ATTEMPT_LEASE_MS, MailService } from '../../src/modules/mail/service.ts';
import type { MailEnvelope } from '../../src/modules/mail/transport.ts';
import { createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';
import { outboxRows } from './smtp.ts';

// Two workers and one message: the first claims it and hangs in the SMTP
// exchange past its attempt's lease; the sweep gives the message to a second
// worker, which sends it. Whatever the first then learns (sent after all, or
// failed) must not change the row: no second "sent" over the second's, and
// no failure that queues a message already sent for a third sending.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ manualTimers: true });
});
afterAll(() => t.close());

/** A sender whose sends the test ends, one by one. */
class HeldSender {
  readonly sent: MailEnvelope[] = [];
  private readonly pending: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  async send(message: MailEnvelope): Promise<void> {
    await new Promise<void>((resolve, reject) => this.pending.push({ resolve, reject }));
    this.sent.push(message);
  }
  get waiting(): number {
    return this.pending.length;
  }
  finish(outcome: 'ok' | Error): void {
    const next = this.pending.shift()!;
    if (outcome === 'ok') next.resolve();
    else next.reject(outcome);
  }
}

/** Jobs are not used by deliver(): the test calls it as a job would. */
const noJobs = {} as Jobs;

function worker(sender: HeldSender, warnings: string[]): MailService {
  const log = {
    ...silentLog,
    warn: (_obj: object, msg?: string) => void warnings.push(msg ?? ''),
    child: () => log,
  };
  const ctx: Context = { clock: t.clock, timers: t.timers!, log, tracer: NOOP_TRACER };
  return new MailService(t.database.db, ctx, new Sealer(t.masterKey), noJobs, sender);
}

async function queued(a: MailService): Promise<{ id: string; to: string }> {
  const to = uniqueEmail('leased');
  const id = await a.queue(t.database.db, { to, kind: 'magic_link', subject: 's', text: 't', html: 'h' });
  return { id, to };
}

/** Until `sender` holds a send (the attempt claimed the message and is in the SMTP exchange). */
async function inExchange(sender: HeldSender): Promise<void> {
  const end = Date.now() + 10_000;
  while (sender.waiting === 0) {
    if (Date.now() > end) throw new Error('no send began');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A message whose first attempt (worker a) hangs in the SMTP exchange past
 * its lease, and whose second attempt (worker b, as the sweep's job would)
 * is now in the exchange too.
 */
async function overtaken(warnings: string[] = []) {
  const [slow, fast] = [new HeldSender(), new HeldSender()];
  const [a, b] = [worker(slow, warnings), worker(fast, warnings)];
  const { id, to } = await queued(a);
  const first = a.deliver(id);
  await inExchange(slow);
  // Within the lease, another job for it finds nothing to do.
  await b.deliver(id);
  expect(fast.waiting).toBe(0);
  t.clock.advance(ATTEMPT_LEASE_MS + SECOND_MS);
  const second = b.deliver(id);
  await inExchange(fast);
  return { slow, fast, b, id, to, first, second };
}

describe('an e-mail attempt that outlives its lease', () => {
  it('does not mark sent over the attempt that took the message over', async () => {
    const warnings: string[] = [];
    const { slow, fast, to, first, second } = await overtaken(warnings);
    fast.finish('ok');
    await second;
    const [sent] = await outboxRows(t, to);
    expect(sent).toMatchObject({ status: 'sent', attempts: 2 });

    slow.finish('ok');
    await first;
    const [after] = await outboxRows(t, to);
    expect(after).toMatchObject({ status: 'sent', attempts: 2, sentAt: sent!.sentAt });
    expect(warnings).toContain(
      'an e-mail attempt ended after another took the message over; its outcome is dropped',
    );
  });

  it('does not queue again, on a late failure, a message the next attempt sent', async () => {
    const { slow, fast, b, id, to, first, second } = await overtaken();
    fast.finish('ok');
    await second;

    slow.finish(new Error('connection reset'));
    await first;
    const [row] = await outboxRows(t, to);
    expect(row).toMatchObject({ status: 'sent', attempts: 2, lastError: null });
    // Nothing is due: no sweep sends it a third time.
    t.clock.advance(10 * ATTEMPT_LEASE_MS);
    await b.deliver(id);
    expect(fast.waiting).toBe(0);
    expect(fast.sent).toHaveLength(1);
  });

  it('a late failure while the next attempt is still sending leaves that attempt to decide', async () => {
    const { slow, fast, to, first, second } = await overtaken();
    slow.finish(new Error('connection reset'));
    await first;
    // The first attempt's failure did not put the message back in the queue under the second.
    expect((await outboxRows(t, to))[0]).toMatchObject({ status: 'queued', attempts: 2, lastError: null });
    fast.finish('ok');
    await second;
    expect((await outboxRows(t, to))[0]).toMatchObject({ status: 'sent', attempts: 2 });
  });
});

import { MINUTE_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context, Timer } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { newId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { Jobs, QueuePolicy } from '../../jobs/jobs.ts';
import * as repo from './repo.ts';
import { type MailEnvelope, PermanentMailError } from './transport.ts';

export type MailKind = 'invitation' | 'password_reset' | 'magic_link' | 'alert';

/** A message to queue: the caller writes its words; the mail module only carries them. */
export interface OutgoingMail {
  to: string;
  kind: MailKind;
  subject: string;
  text: string;
  html: string;
}

/**
 * What other modules use to send e-mail: `queue` writes the message into the
 * outbox in the caller's transaction (so it exists exactly when the change
 * that causes it does); `dispatch`, after that transaction committed, asks
 * for it to be sent now rather than at the next sweep.
 */
export interface MailPort {
  queue(tx: DbOrTx, message: OutgoingMail): Promise<string>;
  dispatch(id: string): void;
}

/** Sends one message; none configured: the message is logged (without its bodies) instead. */
export interface MailSender {
  send(message: MailEnvelope): Promise<void>;
}

export const MAIL_QUEUE = 'mail-send';
/**
 * How long an attempt holds its row before the sweep may give it to another
 * job. Longer than the SMTP transport's own time limits (10 s to connect, 30 s
 * of silence), so a live attempt ends before its lease does.
 */
export const ATTEMPT_LEASE_MS = 2 * MINUTE_MS;
/**
 * One attempt per job (retryLimit 0: pg-boss never runs a job twice):
 * retries are the outbox's own (RETRY_DELAYS_MS), driven by the sweep, which
 * also takes a message over once its attempt's lease ends. The job expires
 * with that lease.
 */
const MAIL_POLICY: QueuePolicy = {
  retryLimit: 0,
  retryDelaySec: 0,
  expireInSec: ATTEMPT_LEASE_MS / SECOND_MS,
};
/** The wait after each failed attempt; after the last, the message is `failed`. Eight attempts over about 3 h 40 min. */
export const RETRY_DELAYS_MS = [30, 120, 600, 1800, 3600, 3600, 3600].map((s) => s * SECOND_MS);
export const MAIL_SWEEP_EVERY_MS = 15 * SECOND_MS;
const SWEEP_BATCH = 100;
const LAST_ERROR_CHARS = 500;

export class MailService implements MailPort {
  private timer: Timer | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly jobs: Jobs,
    /** undefined: no SMTP server configured, each message is logged instead. */
    private readonly sender: MailSender | undefined,
  ) {}

  async queue(tx: DbOrTx, message: OutgoingMail): Promise<string> {
    const now = this.ctx.clock.now();
    const id = newId('mail');
    await repo.insertMail(tx, {
      id,
      toAddress: message.to,
      kind: message.kind,
      subject: message.subject,
      // Bound to the row: a sealed body copied to another row does not open.
      textSealed: this.sealer.seal(message.text, `mail:${id}:text`),
      htmlSealed: this.sealer.seal(message.html, `mail:${id}:html`),
      status: 'queued',
      nextAttemptAt: now,
      createdAt: now,
      updatedAt: now,
    });
    return id;
  }

  /** An erasure (docs/admin.md): messages to the address, sent or not, are deleted, in the caller's transaction. */
  async forgetAddress(tx: DbOrTx, address: string): Promise<void> {
    await repo.deleteMailTo(tx, address);
  }

  dispatch(id: string): void {
    this.sendJob(id).catch((err: unknown) =>
      // The row stays queued: the sweep sends it.
      this.ctx.log.warn({ mail_id: id, err }, 'could not queue the e-mail job; the mail sweep will send it'),
    );
  }

  private async sendJob(id: string): Promise<void> {
    await this.jobs.declare(MAIL_QUEUE, MAIL_POLICY);
    await this.jobs.send(MAIL_QUEUE, { mail_id: id });
  }

  /** Works the queue on this server and sweeps for due and lost messages every 15 s (on ctx.timers). */
  async start(): Promise<void> {
    await this.jobs.work<{ mail_id: string }>(MAIL_QUEUE, MAIL_POLICY, (job) =>
      this.deliver(job.data.mail_id),
    );
    this.timer ??= this.ctx.timers.every(MAIL_SWEEP_EVERY_MS, () => {
      this.sweeping ??= this.sweep()
        .then(() => undefined)
        .catch((err: unknown) => this.ctx.log.warn({ err }, 'the mail sweep failed'))
        .finally(() => (this.sweeping = undefined));
    });
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Sends a job for every queued message that is due (a retry's time came, or its job was lost). */
  async sweep(): Promise<number> {
    const ids = await repo.dueMailIds(this.db, this.ctx.clock.now(), SWEEP_BATCH);
    for (const id of ids) await this.sendJob(id);
    return ids.length;
  }

  /** One attempt at a message (the job's handler); a message not queued or not due is left alone. */
  async deliver(id: string): Promise<void> {
    const now = this.ctx.clock.now();
    const row = await repo.claimMail(this.db, id, now, new Date(now.getTime() + ATTEMPT_LEASE_MS));
    if (!row) return;
    const what = { mail_id: row.id, to: row.toAddress, kind: row.kind, subject: row.subject };
    if (!this.sender) {
      // Never the bodies: they hold the links with their tokens.
      this.ctx.log.info(
        what,
        'e-mail not sent (no SMTP server configured: PADDOCK_SMTP_URL); logged instead',
      );
      await this.finish(row, { status: 'logged', sentAt: now, updatedAt: now });
      return;
    }
    const envelope = {
      to: row.toAddress,
      subject: row.subject,
      text: this.sealer.open(row.textSealed, `mail:${id}:text`),
      html: this.sealer.open(row.htmlSealed, `mail:${id}:html`),
    };
    // A process that stalled since its claim (its lease, nextAttemptAt, has passed) sends nothing:
    // the sweep may have given the message to another attempt already.
    if (this.ctx.clock.now() >= row.nextAttemptAt) {
      this.ctx.log.warn({ ...what, attempts: row.attempts }, 'e-mail attempt outlived its lease; not sent');
      return;
    }
    try {
      await this.sender.send(envelope);
    } catch (err) {
      await this.failed(row, err);
      return;
    }
    const at = this.ctx.clock.now();
    if (await this.finish(row, { status: 'sent', sentAt: at, lastError: null, updatedAt: at }))
      this.ctx.log.info({ ...what, attempts: row.attempts }, 'e-mail sent');
  }

  /** Ends the attempt `row` claimed, unless a later attempt took the message over (then it is logged). */
  private async finish(row: repo.MailRow, patch: Parameters<typeof repo.finishAttempt>[3]): Promise<boolean> {
    const done = await repo.finishAttempt(this.db, row.id, row.attempts, patch);
    if (!done)
      this.ctx.log.warn(
        { mail_id: row.id, kind: row.kind, attempts: row.attempts, outcome: patch.status },
        'an e-mail attempt ended after another took the message over; its outcome is dropped',
      );
    return done;
  }

  private async failed(row: repo.MailRow, err: unknown): Promise<void> {
    const at = this.ctx.clock.now();
    const error = (err instanceof Error ? err.message : String(err)).slice(0, LAST_ERROR_CHARS);
    const delay = RETRY_DELAYS_MS[row.attempts - 1];
    const final = err instanceof PermanentMailError || delay === undefined;
    const done = await this.finish(row, {
      status: final ? 'failed' : 'queued',
      lastError: error,
      nextAttemptAt: final ? at : new Date(at.getTime() + delay),
      updatedAt: at,
    });
    if (done)
      this.ctx.log.warn(
        { mail_id: row.id, kind: row.kind, attempts: row.attempts, error, retry_in_ms: final ? null : delay },
        final ? 'e-mail failed for good' : 'e-mail attempt failed; it will be retried',
      );
  }
}

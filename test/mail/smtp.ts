import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import { SMTPServer } from 'smtp-server';
import { mailOutbox } from '../../src/db/schema/index.ts';
import type { TestApp } from '../support/app.ts';

export interface ReceivedMail {
  to: string[];
  /** The message as it arrived, quoted-printable undone. */
  body: string;
  /** The user the client authenticated as, if it did. */
  user: string | undefined;
  password: string | undefined;
}

/** A real SMTP server on 127.0.0.1 that keeps what it receives (plain SMTP: no STARTTLS). */
export class SmtpCatcher {
  readonly received: ReceivedMail[] = [];
  private server: SMTPServer | undefined;
  port = 0;

  async start(port = this.port): Promise<void> {
    const server = new SMTPServer({
      authOptional: true,
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onAuth: (auth, _session, callback) => callback(null, { user: `${auth.username}\n${auth.password}` }),
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          const [user, password] = typeof session.user === 'string' ? session.user.split('\n') : [];
          this.received.push({
            to: session.envelope.rcptTo.map((r) => r.address),
            body: raw
              .replace(/=\r?\n/g, '')
              .replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
            user,
            password,
          });
          callback();
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  get url(): string {
    return `smtp://paddock:s3cret-pass@127.0.0.1:${this.port}`;
  }

  /** The first message to `to` that arrives within 20 s. */
  async mailTo(to: string): Promise<ReceivedMail> {
    return waitUntil(`an e-mail to ${to}`, () => this.received.find((m) => m.to.includes(to)));
  }
}

export async function waitUntil<T>(
  what: string,
  find: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const until = Date.now() + 20_000;
  for (;;) {
    const found = await find();
    if (found !== undefined) return found;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The single-use token in a received e-mail's link. */
export function tokenIn(mail: ReceivedMail): string {
  const match = /token=(pd[a-z]+_[0-9A-Za-z]+)/.exec(mail.body);
  if (!match) throw new Error(`no token link in:\n${mail.body}`);
  return match[1]!;
}

/** The outbox rows addressed to `to`. */
export async function outboxRows(t: TestApp, to: string) {
  return t.database.db.select().from(mailOutbox).where(eq(mailOutbox.toAddress, to));
}

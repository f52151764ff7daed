import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { SECOND_MS } from '../../src/core/clock.ts';
import { createTestApp, type TestApp } from '../support/app.ts';
import { outboxRows, SmtpCatcher, waitUntil } from './smtp.ts';

const opened: Array<TestApp | SmtpCatcher> = [];
afterEach(async () => {
  for (const thing of opened.splice(0).reverse()) await ('close' in thing ? thing.close() : thing.stop());
});

async function catcher(): Promise<SmtpCatcher> {
  const smtp = new SmtpCatcher();
  await smtp.start();
  opened.push(smtp);
  return smtp;
}

async function app(options: Parameters<typeof createTestApp>[0]): Promise<TestApp> {
  const t = await createTestApp(options);
  opened.push(t);
  return t;
}

/** Asks for a magic link for a new account; its one outbox row once `done` says so. */
async function askForLink(
  t: TestApp,
  done: (row: Awaited<ReturnType<typeof outboxRows>>[number]) => boolean,
) {
  const user = await t.signup();
  const res = await t.call('POST', '/v1/auth/magic-link/start', { body: { email: user.user.email } });
  expect(res.status).toBe(202);
  const row = await waitUntil('the outbox row', async () =>
    (await outboxRows(t, user.user.email)).find(done),
  );
  return { email: user.user.email, row };
}

// Each test starts its own server (inside the test, so its time counts): more than the default 30 s on a busy machine.
describe('the e-mail outbox', { timeout: 90_000 }, () => {
  it('retries a message while the SMTP server is down and sends it once it is back', async () => {
    const smtp = await catcher();
    const port = smtp.port;
    await smtp.stop();
    const t = await app({
      manualTimers: true,
      env: { PADDOCK_SMTP_URL: smtp.url, PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1' },
    });
    const { email, row } = await askForLink(t, (r) => r.attempts === 1 && r.lastError !== null);
    expect(row.status).toBe('queued');
    expect(row.lastError).toMatch(/ECONNREFUSED|connect/i);

    await smtp.start(port);
    // The first retry is due 30 s after the failure: the sweep at 15 s leaves it alone.
    await t.timers!.advance(15 * SECOND_MS);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(smtp.received).toEqual([]);
    await t.timers!.advance(15 * SECOND_MS);
    const mail = await smtp.mailTo(email);
    expect(mail.body).toContain('Subject: Your Paddock sign-in link');
    const sent = await waitUntil('the row sent', async () =>
      (await outboxRows(t, email)).find((r) => r.status === 'sent'),
    );
    expect(sent.attempts).toBe(2);
    // Once: more sweeps do not send it again.
    await t.timers!.advance(60 * SECOND_MS);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(smtp.received.filter((m) => m.to.includes(email))).toHaveLength(1);
  });

  it('logs a message when no SMTP server is configured, without its link or token', async () => {
    const lines: string[] = [];
    const t = await app({ logDestination: { write: (line) => void lines.push(line) } });
    const { row } = await askForLink(t, (r) => r.status === 'logged');
    expect(row.attempts).toBe(1);
    const logged = lines.filter((l) => l.includes(row.id));
    expect(logged).toHaveLength(1);
    expect(JSON.parse(logged[0]!)).toMatchObject({
      to: row.toAddress,
      kind: 'magic_link',
      subject: 'Your Paddock sign-in link',
    });
    const all = lines.join('\n');
    expect(all).not.toContain('pdml_');
    expect(all).not.toContain('token=');
  });

  it('refuses an SMTP server at a private address the operator did not allow, at send', async () => {
    const smtp = await catcher();
    const lines: string[] = [];
    const t = await app({
      env: { PADDOCK_SMTP_URL: smtp.url },
      logDestination: { write: (line) => void lines.push(line) },
    });
    const { row } = await askForLink(t, (r) => r.status === 'failed');
    expect(row.attempts).toBe(1);
    expect(row.lastError).toContain('127.0.0.1 is a loopback address');
    expect(smtp.received).toEqual([]);
    // The SMTP password is in no log line.
    expect(lines.join('\n')).not.toContain('s3cret-pass');
  });

  it('names a bad PADDOCK_SMTP_URL or PADDOCK_MAIL_FROM at start, without the password', () => {
    const bad = () =>
      loadConfig({
        PADDOCK_SMTP_URL: 'http://user:hunter22@mail.example.com',
        PADDOCK_MAIL_FROM: 'not an address',
      });
    expect(bad).toThrow(ConfigError);
    try {
      bad();
    } catch (err) {
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toContain('PADDOCK_SMTP_URL must be smtp://');
      expect(problems).toContain('PADDOCK_MAIL_FROM="not an address"');
      expect(problems).not.toContain('hunter22');
    }
    const ok = loadConfig({ PADDOCK_SMTP_URL: 'smtps://u:p%40ss@mail.example.com:465' });
    expect(ok.smtpUrl).toBe('smtps://u:p%40ss@mail.example.com:465');
    expect(ok.mailFrom).toBe('paddock@localhost');
  });
});

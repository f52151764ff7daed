import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/core/crypto.ts';
import { describeError } from '../../src/core/error-log.ts';
import { createTestApp, type SignedUpUser, type TestApp, uniqueEmail } from '../support/app.ts';

/**
 * Finding 6 of the security review: a failed statement's error carries its
 * parameters (drizzle puts them in the message) and Postgres's `detail`
 * repeats the row's values, and the server logged the error whole: a
 * password's scrypt hash, token hashes. The server's logger (the production
 * options, captured here) and the CLI's one-line form keep the statement, the
 * code and the constraint, and drop every value.
 */

let t: TestApp;
let owner: SignedUpUser;
const lines: string[] = [];
const log = () => lines.join('');
const PASSWORD = 'log secrets password 42';

beforeAll(async () => {
  t = await createTestApp({ logDestination: { write: (line) => void lines.push(line) } });
  owner = await t.signup({ password: PASSWORD });
});
afterAll(() => t.close());

/** A real driver error: an insert refused by a unique index, its parameters a password hash and secrets. */
async function refusedInsert(hash: string, secretName: string): Promise<unknown> {
  try {
    await t.database.db.execute(
      sql`insert into users (id, email, name, password_hash, created_at, updated_at)
          values (${`usr_${Date.now()}`}, ${owner.user.email}, ${secretName}, ${hash}, now(), now())`,
    );
  } catch (err) {
    return err;
  }
  throw new Error('the insert was not refused');
}

describe('the server log', () => {
  it('masks the token of a path that is a credential (a playbook’s webhook trigger)', async () => {
    lines.length = 0;
    const token = `pbh_${'k'.repeat(43)}`;
    const res = await t.call('POST', `/v1/hooks/playbooks/${token}?x=1`, { body: {} });
    expect(res.status).toBe(404);
    const text = log();
    expect(text).toContain('/v1/hooks/playbooks/…');
    expect(text).not.toContain(token);
  });

  it('keeps a failed statement’s text, code and constraint, and none of its values or pg’s detail', async () => {
    const hash = await hashPassword('a password nobody should read');
    const secretName = 'sk-secret-in-a-param-7781';
    const err = await refusedInsert(hash, secretName);
    // What the driver gives: the values are there to leak.
    expect(String((err as Error).message)).toContain(hash);

    lines.length = 0;
    t.app.log.error({ err }, 'unhandled error');
    const text = log();
    const entry = JSON.parse(lines[0]!);
    expect(entry.msg).toBe('unhandled error');
    expect(text).toContain('insert into users');
    expect(text).toContain('23505');
    expect(text).toContain('users_email_key');
    for (const value of [hash, secretName, owner.user.email, 'scrypt$']) expect(text).not.toContain(value);
    expect(text).not.toMatch(/"params"|params:|"detail"|Key \(/);
  });

  it('cuts the value out of a Postgres message that quotes it', async () => {
    const secret = 'sk-quoted-in-the-message-5531';
    const err = await t.database.db.execute(sql`select ${secret}::uuid`).then(
      () => {
        throw new Error('the cast was not refused');
      },
      (e: unknown) => e,
    );
    expect(JSON.stringify(err, Object.getOwnPropertyNames(err)) + String(err)).toContain(secret);
    lines.length = 0;
    t.app.log.error({ err }, 'unhandled error');
    expect(log()).toContain('invalid input syntax for type uuid');
    expect(log()).not.toContain(secret);
    expect(describeError(err)).not.toContain(secret);
  });

  it('an error logged on its own does not become the line’s message', async () => {
    const hash = await hashPassword('another password');
    const err = await refusedInsert(hash, 'x');
    lines.length = 0;
    t.app.log.error(err as Error);
    expect(lines).toHaveLength(1);
    expect(log()).not.toContain(hash);
    expect(JSON.stringify(JSON.parse(lines[0]!).err)).toContain('"code":"23505"');
  });

  it('the review’s case (signup with a NUL in the name) leaves no password, hash or token in the log', async () => {
    lines.length = 0;
    const email = uniqueEmail('nul-log');
    const password = 'the NUL signup password';
    // Refused before the database now (bad-input.test.ts); the log must hold none of it either way.
    await t.call('POST', '/v1/auth/signup', { body: { email, password, name: 'Eve\u0000' } });
    const text = log();
    expect(text.length).toBeGreaterThan(0);
    expect(text).not.toContain(password);
    expect(text).not.toMatch(/scrypt\$\d+\$/);
    expect(text).not.toMatch(/\b[0-9a-f]{64}\b/);
    expect(text).not.toMatch(/"params"|params:/);
  });
});

describe('the CLI and paddock host', () => {
  it('describe a failed statement by its text and code, without its values', async () => {
    const hash = await hashPassword('cli password');
    const line = describeError(await refusedInsert(hash, 'sk-cli-secret-9913'));
    expect(line).toContain('insert into users');
    expect(line).toContain('code 23505');
    expect(line).not.toContain(hash);
    expect(line).not.toContain('sk-cli-secret-9913');
    expect(line).not.toContain(owner.user.email);
    expect(line).not.toContain('\n');
  });
});

import { expect, it } from 'vitest';
import { PASSWORD_COST, Passwords, verifyPassword } from '../../src/core/crypto.ts';

// Passwords are stored as scrypt$N$r$p$salt$hash. The server's cost is N=2^15,
// r=8, p=1 unless a test asks for less (AppOptions.passwordCost: no setting reaches it).

it('hashes at the server cost by default, each time with a new salt', async () => {
  const passwords = new Passwords();
  const [a, b] = [await passwords.hash('correct horse'), await passwords.hash('correct horse')];
  expect(a).toMatch(/^scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
  expect(PASSWORD_COST).toEqual({ n: 32768, r: 8, p: 1 });
  expect(a).not.toBe(b);
  expect(await passwords.verify('correct horse', a)).toBe(true);
  expect(await passwords.verify('correct horse!', a)).toBe(false);
});

it('verifies a hash by the cost written in it, whatever the cost of the hasher', async () => {
  const cheap = await new Passwords({ n: 1024, r: 8, p: 1 }).hash('pw');
  expect(cheap).toMatch(/^scrypt\$1024\$8\$1\$/);
  expect(await new Passwords().verify('pw', cheap)).toBe(true);
  expect(await verifyPassword('pw', cheap.replace('$1024$', '$2048$'))).toBe(false);
});

it('answers false for an unknown account, after a real comparison', async () => {
  const passwords = new Passwords({ n: 1024, r: 8, p: 1 });
  expect(await passwords.verify('anything', undefined)).toBe(false);
  expect(await passwords.verify('paddock-timing-equaliser', undefined)).toBe(false);
  expect(await verifyPassword('pw', 'bcrypt$whatever')).toBe(false);
});

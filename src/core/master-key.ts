import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The master key seals secrets and keys the token HMAC. From
 * PADDOCK_MASTER_KEY when set; otherwise from `<dataDir>/master.key`, made on
 * first start. Losing it makes every sealed secret and API key unusable.
 */
export function resolveMasterKey(
  configured: Buffer | undefined,
  dataDir: string,
  warn: (message: string) => void,
): Buffer {
  if (configured) return configured;
  const file = path.join(dataDir, 'master.key');
  try {
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
    if (key.length !== 32) throw new Error(`${file} does not hold a 32-byte hex key`);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  warn(
    `PADDOCK_MASTER_KEY is not set: generated a master key in ${file}. ` +
      'Back it up with the database, or set PADDOCK_MASTER_KEY (openssl rand -hex 32) before storing secrets.',
  );
  return key;
}

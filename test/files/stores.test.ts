import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import { DatabaseStore } from '../../src/modules/files/database-store.ts';
import { DataDirStore, type FileStore, FileTooLargeError } from '../../src/modules/files/store.ts';
import { createTestApp, type TestApp } from '../support/app.ts';

let t: TestApp;
let dir: string;

beforeAll(async () => {
  t = await createTestApp();
  dir = mkdtempSync(path.join(tmpdir(), 'paddock-files-'));
});
afterAll(async () => {
  await t.close();
  rmSync(dir, { recursive: true, force: true });
});

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** A source that yields `data` in pieces of `size`, as a socket would. */
function pieces(data: Buffer, size: number): Readable {
  const list: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) list.push(data.subarray(i, i + size));
  return Readable.from(list);
}

describe.each([
  ['data dir', () => new DataDirStore(path.join(dir, 'files'))],
  ['database', () => new DatabaseStore(t.database.db)],
] as Array<[string, () => FileStore]>)('%s store', (_name, make) => {
  it('gives back exactly the bytes written, across chunk boundaries, with their size and SHA-256', async () => {
    const store = make();
    const id = newId('file');
    const data = randomBytes(700_000);
    const stored = await store.write(id, pieces(data, 65_537), 10_000_000);
    expect(stored.sizeBytes).toBe(data.length);
    expect(stored.sha256).toBe((await import('node:crypto')).createHash('sha256').update(data).digest('hex'));
    expect((await bytesOf(store.read(id))).equals(data)).toBe(true);
  });

  it('replaces the bytes on a second write, and keeps an empty file', async () => {
    const store = make();
    const id = newId('file');
    await store.write(id, pieces(randomBytes(300_000), 1000), 10_000_000);
    await store.write(id, Readable.from([]), 10_000_000);
    expect((await bytesOf(store.read(id))).length).toBe(0);
    await store.write(id, Readable.from([Buffer.from('second')]), 10_000_000);
    expect(await text(store.read(id))).toBe('second');
  });

  it('stops past the limit, keeps nothing, and keeps what an earlier write stored', async () => {
    const store = make();
    const fresh = newId('file');
    await expect(store.write(fresh, pieces(randomBytes(5000), 1000), 4096)).rejects.toBeInstanceOf(
      FileTooLargeError,
    );
    await expect(bytesOf(store.read(fresh))).rejects.toThrow();
  });

  it('removes the bytes, and removing twice is no error', async () => {
    const store = make();
    const id = newId('file');
    await store.write(id, Readable.from([Buffer.from('bye')]), 100);
    await store.remove(id);
    await store.remove(id);
    await expect(bytesOf(store.read(id))).rejects.toThrow();
  });
});

describe('data dir store', () => {
  it('leaves no temporary file behind when a write fails', async () => {
    const store = new DataDirStore(path.join(dir, 'tmpcheck'));
    const id = newId('file');
    await expect(store.write(id, pieces(randomBytes(5000), 100), 1000)).rejects.toBeInstanceOf(
      FileTooLargeError,
    );
    const folder = path.join(dir, 'tmpcheck', id.slice(-2));
    expect(readdirSync(folder)).toEqual([]);
  });

  it('refuses a key that is not a file id, so no caller-made path reaches the disk', async () => {
    const store = new DataDirStore(path.join(dir, 'files'));
    expect(() => store.read('file_../../etc/passwd' as never)).toThrow(/not a file id/);
  });
});

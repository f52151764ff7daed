import type { Readable, Writable } from 'node:stream';
import { CorruptArchiveError } from './errors.ts';

// The backup archive is a POSIX tar (ustar, with pax records for names that
// do not fit), gzipped: `tar -tzf` lists one, and any tar extracts it. Only
// what a data dir holds is written or read: files, directories and symbolic
// links. Written by hand rather than with a package: the format's part used
// here is small, and reading it must check every header, since a cut or
// damaged archive has to be refused before anything is put in place.

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

export type EntryType = 'file' | 'dir' | 'symlink';

export interface EntryHeader {
  name: string;
  type: EntryType;
  /** Permission bits (0o7777). */
  mode: number;
  size: number;
  /** A symbolic link's target. */
  linkname?: string;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  // The length counts its own digits.
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length += 1;
  return `${length}${body}`;
}

function needsPax(value: string, limit: number): boolean {
  // ASCII-only fields keep the header readable by every tar.
  return Buffer.byteLength(value) > limit || /[^\x20-\x7e]/.test(value);
}

function header(h: EntryHeader & { typeflag: string }, mtimeSec: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(h.name.slice(0, 100), 0, 100, 'utf8');
  block.write(octal(h.mode & 0o7777, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii');
  block.write(octal(0, 8), 116, 'ascii');
  block.write(octal(h.size, 12), 124, 'ascii');
  block.write(octal(mtimeSec, 12), 136, 'ascii');
  block.write(' '.repeat(8), 148, 'ascii');
  block.write(h.typeflag, 156, 'ascii');
  if (h.linkname) block.write(h.linkname.slice(0, 100), 157, 100, 'utf8');
  block.write('ustar\0', 257, 'ascii');
  block.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

const TYPEFLAG: Record<EntryType, string> = { file: '0', dir: '5', symlink: '2' };

/** Writes tar entries to `out` (a gzip stream, then a file or a socket), waiting when it is full. */
export class TarWriter {
  private readonly mtimeSec: number;

  constructor(
    private readonly out: Writable,
    now: Date,
  ) {
    this.mtimeSec = Math.floor(now.getTime() / 1000);
  }

  private async write(chunk: Buffer): Promise<void> {
    if (!this.out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error) => {
          this.out.off('drain', done);
          this.out.off('error', done);
          if (err) reject(err);
          else resolve();
        };
        this.out.once('drain', done);
        this.out.once('error', done);
      });
    }
  }

  private async head(h: EntryHeader): Promise<void> {
    let records = '';
    if (needsPax(h.name, 100)) records += paxRecord('path', h.name);
    if (h.linkname && needsPax(h.linkname, 100)) records += paxRecord('linkpath', h.linkname);
    if (records) {
      const body = Buffer.from(records);
      await this.write(
        header(
          { name: 'PaxHeader', type: 'file', mode: 0o644, size: body.length, typeflag: 'x' },
          this.mtimeSec,
        ),
      );
      await this.write(body);
      await this.pad(body.length);
    }
    await this.write(header({ ...h, typeflag: TYPEFLAG[h.type] }, this.mtimeSec));
  }

  private async pad(size: number): Promise<void> {
    const rest = size % BLOCK;
    if (rest !== 0) await this.write(Buffer.alloc(BLOCK - rest));
  }

  async file(name: string, data: Buffer, mode = 0o644): Promise<void> {
    await this.head({ name, type: 'file', mode, size: data.length });
    await this.write(data);
    await this.pad(data.length);
  }

  /**
   * A file whose bytes come from `source`, which must yield exactly `size`
   * bytes (the header is written first); `onChunk` sees each (to hash them).
   */
  async fileFrom(
    name: string,
    size: number,
    mode: number,
    source: AsyncIterable<Buffer>,
    onChunk?: (chunk: Buffer) => void,
  ): Promise<void> {
    await this.head({ name, type: 'file', mode, size });
    let written = 0;
    for await (const chunk of source) {
      written += chunk.length;
      if (written > size) break;
      onChunk?.(chunk);
      await this.write(chunk);
    }
    if (written !== size)
      throw new Error(`${name} changed size while it was copied (${size} → ${written} bytes)`);
    await this.pad(size);
  }

  dir(name: string, mode = 0o755): Promise<void> {
    return this.head({ name: name.endsWith('/') ? name : `${name}/`, type: 'dir', mode, size: 0 });
  }

  symlink(name: string, target: string): Promise<void> {
    return this.head({ name, type: 'symlink', mode: 0o777, size: 0, linkname: target });
  }

  /** The end-of-archive marker (two zero blocks); `out` is ended by its owner. */
  finish(): Promise<void> {
    return this.write(ZEROS);
  }
}

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  private buffered: Buffer[] = [];
  private length = 0;
  private readonly chunks: AsyncIterator<Buffer>;
  private ended = false;

  constructor(source: Readable) {
    this.chunks = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  /** Up to `n` bytes (fewer only at the end of the stream). */
  async take(n: number): Promise<Buffer> {
    while (this.length < n && !this.ended) {
      const next = await this.chunks.next();
      if (next.done) this.ended = true;
      else {
        this.buffered.push(next.value);
        this.length += next.value.length;
      }
    }
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  async exactly(n: number, what: string): Promise<Buffer> {
    const got = await this.take(n);
    if (got.length < n) throw new CorruptArchiveError(`the archive ends in the middle of ${what}`);
    return got;
  }
}

function field(block: Buffer, start: number, length: number): string {
  const raw = block.subarray(start, start + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? raw.length : end).toString('utf8');
}

function numberField(block: Buffer, start: number, length: number, what: string): number {
  const text = field(block, start, length).trim();
  if (!/^[0-7]*$/.test(text)) throw new CorruptArchiveError(`a header's ${what} is not a number`);
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    const length = Number(body.subarray(at, space).toString('ascii'));
    if (space === -1 || !Number.isInteger(length) || length <= 0 || at + length > body.length)
      throw new CorruptArchiveError('a pax header is malformed');
    const record = body.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    out[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return out;
}

export interface Entry extends EntryHeader {
  /** The entry's bytes, in chunks; must be read (or skipped) before the next entry. */
  body(): AsyncGenerator<Buffer>;
}

/**
 * The entries of a tar stream, each header's checksum checked. The stream
 * must end with the end-of-archive marker: one cut short is refused.
 */
export async function* readTar(source: Readable): AsyncGenerator<Entry> {
  const reader = new ByteReader(source);
  let pax: Record<string, string> = {};
  for (;;) {
    const block = await reader.exactly(BLOCK, 'a header');
    if (block.every((b) => b === 0)) return;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (numberField(block, 148, 8, 'checksum') !== sum)
      throw new CorruptArchiveError('a header is damaged (its checksum does not match)');
    const typeflag = field(block, 156, 1) || '0';
    const size = numberField(block, 124, 12, 'size');
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'x') {
      pax = parsePax((await reader.exactly(padded, 'a pax header')).subarray(0, size));
      continue;
    }
    const prefix = field(block, 345, 155);
    const name = pax.path ?? (prefix ? `${prefix}/${field(block, 0, 100)}` : field(block, 0, 100));
    const linkname = pax.linkpath ?? field(block, 157, 100);
    pax = {};
    const type: EntryType | undefined =
      typeflag === '0' ? 'file' : typeflag === '5' ? 'dir' : typeflag === '2' ? 'symlink' : undefined;
    if (!type)
      throw new CorruptArchiveError(`${name}: entries of type "${typeflag}" are not in Paddock backups`);
    let consumed = false;
    const body = async function* (): AsyncGenerator<Buffer> {
      consumed = true;
      let left = size;
      while (left > 0) {
        const chunk = await reader.take(Math.min(left, 64 * 1024));
        if (chunk.length === 0) throw new CorruptArchiveError(`the archive ends in the middle of ${name}`);
        left -= chunk.length;
        yield chunk;
      }
      await reader.exactly(padded - size, `${name}'s padding`);
    };
    yield {
      name: type === 'dir' ? name.replace(/\/+$/, '') : name,
      type,
      mode: numberField(block, 100, 8, 'mode') & 0o7777,
      size,
      ...(type === 'symlink' ? { linkname } : {}),
      body,
    };
    if (!consumed) for await (const _ of body()) void _;
  }
}

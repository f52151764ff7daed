import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readBody, UpstreamError } from '../../src/modules/gateway/upstream.ts';

type Body = Parameters<typeof readBody>[0];
const bodyOf = (stream: Readable) => stream as unknown as Body;

describe('readBody (a non-streaming provider answer)', () => {
  it('joins the chunks as UTF-8, a character split across chunks included', async () => {
    const euro = Buffer.from('€', 'utf8');
    const body = Readable.from([
      Buffer.from('{"a":"'),
      euro.subarray(0, 1),
      euro.subarray(1),
      Buffer.from('"}'),
    ]);
    expect(await readBody(bodyOf(body))).toBe('{"a":"€"}');
  });

  it('refuses a body over the limit and stops reading it', async () => {
    const body = Readable.from([Buffer.alloc(600), Buffer.alloc(600)]);
    const err = await readBody(bodyOf(body), 1000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'stream_processing_error' });
    expect(body.destroyed).toBe(true);
  });

  it('rejects with the error a body cut midway fails with', async () => {
    const cut = new Error('other side closed');
    const body = new Readable({ read() {} });
    body.push(Buffer.from('{"partial":'));
    setImmediate(() => body.destroy(cut));
    await expect(readBody(bodyOf(body))).rejects.toBe(cut);
  });

  it('rejects a body that closes before its end as a premature close', async () => {
    const body = new Readable({ read() {} });
    body.push(Buffer.from('{"partial":'));
    setImmediate(() => body.destroy());
    await expect(readBody(bodyOf(body))).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });
});

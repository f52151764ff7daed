import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, fileChunks, files as filesTable } from '../../src/db/schema/index.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { multipart } from '../support/multipart.ts';

const MAX = 64 * 1024;
let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;

beforeAll(async () => {
  t = await createTestApp({ env: { PADDOCK_FILE_MAX_BYTES: String(MAX) } });
  u = await t.signup({ name: 'Fay Files' });
  other = await t.signup({ name: 'Olga Other' });
});
afterAll(async () => {
  await t.close();
});

async function inject(
  method: string,
  url: string,
  token: string | undefined,
  payload?: Buffer,
  contentType?: string,
) {
  return t.app.inject({
    method: method as 'POST',
    url,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(contentType ? { 'content-type': contentType } : {}),
    },
    ...(payload !== undefined ? { payload } : {}),
  });
}

async function upload(data: Buffer, filename = 'data.bin', contentType?: string, token = u.token) {
  const body = multipart({ filename, data, ...(contentType ? { contentType } : {}) });
  return inject('POST', '/v1/files', token, body.payload, body.contentType);
}

/** The upload URL with its token one character off: never the same token (the character is changed, not overwritten). */
function withWrongToken(url: string): string {
  return url.replace(/token=pdu_(.)/, (_m: string, c: string) => `token=pdu_${c === 'X' ? 'Y' : 'X'}`);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every row of the file in any status, and its bytes wherever the store keeps them. */
async function leftovers(id: `file_${string}`) {
  const rows = await t.database.db.select().from(filesTable).where(eq(filesTable.id, id));
  const chunks = await t.database.db.select().from(fileChunks).where(eq(fileChunks.fileId, id));
  const dir = path.join(t.config.dataDir, 'files', id.slice(-2));
  const onDisk = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(id)) : [];
  return { rows: rows.length, chunks: chunks.length, onDisk: onDisk.length };
}

async function allFileIdsOfTeam(teamId: `team_${string}`): Promise<string[]> {
  const rows = await t.database.db.select().from(filesTable).where(eq(filesTable.teamId, teamId));
  return rows.map((r) => r.id);
}

describe('files: multipart upload', () => {
  it('stores the bytes and answers their size and SHA-256; the download is the same bytes', async () => {
    const data = randomBytes(40_000);
    const res = await upload(data, 'report 2026 – été.csv', 'text/csv');
    expect(res.statusCode).toBe(201);
    const file = res.json();
    expect(file).toMatchObject({
      filename: 'report 2026 – été.csv',
      content_type: 'text/csv',
      size_bytes: data.length,
      sha256: sha256(data),
      team_id: u.team.id,
    });
    expect(file.id).toMatch(/^file_/);

    const meta = await t.call('GET', `/v1/files/${file.id}`, { token: u.token });
    expect(meta.body).toEqual(file);
    const listed = await t.call('GET', '/v1/files', { token: u.token });
    expect(listed.body.data.map((f: Json) => f.id)).toContain(file.id);

    const dl = await inject('GET', `/v1/files/${file.id}/content`, u.token);
    expect(dl.statusCode).toBe(200);
    expect(dl.rawPayload.equals(data)).toBe(true);
    expect(dl.headers['content-length']).toBe(String(data.length));
    expect(dl.headers['content-disposition']).toBe(
      `attachment; filename="report 2026 _ _t_.csv"; filename*=UTF-8''${encodeURIComponent('report 2026 – été.csv')}`,
    );
    expect(dl.headers['x-content-type-options']).toBe('nosniff');
    expect(dl.headers['content-security-policy']).toContain('sandbox');
  });

  it('keeps an empty file', async () => {
    const res = await upload(Buffer.alloc(0), 'empty.txt', 'text/plain');
    expect(res.statusCode).toBe(201);
    expect(res.json().size_bytes).toBe(0);
    const dl = await inject('GET', `/v1/files/${res.json().id}/content`, u.token);
    expect(dl.statusCode).toBe(200);
    expect(dl.rawPayload.length).toBe(0);
  });

  it('serves HTML uploads as downloads that cannot run in this origin', async () => {
    const res = await upload(Buffer.from('<script>alert(1)</script>'), 'x.html', 'text/html');
    const dl = await inject('GET', `/v1/files/${res.json().id}/content`, u.token);
    expect(dl.headers['content-disposition']).toMatch(/^attachment;/);
    expect(dl.headers['content-security-policy']).toBe("sandbox; default-src 'none'");
  });

  it('refuses a file over the limit with 413 naming it, and keeps nothing of it', async () => {
    const before = await allFileIdsOfTeam(u.team.id);
    const res = await upload(randomBytes(MAX + 1), 'big.bin');
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toMatchObject({ code: 'file_too_large', details: { max_bytes: MAX } });
    expect(res.json().error.message).toContain(String(MAX));
    const after = await allFileIdsOfTeam(u.team.id);
    expect(after).toEqual(before);
    const chunkRows = await t.database.db.select().from(fileChunks);
    for (const c of chunkRows) expect(before).toContain(c.fileId);
  });

  it('keeps only the last segment of a path-like name, and refuses names that are none, bodies that are not multipart, and a body with no file', async () => {
    // The multipart parser keeps a part's base name, as browsers send it.
    for (const [sent, kept] of [
      ['../etc/passwd', 'passwd'],
      ['a/b.txt', 'b.txt'],
      ['a\\b', 'b'],
    ]) {
      const res = await upload(Buffer.from('x'), sent!);
      expect(res.statusCode, sent).toBe(201);
      expect(res.json().filename, sent).toBe(kept);
    }
    // C0, C1 (U+0085, next line) and format characters (U+202E: "report<U+202E>txt.exe" reads "reportexe.txt").
    for (const filename of [
      '..',
      '.',
      'tab\there',
      'next\u0085line',
      'report\u202Etxt.exe',
      'n'.repeat(256),
    ]) {
      const res = await upload(Buffer.from('x'), filename);
      expect(res.statusCode, filename).toBe(400);
      expect(res.json().error.code, filename).toBe('validation_failed');
    }
    const json = await t.call('POST', '/v1/files', { token: u.token, body: { file: 'x' } });
    expect(json.status).toBe(400);
    expect(json.body.error.code).toBe('multipart_required');
    const noFile = multipart(undefined, { note: 'hello' });
    const res = await inject('POST', '/v1/files', u.token, noFile.payload, noFile.contentType);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('invalid_multipart');
  });

  it('deletes a file: 204, then 404 for its metadata and bytes, and the bytes are gone', async () => {
    const file = (await upload(randomBytes(1000))).json();
    const del = await t.call('DELETE', `/v1/files/${file.id}`, { token: u.token });
    expect(del.status).toBe(204);
    expect((await t.call('GET', `/v1/files/${file.id}`, { token: u.token })).status).toBe(404);
    expect((await inject('GET', `/v1/files/${file.id}/content`, u.token)).statusCode).toBe(404);
    expect(await leftovers(file.id)).toEqual({ rows: 0, chunks: 0, onDisk: 0 });
    const evts = await t.database.db
      .select()
      .from(events)
      .where(eq(events.subjectId, file.id))
      .orderBy(events.id);
    expect(evts.map((e) => e.type)).toEqual(['file.created', 'file.deleted']);
  });

  it('keeps teams apart and agent keys out', async () => {
    const file = (await upload(randomBytes(100))).json();
    for (const [method, url] of [
      ['GET', `/v1/files/${file.id}`],
      ['GET', `/v1/files/${file.id}/content`],
      ['DELETE', `/v1/files/${file.id}`],
    ] as const) {
      const res = await inject(method, url, other.token);
      expect(res.statusCode, `${method} ${url}`).toBe(404);
    }
    const agent = await createAgent(t, u.token);
    const asAgent = await t.call('GET', '/v1/files', { token: agent.api_key });
    expect(asAgent.status).toBe(403);
    const reader = await t.apiKey(u.token, ['read']);
    expect((await upload(randomBytes(10), 'r.bin', undefined, reader.key)).statusCode).toBe(403);
  });

  it('tells which referenced ids are no ready file of the team', async () => {
    const mine = (await upload(randomBytes(10))).json();
    const theirs = (await upload(randomBytes(10), 'x.bin', undefined, other.token)).json();
    const unknown = await t.services.files.unknownFileIds(u.team.id, [mine.id, theirs.id, 'file_nope', 'x']);
    expect(unknown).toEqual([theirs.id, 'file_nope', 'x']);
  });
});

describe('files: prepare → PUT → complete', () => {
  async function prepare(body: Record<string, unknown> = {}) {
    const res = await t.call('POST', '/v1/files/uploads', {
      token: u.token,
      body: { filename: 'large.parquet', ...body },
    });
    if (res.status !== 201) throw new Error(`prepare failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }
  const pathOf = (url: string) => url.slice(url.indexOf('/v1/'));

  it('takes the bytes at the upload URL with no other credential, then completes into a file', async () => {
    const data = randomBytes(50_000);
    const p = await prepare({ content_type: 'application/vnd.apache.parquet', size_bytes: data.length });
    expect(p).toMatchObject({ max_bytes: MAX });
    expect(p.upload_url).toMatch(/^http:\/\/.+\/v1\/files\/uploads\/file_\w+\?token=pdu_/);
    expect(new Date(p.expires_at).getTime()).toBe(t.clock.now().getTime() + 3600_000);

    const early = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('upload_incomplete');
    // Not listed while not complete.
    const listedEarly = await t.call('GET', '/v1/files', { token: u.token });
    expect(listedEarly.body.data.map((f: Json) => f.id)).not.toContain(p.upload_id);

    const put = await inject('PUT', pathOf(p.upload_url), undefined, data, 'application/octet-stream');
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()).toEqual({
      upload_id: p.upload_id,
      status: 'uploaded',
      size_bytes: data.length,
      sha256: sha256(data),
    });

    const done = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(done.status).toBe(201);
    expect(done.body).toMatchObject({
      id: p.upload_id,
      filename: 'large.parquet',
      content_type: 'application/vnd.apache.parquet',
      size_bytes: data.length,
    });
    const again = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(done.body);
    const dl = await inject('GET', `/v1/files/${p.upload_id}/content`, u.token);
    expect(dl.rawPayload.equals(data)).toBe(true);

    // The URL stops working once the upload is completed.
    const late = await inject('PUT', pathOf(p.upload_url), undefined, data, 'application/octet-stream');
    expect(late.statusCode).toBe(404);
  });

  it('takes a body of any content type, or none', async () => {
    const p = await prepare();
    const put = await inject(
      'PUT',
      pathOf(p.upload_url),
      undefined,
      Buffer.from('{"a":1}'),
      'application/json',
    );
    expect(put.statusCode).toBe(200);
    expect(put.json().size_bytes).toBe(7);
    const p2 = await prepare();
    const empty = await inject('PUT', pathOf(p2.upload_url), undefined);
    expect(empty.statusCode).toBe(200);
    expect(empty.json().size_bytes).toBe(0);
  });

  it('refuses a prepared name with control or format characters (400)', async () => {
    for (const filename of ['next\u0085line', 'report\u202Etxt.exe', 'del\u007f', 'tab\there']) {
      const res = await t.call('POST', '/v1/files/uploads', { token: u.token, body: { filename } });
      expect(res.status, JSON.stringify(filename)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
  });

  /** A PUT's body that sends `first`, then waits until `end` gives its last bytes (or fails, as a client gone away). */
  function heldBody(first: Buffer) {
    let end!: (last: Buffer | Error) => void;
    const last = new Promise<Buffer | Error>((resolve) => {
      end = resolve;
    });
    let firstTaken!: () => void;
    const writing = new Promise<void>((resolve) => {
      firstTaken = resolve;
    });
    async function* source() {
      yield first;
      firstTaken();
      const rest = await last;
      if (rest instanceof Error) throw rest;
      yield rest;
    }
    return { source: source(), writing, end };
  }
  const tokenOf = (url: string) => new URL(url).searchParams.get('token')!;

  it('lets one PUT at a time write an upload, on any server; complete meanwhile is 409 upload_in_progress', async () => {
    const p = await prepare();
    const first = await inject('PUT', pathOf(p.upload_url), undefined, Buffer.from('first bytes'));
    expect(first.statusCode).toBe(200);

    const held = heldBody(Buffer.from('second '));
    const second = t.services.files.receive(p.upload_id, tokenOf(p.upload_url), held.source);
    await held.writing;
    const early = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('upload_in_progress');
    const here = await inject('PUT', pathOf(p.upload_url), undefined, Buffer.from('third'));
    expect(here.statusCode).toBe(409);
    expect(here.json().error.code).toBe('upload_in_progress');
    // Another server on the same database: it has no memory of this PUT, only the row.
    const next = await createTestApp({ shareWith: t });
    try {
      const there = await next.app.inject({
        method: 'PUT',
        url: pathOf(p.upload_url),
        payload: Buffer.from('from elsewhere'),
      });
      expect(there.statusCode).toBe(409);
      expect(there.json().error.code).toBe('upload_in_progress');
    } finally {
      await next.close();
    }
    // A wrong token still learns nothing.
    const wrong = pathOf(withWrongToken(p.upload_url));
    expect((await inject('PUT', wrong, undefined, Buffer.from('x'))).statusCode).toBe(404);

    held.end(Buffer.from('bytes'));
    expect(await second).toMatchObject({ size_bytes: 'second bytes'.length });
    const done = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(done.status).toBe(201);
    const dl = await inject('GET', `/v1/files/${p.upload_id}/content`, u.token);
    expect(dl.body).toBe('second bytes');
  });

  it('keeps no bytes of a PUT that fails after one that succeeded: complete is 409 upload_incomplete until a retry', async () => {
    const p = await prepare();
    expect((await inject('PUT', pathOf(p.upload_url), undefined, randomBytes(1000))).statusCode).toBe(200);
    // Uploaded but not complete: not downloadable.
    expect((await inject('GET', `/v1/files/${p.upload_id}/content`, u.token)).statusCode).toBe(404);
    const big = await inject('PUT', pathOf(p.upload_url), undefined, randomBytes(MAX + 1));
    expect(big.statusCode).toBe(413);
    expect(await leftovers(p.upload_id)).toEqual({ rows: 1, chunks: 0, onDisk: 0 });
    const complete = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(complete.status).toBe(409);
    expect(complete.body.error.code).toBe('upload_incomplete');
    expect((await inject('GET', `/v1/files/${p.upload_id}/content`, u.token)).statusCode).toBe(404);

    // A client that goes away mid-PUT, after a PUT that succeeded: the same.
    expect((await inject('PUT', pathOf(p.upload_url), undefined, randomBytes(1000))).statusCode).toBe(200);
    const held = heldBody(randomBytes(500));
    const aborted = t.services.files.receive(p.upload_id, tokenOf(p.upload_url), held.source);
    await held.writing;
    held.end(new Error('the client went away'));
    await expect(aborted).rejects.toThrow('the client went away');
    const again = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('upload_incomplete');

    const data = randomBytes(2000);
    expect((await inject('PUT', pathOf(p.upload_url), undefined, data)).statusCode).toBe(200);
    const done = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(done.status).toBe(201);
    const dl = await inject('GET', `/v1/files/${p.upload_id}/content`, u.token);
    expect(dl.rawPayload.equals(data)).toBe(true);
  });

  it('answers a wrong token like an unknown upload (404), and an expired one with 410', async () => {
    const p = await prepare();
    const wrong = withWrongToken(p.upload_url);
    expect((await inject('PUT', pathOf(wrong), undefined, Buffer.from('x'))).statusCode).toBe(404);
    const noToken = await inject('PUT', `/v1/files/uploads/${p.upload_id}`, undefined, Buffer.from('x'));
    expect(noToken.statusCode).toBe(400);

    const q = await prepare();
    t.clock.advance(3600_000);
    const expired = await inject('PUT', pathOf(q.upload_url), undefined, Buffer.from('x'));
    expect(expired.statusCode).toBe(410);
    expect(expired.json().error.code).toBe('upload_expired');
    const complete = await t.call('POST', `/v1/files/uploads/${q.upload_id}/complete`, { token: u.token });
    expect(complete.status).toBe(410);
  });

  it('refuses bytes that do not match the announced size (400) and keeps the upload open for a retry', async () => {
    const p = await prepare({ size_bytes: 10 });
    const short = await inject('PUT', pathOf(p.upload_url), undefined, Buffer.from('12345'));
    expect(short.statusCode).toBe(400);
    expect(short.json().error).toMatchObject({
      code: 'size_mismatch',
      details: { expected_bytes: 10, received_bytes: 5 },
    });
    const complete = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: u.token });
    expect(complete.status).toBe(409);
    const retry = await inject('PUT', pathOf(p.upload_url), undefined, Buffer.from('0123456789'));
    expect(retry.statusCode).toBe(200);
  });

  it('refuses a size over the limit at prepare, and bytes over it at the PUT (413)', async () => {
    const big = await t.call('POST', '/v1/files/uploads', {
      token: u.token,
      body: { filename: 'big.bin', size_bytes: MAX + 1 },
    });
    expect(big.status).toBe(413);
    const p = await prepare();
    const res = await inject('PUT', pathOf(p.upload_url), undefined, randomBytes(MAX + 1));
    expect(res.statusCode).toBe(413);
    expect(res.json().error.code).toBe('file_too_large');
    expect((await leftovers(p.upload_id)).chunks).toBe(0);
    expect((await leftovers(p.upload_id)).onDisk).toBe(0);
  });

  it('does not let another team complete or see an upload', async () => {
    const p = await prepare();
    await inject('PUT', pathOf(p.upload_url), undefined, Buffer.from('abc'));
    const theirs = await t.call('POST', `/v1/files/uploads/${p.upload_id}/complete`, { token: other.token });
    expect(theirs.status).toBe(404);
  });

  it('sweeps uploads never completed a day after their last change, bytes and all', async () => {
    const p = await prepare();
    await inject('PUT', pathOf(p.upload_url), undefined, randomBytes(300));
    // One whose PUT never ended (its server stopped mid-write): still 'writing'.
    const q = await prepare();
    await inject('PUT', pathOf(q.upload_url), undefined, randomBytes(300));
    await t.database.db.update(filesTable).set({ status: 'writing' }).where(eq(filesTable.id, q.upload_id));
    expect(await leftovers(p.upload_id)).toMatchObject({ rows: 1 });
    t.clock.advance(23 * 3600_000);
    await t.services.files.sweepAbandoned();
    expect(await leftovers(p.upload_id)).toMatchObject({ rows: 1 });
    expect(await leftovers(q.upload_id)).toMatchObject({ rows: 1 });
    t.clock.advance(2 * 3600_000);
    await t.services.files.sweepAbandoned();
    expect(await leftovers(p.upload_id)).toEqual({ rows: 0, chunks: 0, onDisk: 0 });
    expect(await leftovers(q.upload_id)).toEqual({ rows: 0, chunks: 0, onDisk: 0 });
  });
});

describe('files: changing the store', () => {
  it('keeps files written under the earlier PADDOCK_FILE_STORE readable, and writes new ones to the new store', async () => {
    // Earlier tests moved the clock past the first user's session: a new one.
    const owner = await t.signup({ name: 'Sal Store' });
    const before = (await upload(Buffer.from('kept where it was'), 'old.txt', undefined, owner.token)).json();
    const [oldRow] = await t.database.db.select().from(filesTable).where(eq(filesTable.id, before.id));
    const other = oldRow!.store === 'database' ? 'data_dir' : 'database';
    const next = await createTestApp({ shareWith: t, env: { PADDOCK_FILE_STORE: other } });
    try {
      const dl = await next.app.inject({
        method: 'GET',
        url: `/v1/files/${before.id}/content`,
        headers: { authorization: `Bearer ${owner.token}` },
      });
      expect(dl.statusCode).toBe(200);
      expect(dl.body).toBe('kept where it was');
      const body = multipart({ filename: 'new.txt', data: Buffer.from('new') });
      const res = await next.app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { authorization: `Bearer ${owner.token}`, 'content-type': body.contentType },
        payload: body.payload,
      });
      expect(res.statusCode).toBe(201);
      const [newRow] = await t.database.db.select().from(filesTable).where(eq(filesTable.id, res.json().id));
      expect(newRow!.store).toBe(other);
    } finally {
      await next.close();
    }
  });
});

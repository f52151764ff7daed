import { readFile, writeFile } from 'node:fs/promises';
import openapiTS, { astToString } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.ts';

// The SDK's types are generated from the server's own OpenAPI document and kept in the
// repository, so a client compiles against the API of the commit it is in. This test fails
// when they are stale; `npm run sdk:generate` (this test with PADDOCK_SDK_WRITE=1) writes them.

const SCHEMA_FILE = new URL('../../sdk/src/schema.d.ts', import.meta.url);
const HEADER = `// Generated from Paddock's /v1/openapi.json by \`npm run sdk:generate\`. Do not edit.\n\n`;

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('the SDK types', () => {
  it('match the server OpenAPI document', async () => {
    const res = await t.call('GET', '/v1/openapi.json');
    expect(res.status).toBe(200);
    const generated = HEADER + astToString(await openapiTS(res.body, { alphabetize: true }));
    if (process.env.PADDOCK_SDK_WRITE) await writeFile(SCHEMA_FILE, generated);
    const committed = await readFile(SCHEMA_FILE, 'utf8').catch(() => '');
    // Compared by line so that a failure names the first route that moved.
    expect(committed.split('\n'), 'sdk/src/schema.d.ts is stale: run `npm run sdk:generate`').toEqual(
      generated.split('\n'),
    );
  });
});

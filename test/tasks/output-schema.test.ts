import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { BUILT_IN_TOOLS } from '../../src/modules/agents/definition.ts';
import {
  checkOutputSchema,
  MAX_SCHEMA_BYTES,
  MAX_SCHEMA_DEPTH,
  VALIDATE_TIMEOUT_MS,
  validateResult,
} from '../../src/modules/tasks/output-schema.ts';
import { toolDefinitions } from '../../src/modules/tasks/tool-definitions.ts';

// A task's output_schema (JSON Schema draft 2020-12): refused when it cannot
// be used, results checked against it with messages a model can act on, and
// offered to the model as submit_result's parameters.

const report = {
  type: 'object',
  properties: {
    summary: { type: 'string', minLength: 1 },
    score: { type: 'integer', minimum: 0, maximum: 10 },
    verdict: { enum: ['pass', 'fail'] },
    items: { type: 'array', items: { $ref: '#/$defs/item' } },
  },
  required: ['summary', 'verdict'],
  additionalProperties: false,
  $defs: {
    item: {
      type: 'object',
      properties: { name: { type: 'string' }, 'due-date': { type: 'string', format: 'date' } },
      required: ['name'],
    },
  },
};

describe('checkOutputSchema', () => {
  it('accepts a draft 2020-12 schema, with or without its $schema', () => {
    expect(checkOutputSchema(report)).toBeNull();
    expect(
      checkOutputSchema({ $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'string' }),
    ).toBeNull();
    expect(checkOutputSchema({ type: 'array', prefixItems: [{ type: 'number' }], items: false })).toBeNull();
  });

  it('names what is wrong with a schema it refuses', () => {
    expect(checkOutputSchema('string')).toBe('output_schema must be a JSON Schema object');
    expect(checkOutputSchema([{ type: 'string' }])).toBe('output_schema must be a JSON Schema object');
    expect(checkOutputSchema({ type: 'strnig' })).toMatch(
      /^output_schema is not a valid JSON Schema: at \/type: must be one of "array", "boolean"/,
    );
    expect(checkOutputSchema({ type: 'object', tpye: 'string' })).toBe(
      'output_schema cannot be used: strict mode: unknown keyword: "tpye"',
    );
    expect(checkOutputSchema({ type: 'string', format: 'colour' })).toMatch(/unknown format "colour"/);
    expect(checkOutputSchema({ type: 'string', pattern: '(' })).toMatch(
      /^output_schema cannot be used: .*Invalid regular expression/,
    );
    expect(checkOutputSchema({ $ref: 'https://example.com/schema.json' })).toBe(
      "output_schema cannot be used: can't resolve reference https://example.com/schema.json from id #",
    );
    expect(checkOutputSchema({ $ref: '#/$defs/missing' })).toMatch(
      /can't resolve reference #\/\$defs\/missing/,
    );
    expect(checkOutputSchema({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'string' })).toBe(
      "output_schema's $schema must be https://json-schema.org/draft/2020-12/schema (JSON Schema draft 2020-12), or left out",
    );
  });

  it('refuses huge and deeply nested schemas', () => {
    const huge = { type: 'object', description: 'x'.repeat(MAX_SCHEMA_BYTES) };
    expect(checkOutputSchema(huge)).toBe(`output_schema is over ${MAX_SCHEMA_BYTES} bytes as JSON`);
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < MAX_SCHEMA_DEPTH; i++) deep = { type: 'array', items: deep };
    expect(checkOutputSchema(deep)).toBe(`output_schema is nested more than ${MAX_SCHEMA_DEPTH} levels deep`);
  });

  it('takes two schemas with the same $id one after the other', () => {
    const a = { $id: 'https://example.com/result', type: 'string' };
    const b = { $id: 'https://example.com/result', type: 'number' };
    expect(checkOutputSchema(a)).toBeNull();
    expect(checkOutputSchema(b)).toBeNull();
    expect(validateResult(a, 'x')).toEqual({ ok: true });
    expect(validateResult(b, 2)).toEqual({ ok: true });
    expect(validateResult(b, 'x').ok).toBe(false);
  });
});

describe('validateResult', () => {
  it('accepts a result that matches', () => {
    const result = {
      summary: 'ok',
      score: 7,
      verdict: 'pass',
      items: [{ name: 'a', 'due-date': '2026-12-03' }],
    };
    expect(validateResult(report, result)).toEqual({ ok: true });
  });

  it('says which fields are wrong and how, for the model to submit again', () => {
    const r = validateResult(report, {
      score: 11,
      verdict: 'maybe',
      items: [{ 'due-date': 'tomorrow' }],
      extra: true,
    });
    expect(r).toEqual({
      ok: false,
      message:
        "The result does not match the task's output schema: result.summary is required; " +
        'result.extra is not allowed; result.score must be <= 10; result.verdict must be one of "pass", "fail"; ' +
        'result.items[0].name is required; result.items[0]["due-date"] must match format "date". ' +
        'Call submit_result again with a corrected result.',
    });
    expect(validateResult({ type: 'string' }, 42)).toEqual({
      ok: false,
      message:
        "The result does not match the task's output schema: result must be string. Call submit_result again with a corrected result.",
    });
  });

  it('lists at most ten problems', () => {
    const many = { type: 'array', items: { type: 'integer' } };
    const r = validateResult(
      many,
      Array.from({ length: 15 }, (_, i) => `n${i}`),
    );
    expect(r.ok).toBe(false);
    expect((r as { message: string }).message).toContain('result[9] must be integer; and 5 more.');
  });

  it('gives up on a pattern that backtracks without end, rather than holding the server', () => {
    const schema = { type: 'string', pattern: '^(a+)+$' };
    expect(checkOutputSchema(schema)).toBeNull();
    const started = Date.now();
    const r = validateResult(schema, `${'a'.repeat(40)}b`);
    expect(Date.now() - started).toBeLessThan(VALIDATE_TIMEOUT_MS + 2000);
    expect(r).toEqual({
      ok: false,
      message: expect.stringMatching(
        /^The result could not be checked against the task's output schema within 1000 ms/,
      ),
    });
    // The same schema checks other results as before.
    expect(validateResult(schema, 'aaaa')).toEqual({ ok: true });
    expect(validateResult(schema, 'ab').ok).toBe(false);
  });
});

describe('toolDefinitions', () => {
  it('gives each built-in tool in the Chat Completions format', () => {
    const defs = toolDefinitions(BUILT_IN_TOOLS);
    expect(defs.map((d) => d.function.name)).toEqual([...BUILT_IN_TOOLS]);
    for (const d of defs) {
      expect(d.type).toBe('function');
      expect(d.function.description.length).toBeGreaterThan(20);
      expect(new Ajv2020({ strict: true }).validateSchema(d.function.parameters)).toBe(true);
    }
    expect(defs[0]!.function.parameters).toEqual({
      type: 'object',
      required: ['command'],
      properties: {
        command: { type: 'string', minLength: 1, maxLength: 100_000, description: 'a bash command line' },
        timeout_sec: expect.objectContaining({ type: 'integer', minimum: 1 }),
      },
      additionalProperties: false,
    });
    expect(toolDefinitions(['read_file', 'submit_result']).map((d) => d.function.name)).toEqual([
      'read_file',
      'submit_result',
    ]);
  });

  it('makes submit_result’s result the output schema, its references still resolving', () => {
    const [submit] = toolDefinitions(['submit_result'], {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      ...report,
      properties: { ...report.properties, enum: { $ref: '#/$defs/item' }, self: { $ref: '#' } },
    });
    const parameters = submit!.function.parameters as Record<string, unknown>;
    const result = (parameters.properties as Record<string, Record<string, unknown>>).result!;
    expect(result.$schema).toBeUndefined();
    expect(result.properties).toMatchObject({
      items: { items: { $ref: '#/properties/result/$defs/item' } },
      enum: { $ref: '#/properties/result/$defs/item' },
      self: { $ref: '#/properties/result' },
    });
    // The tool's parameters, as a schema of their own, check a call's arguments as the output schema would.
    const check = new Ajv2020({ strict: false }).compile(parameters);
    expect(check({ result: { summary: 's', verdict: 'pass', items: [{ name: 'a' }] } })).toBe(true);
    expect(check({ result: { summary: 's', verdict: 'pass', items: [{}] } })).toBe(false);
    expect(check({})).toBe(false);
  });
});

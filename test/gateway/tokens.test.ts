import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { ManualTimers } from '../../src/core/context.ts';
import {
  CONSERVATIVE_FACTOR,
  encodingOf,
  PromptTokens,
  TokenBacklog,
} from '../../src/modules/gateway/tokens.ts';

const timers = new ManualTimers();
const backlog = new TokenBacklog(timers);

async function counted(body: Record<string, unknown>) {
  const p = new PromptTokens(body, backlog);
  await p.load([{ provider: 'openai', model: 'gpt-4' }]);
  return p;
}

describe('input tokens before the call', () => {
  it('picks the tokenizer by model family, none for Claude or unknown models', () => {
    expect(encodingOf('openai', 'gpt-4o-mini')).toBe('o200k_base');
    expect(encodingOf('openai', 'o3-mini')).toBe('o200k_base');
    expect(encodingOf('openai_compatible', 'openai/gpt-5')).toBe('o200k_base');
    expect(encodingOf('openai', 'gpt-4-turbo')).toBe('cl100k_base');
    expect(encodingOf('anthropic', 'gpt-4o')).toBeUndefined();
    expect(encodingOf('openai_compatible', 'llama3.1:8b')).toBeUndefined();
  });

  it('counts at least what the tokenizer counts for the text, and the factor more for other models', async () => {
    const text = 'Refactor the parser so that it streams; keep the public API. 🦊 漢字 0x7f3a9b2c';
    const p = await counted({ system: 'You are terse.', messages: [{ role: 'user', content: text }] });
    const exact = countTokens(text) + countTokens('You are terse.');
    const openai = p.for('openai', 'gpt-4o');
    expect(openai).toBeGreaterThanOrEqual(exact);
    // Only the JSON around it on top: a few tokens a key and value.
    expect(openai).toBeLessThan(exact + 20);
    expect(p.for('anthropic', 'claude-opus-4-1')).toBeGreaterThanOrEqual(CONSERVATIVE_FACTOR * exact);
    expect(p.max()).toBe(p.for('anthropic', 'claude-opus-4-1'));
  });

  it('a long string it has no time for counts as its UTF-8 bytes (never fewer tokens), and is learnt for the next call', async () => {
    const text = 'déjà vu '.repeat(4000);
    const first = (await counted({ messages: [{ role: 'user', content: text }] })).for('openai', 'gpt-4o');
    expect(first).toBeGreaterThanOrEqual(Buffer.byteLength(text));
    // Tokenized in the background, a slice per timer turn: nothing until the timers run.
    expect((await counted({ messages: [{ role: 'user', content: text }] })).for('openai', 'gpt-4o')).toBe(
      first,
    );
    await timers.advance(0);
    const next = (await counted({ messages: [{ role: 'user', content: text }] })).for('openai', 'gpt-4o');
    expect(next).toBeGreaterThanOrEqual(countTokens(text));
    expect(next).toBeLessThan(first);
  });

  it('many short new strings share the per-request budget: past it they count as bytes, and are learnt', async () => {
    // Distinct strings, so no cache helps: tokenizing them all would hold the server's thread.
    const lines = Array.from({ length: 400 }, (_, i) => `line ${i}: ${'the quick brown fox '.repeat(9)}${i}`);
    const body = { messages: lines.map((content) => ({ role: 'user', content })) };
    const exact = lines.reduce((n, l) => n + countTokens(l), 0);
    const bytes = lines.reduce((n, l) => n + Buffer.byteLength(l), 0);
    const first = (await counted(body)).for('openai', 'gpt-4o');
    expect(first).toBeGreaterThanOrEqual(exact);
    // Most of them were not tokenized on the request's path.
    expect(first).toBeGreaterThan(exact + (bytes - exact) / 2);
    await timers.advance(0);
    const next = (await counted(body)).for('openai', 'gpt-4o');
    expect(next).toBeGreaterThanOrEqual(exact);
    // Each message adds its JSON around the text: a few tokens for role, user and content.
    expect(next).toBeLessThan(exact + 10 * lines.length);
    expect(next).toBeLessThan(first);
  });

  it('counts the legacy functions too', async () => {
    const functions = [{ name: 'lookup', description: 'Looks a word up. '.repeat(50), parameters: {} }];
    const without = (await counted({ messages: [] })).for('openai', 'gpt-4o');
    const withFunctions = (await counted({ messages: [], functions })).for('openai', 'gpt-4o');
    expect(withFunctions - without).toBeGreaterThanOrEqual(countTokens(functions[0]!.description));
  });

  it('a run without spaces is counted in pieces, not as one pre-token', async () => {
    const run = 'ab'.repeat(2000);
    const p = await counted({ messages: [{ role: 'user', content: run }] });
    expect(p.for('openai', 'gpt-4o')).toBeGreaterThanOrEqual(countTokens(run));
  });

  it('base64 payloads count at 4 characters a token, not through the tokenizer', async () => {
    const data = 'QUJD'.repeat(50_000);
    const p = await counted({
      messages: [
        {
          role: 'user',
          content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${data}` } }],
        },
      ],
    });
    const n = p.for('openai', 'gpt-4o');
    expect(n).toBeGreaterThanOrEqual(Math.ceil(data.length / 4));
    expect(n).toBeLessThan(Math.ceil(data.length / 4) + 50);
  });
});

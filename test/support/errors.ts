import { expect } from 'vitest';
import type { CallResult } from './app.ts';

/**
 * Every error is `{error: {code, message, details?}}` and says nothing about
 * the server's insides: no stack frames, no exception class names.
 */
export function expectError(res: CallResult, status: number, code: string): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(String(res.headers['content-type'])).toContain('application/json');
  expect(Object.keys(res.body)).toEqual(['error']);
  const { error } = res.body;
  expect(error.code).toBe(code);
  expect(typeof error.message).toBe('string');
  expect(error.message.length).toBeGreaterThan(0);
  for (const key of Object.keys(error)) expect(['code', 'message', 'details']).toContain(key);
  const text = JSON.stringify(res.body);
  expect(text).not.toMatch(/\bat \S+ \(.*:\d+:\d+\)/); // "at fn (file:line:col)"
  expect(text).not.toMatch(/\bat (file|node):/);
  expect(text).not.toMatch(/\.ts:\d+/);
  expect(text).not.toMatch(/"stack"/);
  expect(error.message).not.toMatch(/\b\w*Error:/);
  expect(error.message).not.toMatch(/FST_/);
}

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_VALUE_LENGTH } from '../../src/modules/sandboxes/envs.ts';
import { SecretRedactor, StreamRedactor } from '../../src/modules/secrets/redact.ts';

const TOKEN = { name: 'API_TOKEN', value: 'tok-3f9a8b7c6d5e4f' };
const PASS = { name: 'DB_PASSWORD', value: 'p@ss word/with&odd"chars\\' };

describe('SecretRedactor', () => {
  const r = new SecretRedactor([TOKEN, PASS]);

  it('replaces a value as it is, wherever it appears', () => {
    expect(r.redact(`token=${TOKEN.value}; again ${TOKEN.value}.`)).toBe(
      'token=[secret:API_TOKEN]; again [secret:API_TOKEN].',
    );
  });

  it('replaces the URL-encoded, form-encoded and JSON-escaped forms', () => {
    expect(r.redact(`https://x.test/?p=${encodeURIComponent(PASS.value)}`)).toBe(
      'https://x.test/?p=[secret:DB_PASSWORD]',
    );
    expect(r.redact(`p=${encodeURIComponent(PASS.value).replace(/%20/g, '+')}`)).toBe(
      'p=[secret:DB_PASSWORD]',
    );
    expect(r.redact(JSON.stringify({ password: PASS.value }))).toBe('{"password":"[secret:DB_PASSWORD]"}');
  });

  it('finds the value base64-encoded inside longer data at every byte alignment', () => {
    for (const prefix of ['', 'x', 'xy', 'Authorization: Basic user:']) {
      for (const suffix of ['', '!', '\n']) {
        const data = Buffer.from(`${prefix}${TOKEN.value}${suffix}`);
        for (const encoding of ['base64', 'base64url'] as const) {
          const encoded = data.toString(encoding);
          const out = r.redact(`output: ${encoded}`);
          expect(out, `${encoding} of ${JSON.stringify(prefix + TOKEN.value + suffix)}`).toContain(
            '[secret:API_TOKEN]',
          );
          // What is left of the encoding no longer decodes to the value.
          expect(Buffer.from(out.replace('[secret:API_TOKEN]', ''), encoding).toString()).not.toContain(
            TOKEN.value,
          );
        }
      }
    }
  });

  it('leaves text without secrets alone, and a redactor with no secrets changes nothing', () => {
    const text = 'nothing to hide here: tok-3f9a8b7c, p@ss';
    expect(r.redact(text)).toBe(text);
    const none = new SecretRedactor([]);
    expect(none.empty).toBe(true);
    expect(none.redact(`${TOKEN.value}`)).toBe(TOKEN.value);
  });

  it('replaces a value that contains another secret’s value whole, under its own name', () => {
    const inner = { name: 'INNER', value: 'abcd1234' };
    const outer = { name: 'OUTER', value: 'xx-abcd1234-yy' };
    const both = new SecretRedactor([inner, outer]);
    expect(both.redact('a xx-abcd1234-yy b abcd1234')).toBe('a [secret:OUTER] b [secret:INNER]');
  });

  it('replaces lower-case percent-hex, Python quote and quote_plus, and JSON with \\u escapes', () => {
    // As Python 3 prints them: urllib.parse.quote(v), quote_plus(v), json.dumps(v).
    expect(r.redact('p=p%40ss%20word%2fwith%26odd%22chars%5c')).toBe('p=[secret:DB_PASSWORD]');
    expect(r.redact('/p%40ss%20word/with%26odd%22chars%5C/')).toBe('/[secret:DB_PASSWORD]/');
    expect(r.redact('q=p%40ss+word%2Fwith%26odd%22chars%5C&')).toBe('q=[secret:DB_PASSWORD]&');
    const odd = new SecretRedactor([{ name: 'ODD', value: "o'k(1)*!/é 😀" }]);
    expect(odd.redact('/a/o%27k%281%29%2A%21/%C3%A9%20%F0%9F%98%80')).toBe('/a/[secret:ODD]');
    expect(odd.redact('{"v": "o\'k(1)*!/\\u00e9 \\ud83d\\ude00"}')).toBe('{"v": "[secret:ODD]"}');
  });

  it('replaces overlapping values as one stretch named after both, in order of appearance', () => {
    const a = { name: 'A', value: 'abcd1234' };
    const b = { name: 'B', value: '1234wxyz' };
    const both = new SecretRedactor([b, a]);
    expect(both.redact('x abcd1234wxyz y')).toBe('x [secret:A,B] y');
    expect(both.redact('1234wxyz abcd1234')).toBe('[secret:B] [secret:A]');
    // A value overlapping itself: the whole run goes.
    const self = new SecretRedactor([{ name: 'S', value: 'abab' }]);
    expect(self.redact('-ababababa-')).toBe('-[secret:S]a-');
    expect(self.redact('-abab-abab-')).toBe('-[secret:S]-[secret:S]-');
  });

  it('handles values of the largest allowed size, one or twenty at once', () => {
    const big = (i: number) => ({
      name: `BIG_${i}`,
      // Characters that every encoding changes, and some it keeps.
      value: `${i}é/+ &${randomBytes(MAX_VALUE_LENGTH).toString('base64')}`.slice(0, MAX_VALUE_LENGTH),
    });
    const one = big(0);
    const single = new SecretRedactor([one]);
    expect(single.redact(`<${one.value}>`)).toBe('<[secret:BIG_0]>');
    const many = Array.from({ length: 20 }, (_, i) => big(i));
    const r20 = new SecretRedactor(many);
    const text = many
      .map((s, i) =>
        i % 2 === 0 ? `${s.name}=${s.value}` : `${s.name}=${Buffer.from(`x${s.value}`).toString('base64')}`,
      )
      .join('\n');
    const out = r20.redact(text);
    for (const s of many) {
      expect(out).toContain(`[secret:${s.name}]`);
      expect(out).not.toContain(s.value.slice(4, 40));
    }
  });

  it('treats regular-expression characters in a value literally', () => {
    const special = ['.*+?^$', '{}()|[]\\'].join('');
    const odd = new SecretRedactor([{ name: 'ODD', value: special }]);
    expect(odd.redact(`a${special}b and abc`)).toBe('a[secret:ODD]b and abc');
  });
});

describe('StreamRedactor', () => {
  it('replaces a value split across chunks, and what it emits joins to the whole redacted text', () => {
    const r = new SecretRedactor([TOKEN, PASS]);
    const text = `start ${TOKEN.value} middle ${PASS.value} and ${Buffer.from(`k=${TOKEN.value}`).toString('base64')} end`;
    const expected = r.redact(text);
    for (const size of [1, 2, 3, 5, 7, 16, 1000]) {
      const s = new StreamRedactor(r);
      let out = '';
      for (let i = 0; i < text.length; i += size) {
        const piece = s.push(text.slice(i, i + size));
        expect(piece).not.toContain(TOKEN.value);
        out += piece;
      }
      out += s.end();
      expect(out, `chunks of ${size}`).toBe(expected);
    }
  });

  it('emits text without secrets with at most the longest form held back', () => {
    const r = new SecretRedactor([TOKEN]);
    const s = new StreamRedactor(r);
    const emitted = s.push('x'.repeat(100));
    expect(emitted.length).toBeGreaterThanOrEqual(100 - (r.longest - 1));
    expect(emitted + s.end()).toBe('x'.repeat(100));
  });

  it('replaces the rest of a value that overlaps one already sent', () => {
    const r = new SecretRedactor([
      { name: 'A', value: 'abcd1234' },
      { name: 'B', value: '1234wxyz' },
    ]);
    for (const size of [1, 2, 3, 5, 10, 100]) {
      const text = 'go abcd1234wxyz end';
      const s = new StreamRedactor(r);
      let out = '';
      for (let i = 0; i < text.length; i += size) out += s.push(text.slice(i, i + size));
      out += s.end();
      expect(out, `chunks of ${size}`).toMatch(/^go (\[secret:A,B\]|\[secret:A\]\[secret:B\]) end$/);
    }
  });
});

/**
 * Checks on caller-given text that no schema can express. Postgres refuses
 * NUL (U+0000) in text and jsonb, and a lone UTF-16 surrogate is not Unicode
 * at all (jsonb refuses its escape, UTF-8 cannot encode it): both would fail
 * deep inside a statement, so they are refused where input arrives. Nesting
 * is bounded on the raw text, before anything recursive (a parser's reviver,
 * Ajv, a serializer, a walk like the one below) can exhaust the stack.
 */

/** Deepest nesting of arrays and objects a JSON body may have. */
export const MAX_JSON_DEPTH = 64;

/** Most bad fields listed in one answer. */
const MAX_LISTED = 20;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what this looks for
const UNSAFE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// In JSON text both can only arrive escaped (the body is decoded as UTF-8, which has no surrogates,
// and a raw control character is a syntax error), so text without such an escape needs no walk.
const UNSAFE_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;

/** True when JSON text nests arrays and objects deeper than `limit` (strings are skipped). */
export function jsonNestingExceeds(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Jump to the closing quote: the next one not escaped by an odd run of backslashes.
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return false; // unterminated: the parser says so
        let backslashes = 0;
        while (text.charCodeAt(i - 1 - backslashes) === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break;
      }
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** Why a string may not be stored, or undefined when it may. */
export function unsafeTextReason(text: string): string | undefined {
  const m = UNSAFE.exec(text);
  if (!m) return undefined;
  return m[0] === '\u0000'
    ? 'must not contain the NUL character (U+0000)'
    : 'must not contain an unpaired UTF-16 surrogate (not valid Unicode)';
}

/** Whether parsed JSON text can hold NUL or a lone surrogate at all (a cheap test on the raw text). */
export function jsonMayHoldUnsafeText(text: string): boolean {
  return UNSAFE_ESCAPE.test(text);
}

/**
 * The fields of a parsed JSON value whose strings or keys hold NUL or a lone
 * surrogate, named as validation errors name them (`metadata.team`,
 * `messages.0.content`); `root` names the value itself. Empty when all is well.
 * Recursive: call it only on values whose nesting is already bounded.
 */
export function unsafeTextFields(value: unknown, root = 'body'): Record<string, string> {
  const fields: Record<string, string> = Object.create(null);
  let listed = 0;
  const visit = (v: unknown, path: string): void => {
    if (listed >= MAX_LISTED) return;
    if (typeof v === 'string') {
      const reason = unsafeTextReason(v);
      if (reason) {
        fields[path || root] = reason;
        listed++;
      }
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) visit(v[i], path ? `${path}.${i}` : String(i));
    } else if (v !== null && typeof v === 'object') {
      for (const [key, child] of Object.entries(v)) {
        const keyReason = unsafeTextReason(key);
        // The key is named with its bad characters replaced, so the answer itself stays valid text.
        const name = keyReason ? key.replace(new RegExp(UNSAFE.source, 'g'), '\uFFFD') : key;
        const childPath = path ? `${path}.${name}` : name;
        if (keyReason) {
          fields[childPath] = `is a key that ${keyReason}`;
          listed++;
        }
        visit(child, childPath);
      }
    }
  };
  visit(value, '');
  return fields;
}

const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');

/**
 * `value` with NUL and lone surrogates replaced by U+FFFD in every string and
 * key, for a jsonb column (Postgres refuses both); the same object when it
 * holds none. For content Paddock passes on but did not refuse: a prompt or a
 * provider's answer.
 */
export function storableText<T>(value: T): T {
  if (typeof value === 'string')
    return (UNSAFE.test(value) ? value.replace(UNSAFE_ALL, '\uFFFD') : value) as T;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = storableText(value[i]);
      if (v === value[i]) continue;
      copy ??= [...value];
      copy[i] = v;
    }
    return (copy ?? value) as T;
  }
  if (value !== null && typeof value === 'object') {
    let copy: Record<string, unknown> | undefined;
    for (const [key, child] of Object.entries(value)) {
      const k = storableText(key);
      const v = storableText(child);
      if (k === key && v === child) continue;
      copy ??= { ...(value as Record<string, unknown>) };
      if (k !== key) delete copy[key];
      copy[k] = v;
    }
    return (copy ?? value) as T;
  }
  return value;
}

import type { OpenedSecret } from './service.ts';

/** Encoded forms shorter than this are left out: they would match ordinary text. */
const MIN_FORM_CHARS = 4;

/** One encoded form of a value, searched for literally. */
interface Form {
  text: string;
  name: string;
  /** The form's smallest period: an occurrence overlapping the one before starts this far on. */
  period: number;
}

/** A stretch of text to replace, and the secrets found in it in order of appearance. */
export interface Span {
  start: number;
  end: number;
  names: string[];
}

/**
 * Replaces every secret value in a text with `[secret:NAME]`: the value as it
 * is; JSON-escaped, also with non-ASCII characters as `\uXXXX` (Python's
 * json.dumps); URL-encoded as encodeURIComponent, Python's `quote` (which
 * keeps `/`) and `quote_plus` do it, with upper- or lower-case hex and with
 * `+` for spaces; and in base64 and base64url at each of the three byte
 * alignments a value can have inside a longer encoded blob (only the
 * characters that depend on the value alone are matched, so `echo -n
 * "x$SECRET" | base64` is caught too).
 *
 * Each form is searched for literally (no regular expression, so no size
 * limit). Overlapping finds are replaced as one stretch named after every
 * secret in it, `[secret:A,B]`; a value found inside a longer one is named by
 * the longer one only. The runner applies it to tool output before the output
 * is stored, streamed or sent to the model.
 */
export class SecretRedactor {
  private readonly forms: Form[] = [];
  /** The longest form, in characters: a stream must hold back one less than this. */
  readonly longest: number;

  constructor(secrets: readonly OpenedSecret[]) {
    const seen = new Set<string>();
    for (const secret of secrets) {
      for (const text of formsOf(secret.value)) {
        // Two secrets with the same value: either name is right; the first keeps it.
        if (seen.has(text)) continue;
        seen.add(text);
        this.forms.push({ text, name: secret.name, period: smallestPeriod(text) });
      }
    }
    this.longest = Math.max(0, ...this.forms.map((f) => f.text.length));
  }

  get empty(): boolean {
    return this.forms.length === 0;
  }

  redact(text: string): string {
    return this.replace(text, 0, text.length);
  }

  /**
   * Where a text may be cut for streaming: every find that starts before the
   * returned index ends at or before it. Holds back at most `longest - 1`
   * characters.
   */
  safeCut(text: string): number {
    return this.cutFor(text, this.spans(text, 0));
  }

  /** safeCut, given the text's spans. */
  cutFor(text: string, spans: readonly Span[]): number {
    let cut = Math.max(0, text.length - Math.max(0, this.longest - 1));
    for (const span of spans) {
      if (span.start >= cut) break;
      cut = Math.max(cut, span.end);
    }
    return cut;
  }

  /**
   * `text` from `from` to `to`, redacted. A find that starts before `from`
   * (already emitted by a stream) and reaches past it has its rest replaced,
   * named after the secrets that reach past `from`. No find may cross `to`.
   */
  replace(text: string, from: number, to: number, spans = this.spans(text, from)): string {
    let out = '';
    let at = from;
    for (const span of spans) {
      if (span.start >= to) break;
      out += `${text.slice(at, span.start)}[secret:${span.names.join(',')}]`;
      at = span.end;
    }
    return out + text.slice(at, to);
  }

  /** Every find in `text`, cut to start at `from` at the earliest, merged where they overlap, in order. */
  spans(text: string, from: number): Span[] {
    const found: { start: number; end: number; name: string }[] = [];
    for (const form of this.forms) {
      const length = form.text.length;
      const tail = form.text.slice(length - form.period);
      for (let i = text.indexOf(form.text); i !== -1; ) {
        // A periodic form repeats: extend by whole periods instead of searching again at i + 1.
        let end = i + length;
        while (form.period < length && text.startsWith(tail, end)) end += form.period;
        if (end > from) found.push({ start: Math.max(i, from), end, name: form.name });
        // Finds that start before end - length + 1 lie inside this one.
        i = text.indexOf(form.text, end - length + 1);
      }
    }
    found.sort((a, b) => a.start - b.start || b.end - a.end);
    const spans: Span[] = [];
    for (const f of found) {
      const last = spans.at(-1);
      if (last === undefined || f.start >= last.end) {
        spans.push({ start: f.start, end: f.end, names: [f.name] });
      } else if (f.end > last.end) {
        last.end = f.end;
        if (!last.names.includes(f.name)) last.names.push(f.name);
      }
    }
    return spans;
  }
}

/**
 * Redacts a stream of text chunks: a value split across two chunks is still
 * replaced. `push` returns what can be sent now; `end` returns the rest. The
 * last `longest - 1` characters already sent are kept (not sent again) so that
 * a find overlapping the previous piece has its rest replaced too (an overlap
 * of two secrets cut at a piece boundary is then named in two parts).
 */
export class StreamRedactor {
  /** The raw text held: the first `sent` characters have been emitted. */
  private text = '';
  private sent = 0;

  constructor(private readonly redactor: SecretRedactor) {}

  push(chunk: string): string {
    return this.emit(this.text + chunk, false);
  }

  end(): string {
    const rest = this.emit(this.text, true);
    this.text = '';
    this.sent = 0;
    return rest;
  }

  private emit(text: string, all: boolean): string {
    const spans = this.redactor.spans(text, this.sent);
    const cut = all ? text.length : Math.max(this.sent, this.redactor.cutFor(text, spans));
    const out = this.redactor.replace(text, this.sent, cut, spans);
    const keep = Math.max(0, cut - Math.max(0, this.redactor.longest - 1));
    this.text = text.slice(keep);
    this.sent = cut - keep;
    return out;
  }
}

function formsOf(value: string): Set<string> {
  const forms = new Set<string>([value]);
  const json = JSON.stringify(value).slice(1, -1);
  forms.add(json);
  // Python's json.dumps (ensure_ascii): DEL and every UTF-16 unit past ASCII as \uXXXX.
  forms.add(json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  // encodeURIComponent; Python's quote (keeps "/") and quote_plus (spaces as "+").
  for (const encoded of [encodeURIComponent(value), pythonQuote(value, '/'), pythonQuote(value, '')]) {
    for (const cased of [encoded, encoded.replace(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase())]) {
      forms.add(cased);
      forms.add(cased.replace(/%20/g, '+'));
    }
  }
  const bytes = Buffer.from(value, 'utf8');
  for (let align = 0; align < 3; align++) {
    const padded = Buffer.concat([Buffer.alloc(align), bytes]);
    // Characters wholly made of the value's bits: from the first after the
    // alignment bytes to the last before the value ends.
    const from = Math.ceil((8 * align) / 6);
    const to = Math.floor((8 * padded.length) / 6);
    for (const encoding of ['base64', 'base64url'] as const) {
      const core = padded.toString(encoding).slice(from, to);
      if (core.length >= MIN_FORM_CHARS) forms.add(core);
    }
  }
  return forms;
}

/** Python's urllib.parse.quote: all but letters, digits, "_.-~" and `safe` percent-encoded. */
function pythonQuote(value: string, safe: string): string {
  return encodeURIComponent(value).replace(/[!'()*]|%2F/g, (c) =>
    c === '%2F' ? (safe.includes('/') ? '/' : c) : `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** The smallest p with form[i] === form[i + p] for every i (the length when there is none shorter). */
function smallestPeriod(form: string): number {
  // Knuth–Morris–Pratt: border[i] is the longest proper border of form[0..i].
  const border = new Int32Array(form.length);
  for (let i = 1, k = 0; i < form.length; i++) {
    while (k > 0 && form[i] !== form[k]) k = border[k - 1]!;
    if (form[i] === form[k]) k++;
    border[i] = k;
  }
  return form.length - (border[form.length - 1] ?? 0);
}

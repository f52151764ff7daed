import type { OpenedSecret } from './service.ts';

/** Encoded forms shorter than this are left out: they would match ordinary text. */
const MIN_FORM_CHARS = 4;

/**
 * Replaces every secret value in a text with `[secret:NAME]`: the value as it
 * is, JSON-escaped, URL-encoded (both encodeURIComponent's and a form's `+`
 * for spaces), and in base64 and base64url at each of the three byte
 * alignments a value can have inside a longer encoded blob (only the
 * characters that depend on the value alone are matched, so `echo -n
 * "x$SECRET" | base64` is caught too). The runner applies it to tool output
 * before the output is stored, streamed or sent to the model.
 */
export class SecretRedactor {
  private readonly pattern: RegExp | null;
  private readonly nameOf = new Map<string, string>();
  /** The longest form, in characters: a stream must hold back one less than this. */
  readonly longest: number;

  constructor(secrets: readonly OpenedSecret[]) {
    for (const secret of secrets) {
      for (const form of formsOf(secret.value)) {
        // Two secrets with the same value: either name is right; the first keeps it.
        if (!this.nameOf.has(form)) this.nameOf.set(form, secret.name);
      }
    }
    // Longer forms first, so a value that contains another secret's value is replaced whole.
    const forms = [...this.nameOf.keys()].sort((a, b) => b.length - a.length);
    this.longest = forms[0]?.length ?? 0;
    this.pattern = forms.length === 0 ? null : new RegExp(forms.map(escapeRegExp).join('|'), 'g');
  }

  get empty(): boolean {
    return this.pattern === null;
  }

  redact(text: string): string {
    if (this.pattern === null || text === '') return text;
    return text.replace(this.pattern, (form) => `[secret:${this.nameOf.get(form)}]`);
  }

  /**
   * Where a text may be cut for streaming: every match that starts before the
   * returned index ends at or before it. Holds back `longest - 1` characters.
   */
  safeCut(text: string): number {
    if (this.pattern === null) return text.length;
    let cut = Math.max(0, text.length - (this.longest - 1));
    this.pattern.lastIndex = 0;
    for (let m = this.pattern.exec(text); m !== null; m = this.pattern.exec(text)) {
      if (m.index >= cut) break;
      cut = Math.max(cut, m.index + m[0].length);
    }
    this.pattern.lastIndex = 0;
    return cut;
  }
}

/**
 * Redacts a stream of text chunks: a value split across two chunks is still
 * replaced. `push` returns what can be sent now; `end` returns the rest.
 */
export class StreamRedactor {
  private carry = '';

  constructor(private readonly redactor: SecretRedactor) {}

  push(chunk: string): string {
    const text = this.carry + chunk;
    const cut = this.redactor.safeCut(text);
    this.carry = text.slice(cut);
    return this.redactor.redact(text.slice(0, cut));
  }

  end(): string {
    const rest = this.redactor.redact(this.carry);
    this.carry = '';
    return rest;
  }
}

function formsOf(value: string): Set<string> {
  const forms = new Set<string>([value]);
  forms.add(JSON.stringify(value).slice(1, -1));
  const uri = encodeURIComponent(value);
  forms.add(uri);
  forms.add(uri.replace(/%20/g, '+'));
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

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

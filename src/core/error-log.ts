/**
 * What an error may say in a log. Database errors carry the values they were
 * given: drizzle's message ends with the statement's parameters (password
 * hashes, token hashes, sealed secrets), Postgres's `detail` repeats a row or
 * a key ("Key (email)=(…) already exists") and some of its messages quote the
 * value they refused. So only named fields are kept — the type, a message
 * with values cut out, the SQLSTATE code, the constraint, table and column,
 * the statement text (placeholders, not values) and the stack frames — and
 * the same for each cause. Every logger Paddock makes uses this.
 */
export interface LoggedError {
  type: string;
  message: string;
  code?: string | number;
  status_code?: number;
  constraint?: string;
  table?: string;
  column?: string;
  statement?: string;
  stack?: string;
  cause?: LoggedError;
}

const MAX_CAUSES = 4;
const MAX_STATEMENT_CHARS = 2000;
const MAX_MESSAGE_CHARS = 1000;

export function serializeError(err: unknown, depth = 0, parentStatement?: string): LoggedError {
  if (!(err instanceof Error)) {
    // A thrown non-error could hold anything: say only what kind of thing it was.
    return { type: err === null ? 'null' : typeof err, message: 'a non-Error value was thrown' };
  }
  const fields = err as Error & Record<string, unknown>;
  // Some classes (drizzle's DrizzleQueryError) keep the generic name: their class says more.
  const className = err.constructor?.name;
  const type = err.name && err.name !== 'Error' ? err.name : className || 'Error';
  // One line, however the statement was written; drivers repeat it on the cause.
  const statement =
    typeof fields.query === 'string'
      ? clip(fields.query.replace(/\s+/g, ' ').trim(), MAX_STATEMENT_CHARS)
      : undefined;
  const message = safeMessage(err.message, statement !== undefined);
  const out: LoggedError = { type, message };
  if (typeof fields.code === 'string' || typeof fields.code === 'number') out.code = fields.code;
  if (typeof fields.statusCode === 'number') out.status_code = fields.statusCode;
  for (const key of ['constraint', 'table', 'column'] as const) {
    if (typeof fields[key] === 'string') out[key] = fields[key] as string;
  }
  if (statement !== undefined && statement !== parentStatement) out.statement = statement;
  const frames = stackFrames(err.stack);
  if (frames) out.stack = `${type}: ${message}\n${frames}`;
  const cause = fields.cause ?? (Array.isArray(fields.errors) ? fields.errors[0] : undefined);
  if (cause !== undefined && depth < MAX_CAUSES)
    out.cause = serializeError(cause, depth + 1, statement ?? parentStatement);
  return out;
}

/** One line for text logs (the CLI, `paddock host`): the same fields as serializeError, no stack. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: LoggedError | undefined = serializeError(err); e; e = e.cause) {
    const extra = [
      e.code !== undefined ? `code ${e.code}` : undefined,
      e.constraint ? `constraint ${e.constraint}` : undefined,
      e.statement ? `statement: ${e.statement}` : undefined,
    ].filter(Boolean);
    parts.push(`${e.type}: ${e.message}${extra.length > 0 ? ` (${extra.join('; ')})` : ''}`);
  }
  return parts.join(' <- caused by ');
}

function safeMessage(message: string, hasStatement: boolean): string {
  let text = String(message ?? '');
  // drizzle: "Failed query: <statement>\nparams: <values>"; the statement is logged on its own.
  const paramsAt = text.search(/\n\s*params:/);
  if (paramsAt >= 0) text = text.slice(0, paramsAt);
  if (hasStatement && text.startsWith('Failed query:')) text = 'Failed query';
  return clip(redactQuotedValues(text), MAX_MESSAGE_CHARS);
}

/**
 * Postgres quotes refused values after a colon (`invalid input syntax for type
 * uuid: "…"`) or after "value" (`value "…" is out of range`); names of
 * constraints, columns and relations, quoted elsewhere, stay.
 */
function redactQuotedValues(text: string): string {
  return text
    .replace(/(:\s*)"(?:[^"]|"")*"/g, '$1"[redacted]"')
    .replace(/\bvalue\s+"(?:[^"]|"")*"/gi, 'value "[redacted]"');
}

function stackFrames(stack: string | undefined): string | undefined {
  if (!stack) return undefined;
  const frames = stack.split('\n').filter((line) => /^\s+at /.test(line));
  return frames.length > 0 ? frames.join('\n') : undefined;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

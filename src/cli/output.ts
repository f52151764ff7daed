// How commands print: JSON alone with --json (for scripts), else tables and
// key/value lines for people. Progress goes to stderr, so stdout carries only
// what a command answers.

type Row = Record<string, unknown>;
export type Column = [header: string, value: (row: Row) => unknown];

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value.replace(/\s+/g, ' ');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

export function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A list as aligned columns; an empty list says so. */
export function printTable(rows: readonly unknown[], columns: Column[], empty = 'nothing here'): void {
  if (rows.length === 0) {
    process.stderr.write(`(${empty})\n`);
    return;
  }
  const cells = rows.map((row) => columns.map(([, value]) => cell(value(row as Row))));
  const widths = columns.map(([header], i) => Math.max(header.length, ...cells.map((c) => c[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(columns.map(([header]) => header.toUpperCase()))}\n`);
  for (const c of cells) process.stdout.write(`${line(c)}\n`);
}

/**
 * A list page as the API answered it: JSON alone with --json, else its rows as a
 * table, and on stderr how to ask for the next page when there is one.
 */
export function printPage(
  page: { data: readonly unknown[]; next_cursor?: string | null },
  columns: Column[],
  flags: { json?: boolean },
  empty: string,
): void {
  if (flags.json) {
    printJson(page);
    return;
  }
  printTable(page.data, columns, empty);
  if (page.next_cursor) process.stderr.write(`(more: the same command with --cursor ${page.next_cursor})\n`);
}

/** One object as `key: value` lines, in the order of `fields` (or all of its fields). */
export function printDetails(object: unknown, fields?: string[]): void {
  const row = object as Row;
  const keys = fields ?? Object.keys(row);
  const width = Math.max(...keys.map((k) => k.length));
  for (const key of keys) {
    if (!(key in row)) continue;
    const value = row[key];
    const text = typeof value === 'object' && value !== null ? JSON.stringify(value) : cell(value);
    process.stdout.write(`${`${key}:`.padEnd(width + 2)}${text}\n`);
  }
}

export function formatUsd(usd: unknown): string {
  if (typeof usd !== 'number') return '';
  return usd === 0 ? '$0' : usd < 0.01 ? `$${usd.toFixed(6)}` : `$${usd.toFixed(4)}`;
}

/**
 * A one-line spinner on stderr for a terminal: `update` changes its words,
 * `print` writes a line above it. Off a terminal it prints nothing of its own.
 */
export class Spinner {
  private static readonly FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  private frame = 0;
  private text = '';
  private timer: NodeJS.Timeout | undefined;
  private shown = false;

  constructor(private readonly enabled: boolean) {}

  update(text: string): void {
    this.text = text;
    if (!this.enabled) return;
    this.timer ??= setInterval(() => this.draw(), 80);
    this.draw();
  }

  /** Writes `text` to `stream` with the spinner out of the way; it is drawn again on its next tick. */
  print(text: string, stream: NodeJS.WritableStream = process.stderr): void {
    this.clear();
    stream.write(text);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  private draw(): void {
    // 0 where the terminal has not said its size.
    const columns = process.stderr.columns || 80;
    const frame = Spinner.FRAMES[this.frame++ % Spinner.FRAMES.length];
    process.stderr.write(`\r\x1b[2K${clip(`${frame} ${this.text}`, columns - 1)}`);
    this.shown = true;
  }

  private clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[2K');
    this.shown = false;
  }
}

import path from 'node:path';
import type { Static } from 'typebox';
import { CapsuleRefused, type ToolCapsule, type ToolExecResult } from './tool-capsule.ts';
import {
  type ARGUMENTS,
  type BuiltInTool,
  DEFAULT_BASH_TIMEOUT_SEC,
  GREP_LINE_CHARS,
  GREP_MAX_LINES,
  GREP_TIMEOUT_SEC,
  isBuiltIn,
  LIST_DEPTH,
  LIST_MAX_ENTRIES,
  OUTPUT_LIMIT_CHARS,
  parseArguments,
  READ_LIMIT_BYTES,
  WORKSPACE,
} from './tool-definitions.ts';

export {
  CapsuleGone,
  CapsuleRefused,
  type ToolCapsule,
  type ToolExecResult,
  type ToolFileEntry,
} from './tool-capsule.ts';

// The built-in tools a task's agent calls, run in its capsule. The model's
// arguments are untrusted text: they are parsed and checked (tool-definitions.ts), and every
// command runs inside the capsule with an argument vector (bash as
// `timeout … bash -c <command>`, grep with its pattern after -e), never
// through a shell on the host. submit_result is the runner's (it ends the task).

export interface ToolCall {
  name: string;
  /** The raw JSON text the model sent. */
  arguments: string;
}

export interface ToolContext {
  /** The task's secrets: environment variables of the processes bash starts in the capsule, nothing else. */
  envs: Record<string, string>;
  /** The longest a command may run; bash's timeout_sec is capped at it. */
  maxTimeoutSec: number;
}

export interface ToolOutcome {
  /** false: the tool failed or was refused (the model is told why); a command that exited non-zero too. */
  ok: boolean;
  /** What goes back to the model, cut at OUTPUT_LIMIT_CHARS with a note saying so. */
  output: string;
  /** The whole output, when `output` was cut. */
  full?: string;
  /** bash and grep: the command's exit code. */
  exitCode?: number;
  /** The call could not run as sent (arguments not JSON, wrong fields): it counts towards malformed_tool_calls. */
  malformed?: boolean;
}

// -- running ---------------------------------------------------------------------------

/** Relative paths are relative to /workspace; `..` cannot leave the capsule (its file API stops at its root). */
export function inWorkspace(p: string | undefined): string {
  return path.posix.resolve(WORKSPACE, p ?? '.');
}

function failed(output: string): ToolOutcome {
  return { ok: false, output };
}

/** Cuts `text` to the model's limit (or a lower one): its head only (a file), or its head and tail (a command's output). */
export function cutOutput(
  text: string,
  keep: 'head' | 'head_and_tail',
  hint = '',
  limit = OUTPUT_LIMIT_CHARS,
): { output: string; full?: string } {
  if (text.length <= limit) return { output: text };
  if (keep === 'head') {
    const head = text.slice(0, limit);
    return {
      output: `${head}\n[cut here: showing the first ${limit} of ${text.length} characters${hint}]`,
      full: text,
    };
  }
  const headChars = Math.floor(limit * 0.6);
  const tailChars = limit - headChars;
  const cut = text.length - headChars - tailChars;
  return {
    output: `${text.slice(0, headChars)}\n[… ${cut} characters cut here: showing the first ${headChars} and the last ${tailChars} of ${text.length}${hint} …]\n${text.slice(-tailChars)}`,
    full: text,
  };
}

function decodeOutput(r: ToolExecResult): { stdout: string; stderr: string } {
  if (r.encoding !== 'base64') return { stdout: r.stdout, stderr: r.stderr };
  // Not UTF-8: shown with replacement characters rather than as base64 the model would have to decode.
  return {
    stdout: Buffer.from(r.stdout, 'base64').toString('utf8'),
    stderr: Buffer.from(r.stderr, 'base64').toString('utf8'),
  };
}

/** After the timeout's SIGTERM, the command's process group has this long before SIGKILL. */
const KILL_AFTER_SEC = 3;

async function bash(capsule: ToolCapsule, args: Static<typeof ARGUMENTS.bash>, ctx: ToolContext) {
  const timeoutSec = Math.max(1, Math.min(args.timeout_sec ?? DEFAULT_BASH_TIMEOUT_SEC, ctx.maxTimeoutSec));
  // coreutils' timeout runs bash in a process group of its own and signals the whole group, so
  // what the command started (`sleep` below a `bash -c`) stops with it; the host's own timeout,
  // which kills only the process it started, is the backstop.
  const r = await capsule.exec({
    cmd: 'timeout',
    args: [`--kill-after=${KILL_AFTER_SEC}`, String(timeoutSec), 'bash', '-c', args.command],
    envs: ctx.envs,
    cwd: WORKSPACE,
    timeoutSec: timeoutSec + KILL_AFTER_SEC + 5,
  });
  // timeout answers 124 (137 once it had to SIGKILL); a command's own 124 comes before the time is up.
  const timedOut =
    r.timed_out || ((r.exit_code === 124 || r.exit_code === 137) && r.duration_ms >= timeoutSec * 1000 - 50);
  const { stdout, stderr } = decodeOutput(r);
  const notes = [
    timedOut ? `timed out after ${timeoutSec} s and was killed` : '',
    r.truncated ? 'the output was over the capsule’s limit and is cut at it' : '',
    r.encoding === 'base64' ? 'the output is not valid UTF-8: shown with replacement characters' : '',
  ].filter(Boolean);
  const text = [
    `exit code: ${r.exit_code}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
    `stdout:${stdout === '' ? ' (empty)' : `\n${stdout}`}`,
    `stderr:${stderr === '' ? ' (empty)' : `\n${stderr}`}`,
  ].join('\n');
  const hint = '; redirect the output to a file and read it in parts to see more';
  return {
    ok: r.exit_code === 0 && !timedOut,
    exitCode: r.exit_code,
    ...cutOutput(text, 'head_and_tail', hint),
  };
}

/** The file as text, or why not (binary). `partial`: only its start was read. */
function asText(data: Buffer, file: string, partial: boolean): { text: string } | { refused: string } {
  if (!data.subarray(0, 8192).includes(0)) {
    try {
      // A start cut at the read limit may end inside a character: stream mode leaves that one out.
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(data, { stream: partial }) };
    } catch {
      // not UTF-8: below
    }
  }
  return {
    refused: `${file} is a binary file (not UTF-8 text); it is not shown. Use bash to inspect it (e.g. file ${file}, or xxd ${file} | head).`,
  };
}

async function readText(capsule: ToolCapsule, file: string) {
  const data = await capsule.readFile(file, READ_LIMIT_BYTES);
  const whole = data.length <= READ_LIMIT_BYTES;
  return { whole, ...asText(whole ? data : data.subarray(0, READ_LIMIT_BYTES), file, !whole) };
}

async function readFileTool(capsule: ToolCapsule, args: Static<typeof ARGUMENTS.read_file>) {
  const file = inWorkspace(args.path);
  const r = await readText(capsule, file);
  if ('refused' in r) return failed(r.refused);
  if (r.text === '') return { ok: true, output: `(${file} is empty)` };
  const more = r.whole
    ? ''
    : `\n[the file is longer than ${READ_LIMIT_BYTES} bytes: only its start was read]`;
  const hint = `; use bash (e.g. sed -n '400,800p' ${file}) to read other parts`;
  const cut = cutOutput(r.text + more, 'head', hint);
  return { ok: true, ...cut };
}

async function writeFileTool(capsule: ToolCapsule, args: Static<typeof ARGUMENTS.write_file>) {
  const file = inWorkspace(args.path);
  const data = Buffer.from(args.content, 'utf8');
  await capsule.writeFile(file, data);
  return { ok: true, output: `wrote ${data.length} bytes to ${file}` };
}

function occurrences(text: string, part: string): number[] {
  const at: number[] = [];
  for (let i = text.indexOf(part); i !== -1; i = text.indexOf(part, i + part.length)) at.push(i);
  return at;
}

async function editFileTool(capsule: ToolCapsule, args: Static<typeof ARGUMENTS.edit_file>) {
  const file = inWorkspace(args.path);
  const r = await readText(capsule, file);
  if ('refused' in r) return failed(r.refused);
  if (!r.whole) return failed(`${file} is over ${READ_LIMIT_BYTES} bytes: edit it with bash (e.g. sed -i).`);
  const found = occurrences(r.text, args.old_text);
  if (found.length === 0) {
    return failed(
      `old_text was not found in ${file}. Read the file again and copy the text exactly, whitespace and line breaks included.`,
    );
  }
  if (found.length > 1) {
    return failed(
      `old_text occurs ${found.length} times in ${file}; include more of the surrounding text so that it matches exactly one place.`,
    );
  }
  const at = found[0]!;
  // Sliced, not String.replace: a "$&" in new_text must stay as it is.
  const edited = r.text.slice(0, at) + args.new_text + r.text.slice(at + args.old_text.length);
  await capsule.writeFile(file, Buffer.from(edited, 'utf8'));
  const line = r.text.slice(0, at).split('\n').length;
  return { ok: true, output: `replaced 1 occurrence in ${file} (at line ${line})` };
}

async function listFilesTool(capsule: ToolCapsule, args: Static<typeof ARGUMENTS.list_files>) {
  const dir = inWorkspace(args.path);
  const entries = await capsule.list(dir, LIST_DEPTH);
  if (entries.length === 0) return { ok: true, output: `${dir} is empty` };
  const prefix = dir === '/' ? '/' : `${dir}/`;
  const lines = entries.slice(0, LIST_MAX_ENTRIES).map((e) => {
    const name = e.path.startsWith(prefix) ? e.path.slice(prefix.length) : e.path;
    const type = e.type === 'directory' ? 'dir' : e.type === 'symlink' ? 'link' : e.type;
    const size = e.type === 'file' ? String(e.size) : '-';
    return `${type.padEnd(5)} ${size.padStart(10)}  ${name}${e.type === 'directory' ? '/' : ''}`;
  });
  const more =
    entries.length > LIST_MAX_ENTRIES
      ? [`[${entries.length - LIST_MAX_ENTRIES} more entries not shown: list a subdirectory]`]
      : [];
  const text = [`${dir} (type, size in bytes, path; ${LIST_DEPTH} levels deep):`, ...lines, ...more].join(
    '\n',
  );
  return { ok: true, ...cutOutput(text, 'head') };
}

async function grepTool(capsule: ToolCapsule, args: Static<typeof ARGUMENTS.grep>, ctx: ToolContext) {
  const target = inWorkspace(args.path);
  const timeoutSec = Math.max(1, Math.min(GREP_TIMEOUT_SEC, ctx.maxTimeoutSec));
  // Run from the capsule's root with the path relative to it (the process driver, which does not
  // isolate, maps a cwd into the capsule but not an argument), then shown absolute again. The
  // pattern goes after -e and the path after --: neither is ever taken as an option.
  const relative = target === '/' ? '.' : target.slice(1);
  const r = await capsule.exec({
    cmd: 'grep',
    // -D skip: a FIFO named as the path would block grep until its timeout.
    args: ['-rnIH', '-E', '-D', 'skip', '--exclude-dir=.git', '-e', args.pattern, '--', relative],
    cwd: '/',
    timeoutSec,
  });
  const decoded = decodeOutput(r);
  const stdout = decoded.stdout;
  const stderr =
    relative === '.' ? decoded.stderr : decoded.stderr.replaceAll(`grep: ${relative}`, `grep: ${target}`);
  if (r.timed_out) {
    return {
      ok: false,
      exitCode: r.exit_code,
      output: `grep timed out after ${timeoutSec} s: search a smaller path`,
    };
  }
  // Each line starts with the path as given (`workspace/src/a.c:3:…`, `./etc/hosts:1:…`).
  const lines = stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => `/${l.startsWith('./') ? l.slice(2) : l}`);
  // grep: 0 found, 1 nothing found, 2 an error (a bad pattern, a missing path), maybe with matches too.
  if (lines.length === 0) {
    if (r.exit_code === 1)
      return { ok: true, exitCode: 1, output: `no matches for ${JSON.stringify(args.pattern)} in ${target}` };
    return {
      ok: false,
      exitCode: r.exit_code,
      output: `grep failed (exit code ${r.exit_code}): ${stderr.trim()}`,
    };
  }
  const shown = lines
    .slice(0, GREP_MAX_LINES)
    .map((l) => (l.length > GREP_LINE_CHARS ? `${l.slice(0, GREP_LINE_CHARS)} [line cut]` : l));
  const notes = [
    lines.length > GREP_MAX_LINES || r.truncated
      ? `[${r.truncated ? 'more than ' : ''}${lines.length} matching lines; the first ${GREP_MAX_LINES} are shown: narrow the pattern or the path]`
      : '',
    stderr.trim() === '' ? '' : `grep also said: ${stderr.trim()}`,
  ].filter(Boolean);
  return { ok: true, exitCode: r.exit_code, ...cutOutput([...shown, ...notes].join('\n'), 'head') };
}

type Runner<N extends BuiltInTool> = (
  capsule: ToolCapsule,
  args: Static<(typeof ARGUMENTS)[N]>,
  ctx: ToolContext,
) => Promise<ToolOutcome>;

const RUNNERS: { [N in Exclude<BuiltInTool, 'submit_result'>]: Runner<N> } = {
  bash,
  read_file: readFileTool,
  write_file: writeFileTool,
  edit_file: editFileTool,
  list_files: listFilesTool,
  grep: grepTool,
};

/**
 * Runs one tool call in the capsule. A call the model got wrong (unknown
 * tool, bad JSON, wrong fields) and anything the capsule refuses (no such
 * file, a directory, no space) come back as `ok: false` with a message the
 * model can act on; only a capsule that is gone throws (`CapsuleGone`).
 * submit_result is not run here: the runner handles it.
 */
export async function runTool(capsule: ToolCapsule, call: ToolCall, ctx: ToolContext): Promise<ToolOutcome> {
  const name = call.name;
  if (!isBuiltIn(name)) {
    return failed(`There is no tool named ${JSON.stringify(name)}. Use one of the tools you were given.`);
  }
  if (name === 'submit_result')
    return failed('submit_result is handled by the task runner, not run as a tool.');
  const parsed = parseArguments(name, call.arguments);
  if ('refused' in parsed) return failed(parsed.refused);
  // The arguments were checked against this tool's own schema just above.
  const run = RUNNERS[name] as (
    capsule: ToolCapsule,
    args: unknown,
    ctx: ToolContext,
  ) => Promise<ToolOutcome>;
  try {
    return await run(capsule, parsed.args, ctx);
  } catch (err) {
    if (err instanceof CapsuleRefused) return failed(refusalMessage(err));
    throw err;
  }
}

function refusalMessage(err: CapsuleRefused): string {
  switch (err.reason) {
    case 'no_space':
      return `The capsule's disk is full: ${err.message}. Remove files you no longer need.`;
    case 'failed':
      return `The capsule could not do this: ${err.message}`;
    default:
      return err.message;
  }
}

import type { SecretRedactor } from '../secrets/redact.ts';
import type { ToolCapsule, ToolExecResult } from './tool-capsule.ts';

/**
 * The task's capsule as its tools, the setup and the outputs see it: every
 * command's output and every text file read has the secrets' values taken
 * out where it comes from, before any tool cuts it to a limit (a value cut in
 * two would no longer be found). Output the host cut at its own limit loses
 * its last characters up to the longest form's length less one, so a value
 * the cut went through leaves no prefix either. Bytes that are not UTF-8 are
 * searched byte for byte (a value written in another encoding is not found).
 */
export function redactingCapsule(capsule: ToolCapsule, redactor: SecretRedactor): ToolCapsule {
  if (redactor.empty) return capsule;
  const text = (s: string, truncated: boolean) =>
    redactor.redact(truncated ? s.slice(0, Math.max(0, s.length - (redactor.longest - 1))) : s);
  return {
    async exec(req) {
      const r = await capsule.exec(req);
      return redactedResult(r, (s) => text(s, r.truncated));
    },
    async readFile(path, maxBytes) {
      const data = await capsule.readFile(path, maxBytes);
      return redactedBytes(data, (s) => redactor.redact(s));
    },
    writeFile: (path, data) => capsule.writeFile(path, data),
    list: (path, depth) => capsule.list(path, depth),
    mkdir: (path) => capsule.mkdir(path),
    // What an MCP server says reaches the model as a tool's output, which the loop redacts.
    spawn: (req) => capsule.spawn(req),
  };
}

function redactedResult(r: ToolExecResult, redact: (s: string) => string): ToolExecResult {
  if (r.encoding === 'base64') {
    const decode = (s: string) => Buffer.from(s, 'base64');
    const stdout = redactedBytes(decode(r.stdout), redact).toString('base64');
    const stderr = redactedBytes(decode(r.stderr), redact).toString('base64');
    return { ...r, stdout, stderr };
  }
  return { ...r, stdout: redact(r.stdout), stderr: redact(r.stderr) };
}

/**
 * The bytes with the secrets taken out: as UTF-8 text when they are that,
 * else byte for byte (as Latin-1, which maps each byte to one character), so
 * a value in binary data is found and every other byte is kept.
 */
function redactedBytes(data: Buffer, redact: (s: string) => string): Buffer {
  const utf8 = data.toString('utf8');
  const encoding = Buffer.from(utf8, 'utf8').equals(data) ? 'utf8' : 'latin1';
  const text = encoding === 'utf8' ? utf8 : data.toString('latin1');
  const redacted = redact(text);
  return redacted === text ? data : Buffer.from(redacted, encoding);
}

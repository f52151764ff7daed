import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { ToolProcess } from '../tool-capsule.ts';

/** A line (one message) longer than this ends the connection: a server cannot make Paddock buffer without end. */
const MAX_LINE_BYTES = 4 * 1024 * 1024;
/** How much of the server's stderr is kept for error messages. */
const STDERR_TAIL_CHARS = 2000;

/**
 * MCP's stdio transport over a process in the task's capsule: newline-
 * delimited JSON-RPC on its stdin and stdout, both carried by the capsule's
 * exec stream (the process never runs on Paddock's machine). Its stderr is
 * kept (the last STDERR_TAIL_CHARS) to say why a server failed; its exit is
 * the connection's close.
 */
export class CapsuleStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** Its exit code once the process ended. */
  exitCode: number | undefined;
  private stderr = '';
  private readonly lines = new ReadBuffer({ maxBufferSize: MAX_LINE_BYTES });
  private stopFollowing: (() => void) | undefined;
  private closed = false;

  constructor(private readonly process: ToolProcess) {}

  /** The last of what the server wrote to stderr, trimmed. */
  stderrTail(): string {
    return this.stderr.trim();
  }

  async start(): Promise<void> {
    this.stopFollowing = this.process.follow((stream, data) => {
      if (stream === 'stderr') {
        this.stderr = (this.stderr + data.toString('utf8')).slice(-STDERR_TAIL_CHARS);
        return;
      }
      this.take(data);
    });
    void this.process.exited.then((code) => {
      this.exitCode = code;
      this.end();
    });
  }

  private take(data: Buffer): void {
    try {
      this.lines.append(data);
    } catch (err) {
      this.onerror?.(err as Error);
      void this.close();
      return;
    }
    for (;;) {
      let message: JSONRPCMessage | null;
      try {
        message = this.lines.readMessage();
      } catch (err) {
        // A line that is not JSON-RPC (a server logging to stdout): said, skipped.
        this.onerror?.(new Error(`the server wrote a line that is not JSON-RPC: ${(err as Error).message}`));
        continue;
      }
      if (message === null) return;
      this.onmessage?.(message);
    }
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) throw new Error('the MCP server is no longer running');
    this.process.write(serializeMessage(message));
  }

  async close(): Promise<void> {
    if (!this.closed) this.process.kill();
    this.end();
  }

  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopFollowing?.();
    this.lines.clear();
    this.onclose?.();
  }
}

import type { Readable } from 'node:stream';
import { ConflictError, NotFoundError } from '../../core/errors.ts';
import type { CapsuleId } from '../../core/ids.ts';
import { ATTR, inSpan, type Span, type Tracer } from '../../core/tracing.ts';
import type { Principal, Scope } from '../identity/principal.ts';
import type { CapsuleStates } from './capsule-states.ts';
import { checkEnvs, fromDriver } from './capsule-view.ts';
import { DriverError } from './drivers/types.ts';
import type { FollowedProcess, StartRequest } from './host.ts';
import type { ExecInput } from './schemas.ts';
import type { SandboxOptions } from './service.ts';

/**
 * What runs inside a running capsule: commands (foreground, background),
 * its processes, and its files. Each call finds the capsule within the
 * caller's team, running (409 otherwise), and counts as activity.
 */
export class CapsuleIo {
  constructor(
    private readonly states: CapsuleStates,
    private readonly options: Pick<SandboxOptions, 'execOutputLimitBytes' | 'fileLimitBytes'>,
    private readonly tracer: Tracer,
  ) {}

  /**
   * A span per command (`capsule.exec`): the capsule, the host, the exit
   * code; never the command, its arguments, environment or output. A remote
   * host continues it (the RPC carries its traceparent).
   */
  exec(principal: Principal, id: CapsuleId, input: ExecInput) {
    return inSpan(
      this.tracer,
      'capsule.exec',
      { attributes: { 'paddock.capsule.id': id, 'paddock.exec.background': input.background === true } },
      (span) => this.execIn(principal, id, input, span),
    );
  }

  private async execIn(principal: Principal, id: CapsuleId, input: ExecInput, span: Span) {
    checkEnvs(input.envs);
    const { c, host } = await this.states.running(principal, id, 'write');
    span.set({ 'paddock.host.id': host.id });
    try {
      if (input.background) {
        const started = await host.launch(c.id, {
          cmd: input.cmd,
          ...(input.args ? { args: input.args } : {}),
          ...(input.envs ? { envs: input.envs } : {}),
          ...(input.cwd ? { cwd: input.cwd } : {}),
          ...(input.tag ? { tag: input.tag } : {}),
        });
        return {
          background: true as const,
          body: { sandbox_id: c.id, cmd: input.cmd, pid: started.pid, tag: started.tag },
        };
      }
      const result = await host.exec(c.id, {
        cmd: input.cmd,
        ...(input.args ? { args: input.args } : {}),
        ...(input.envs ? { envs: input.envs } : {}),
        ...(input.cwd ? { cwd: input.cwd } : {}),
        timeoutSec: input.timeout_sec ?? 30,
        maxOutputBytes: this.options.execOutputLimitBytes,
      });
      span.set({ [ATTR.processExitCode]: result.exit_code, 'paddock.exec.timed_out': result.timed_out });
      return { background: false as const, body: { sandbox_id: c.id, cmd: input.cmd, ...result } };
    } catch (err) {
      if (err instanceof DriverError && err.code === 'exists') {
        throw new ConflictError('tag_taken', err.message, { tag: input.tag });
      }
      return fromDriver(err);
    }
  }

  async processes(principal: Principal, id: CapsuleId) {
    const { c, host } = await this.states.running(principal, id, 'read');
    return { data: await host.processes(c.id).catch(fromDriver), next_cursor: null };
  }

  async kill(principal: Principal, id: CapsuleId, selector: string, signal: NodeJS.Signals): Promise<void> {
    const { c, host } = await this.states.running(principal, id, 'write');
    const found = await host.kill(c.id, selector, signal).catch(fromDriver);
    if (!found) throw new NotFoundError('process', selector);
  }

  async readFile(principal: Principal, id: CapsuleId, path: string): Promise<Buffer> {
    const { c, host } = await this.states.running(principal, id, 'read');
    return host.readFile(c.id, path, this.options.fileLimitBytes).catch((err) => fromDriver(err, path));
  }

  async readStream(principal: Principal, id: CapsuleId, path: string): Promise<Readable> {
    const { c, host } = await this.states.running(principal, id, 'read');
    return host.readStream(c.id, path).catch((err) => fromDriver(err, path));
  }

  async writeFile(
    principal: Principal,
    id: CapsuleId,
    path: string,
    data: Readable | Buffer,
    stream: boolean,
  ) {
    const { c, host } = await this.states.running(principal, id, 'write');
    // Streamed uploads are bounded by the capsule's disk (its writable layer) rather than a request limit.
    const max = stream ? c.diskSizeMb * 1024 * 1024 : this.options.fileLimitBytes;
    await host.writeFile(c.id, path, data, max).catch((err) => fromDriver(err, path));
  }

  async listFiles(principal: Principal, id: CapsuleId, path: string, depth: number) {
    const { c, host } = await this.states.running(principal, id, 'read');
    return { entries: await host.list(c.id, path, depth).catch((err) => fromDriver(err, path)) };
  }

  async mkdir(principal: Principal, id: CapsuleId, path: string) {
    const { c, host } = await this.states.running(principal, id, 'write');
    return { entry: await host.mkdir(c.id, path).catch((err) => fromDriver(err, path)) };
  }

  async removeFile(principal: Principal, id: CapsuleId, path: string): Promise<void> {
    const { c, host } = await this.states.running(principal, id, 'write');
    await host.remove(c.id, path).catch((err) => fromDriver(err, path));
  }

  // -- followed processes (the WebSocket routes) -----------------------------------

  /** Before a WebSocket upgrade: the capsule is the caller's team's and running (404 / 409 answered over HTTP). */
  async checkRunning(principal: Principal, id: CapsuleId, need: Scope): Promise<void> {
    await this.states.running(principal, id, need);
  }

  /** Starts a process whose output a WebSocket follows (exec/stream, PTY); its envs by exec's rules. */
  async startFollowed(principal: Principal, id: CapsuleId, req: StartRequest): Promise<FollowedProcess> {
    checkEnvs(req.envs);
    const { c, host } = await this.states.running(principal, id, 'write');
    return host.start(c.id, req);
  }

  /** A process started through the API (by tag or pid) to attach to; undefined when there is none. */
  async followed(
    principal: Principal,
    id: CapsuleId,
    selector: string,
    need: Scope,
  ): Promise<FollowedProcess | undefined> {
    const { c, host } = await this.states.running(principal, id, need);
    return host.followed(c.id, selector);
  }
}

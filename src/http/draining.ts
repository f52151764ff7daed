import type { Timers } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { endEventStreams } from './event-stream.ts';
import type { App } from './types.ts';

/**
 * How a server stops (Fastify's close, on SIGTERM): it takes no new
 * connections; a request arriving meanwhile on one already open is answered
 * 503 `shutting_down` with `Connection: close`, so its client's retry goes to
 * another server; event streams end at once (their clients resume elsewhere
 * with Last-Event-ID); requests in flight — a gateway stream among them —
 * run to their end for up to `graceMs`, then their connections are cut.
 * Register it before anything else adds a preClose hook: it must run first.
 */
export function registerDraining(app: App, graceMs: number, timers: Timers): void {
  let draining = false;
  app.addHook('onRequest', (_request, _reply, done) => {
    if (!draining) return done();
    done(
      new AppError(
        503,
        'shutting_down',
        'this server is shutting down; send the request again (another server takes it)',
        undefined,
        { connection: 'close' },
      ),
    );
  });
  let cut: { cancel(): void } | undefined;
  app.addHook('preClose', (done) => {
    draining = true;
    endEventStreams(app.server);
    cut = timers.after(graceMs, () => {
      app.log.warn({ grace_ms: graceMs }, 'shutting down: cutting the requests still in flight');
      app.server.closeAllConnections();
    });
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    cut?.cancel();
    done();
  });
}

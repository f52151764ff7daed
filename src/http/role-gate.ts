import { AppError } from '../core/errors.ts';
import { PROBE_PATHS, type Role, roleWork } from '../roles.ts';
import type { App } from './types.ts';

/**
 * A server without the API role (a worker, a scheduler) answers only its
 * probes and metrics on its port, for systemd and load balancers to check
 * it: the API is served by the api servers, and a worker need not be reachable.
 */
export function registerRoleGate(app: App, role: Role): void {
  if (roleWork(role).http) return;
  const message = `this server runs the ${role} role: it answers only ${[...PROBE_PATHS].join(', ')}; the API is on the api servers`;
  app.addHook('onRequest', (request, _reply, done) => {
    if (PROBE_PATHS.has(request.url.split('?')[0]!)) return done();
    done(new AppError(404, 'not_served', message, { role }));
  });
}

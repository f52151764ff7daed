import { Type } from 'typebox';
import type { App } from '../../http/types.ts';
import { VERSION } from '../../version.ts';

export interface Readiness {
  /** True once migrations ran; the DB is pinged on each check as well. */
  migrated: boolean;
  ping(): Promise<boolean>;
  dbKind: 'pglite' | 'postgres';
  startedAt: number;
  /** What this process runs (src/roles.ts). */
  role?: string;
  /** Whether this process leads the playbook scheduler; null when it does not tick (yet). */
  leads?: () => boolean | null;
}

const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  version: Type.String(),
  uptime_sec: Type.Number(),
  db: Type.Object({ kind: Type.String(), ok: Type.Boolean() }),
  role: Type.Optional(Type.String({ description: 'all, api, worker or scheduler' })),
  scheduler_leader: Type.Optional(
    Type.Union([Type.Boolean(), Type.Null()], {
      description: 'whether this process leads the playbook scheduler; null: it does not tick (yet)',
    }),
  ),
});
const Ready = Type.Object({ ready: Type.Boolean(), migrated: Type.Boolean(), db: Type.Boolean() });
const Version = Type.Object({ version: Type.String(), node: Type.String() });

export function registerSystemRoutes(app: App, readiness: Readiness): void {
  const tags = ['system'];
  app.get(
    '/health',
    {
      schema: {
        tags,
        summary: 'Liveness, version, uptime and database',
        response: { 200: Health, 503: Health },
      },
    },
    async (_request, reply) => {
      const ok = await readiness.ping();
      return reply.status(ok ? 200 : 503).send({
        status: ok ? 'ok' : 'degraded',
        version: VERSION,
        uptime_sec: Math.round((Date.now() - readiness.startedAt) / 100) / 10,
        db: { kind: readiness.dbKind, ok },
        ...(readiness.role ? { role: readiness.role } : {}),
        ...(readiness.leads ? { scheduler_leader: readiness.leads() } : {}),
      });
    },
  );

  app.get(
    '/ready',
    {
      schema: {
        tags,
        summary: '200 once migrations ran and the database answers; 503 before',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const db = readiness.migrated && (await readiness.ping());
      const ready = readiness.migrated && db;
      return reply.status(ready ? 200 : 503).send({ ready, migrated: readiness.migrated, db });
    },
  );

  app.get(
    '/version',
    { schema: { tags, summary: 'Server version', response: { 200: Version } } },
    async () => ({
      version: VERSION,
      node: process.version,
    }),
  );
}

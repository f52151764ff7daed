import { principalOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { ActivityService } from './service.ts';

export function registerActivityRoutes(app: App, activity: ActivityService): void {
  const tags = ['activity'];
  // Members and team keys read the feed; agents write their own lines into it (agent keys only).
  const read = { auth: { scope: 'read' } as const };
  const agentWrite = { auth: { scope: 'write', agent: 'only' } as const };

  app.get(
    '/v1/activity',
    {
      config: read,
      schema: {
        tags,
        summary:
          "The team's activity: a readable line per change, and what its agents reported, newest first",
        querystring: s.ActivityListQuery,
        response: { 200: s.ActivityEntries },
      },
    },
    async (request) => activity.list(principalOf(request), request.query),
  );

  app.post(
    '/v1/activity',
    {
      config: agentWrite,
      schema: {
        tags,
        summary: 'Report what this agent did, with links (agent keys only); recorded as activity.reported',
        body: s.ReportActivityBody,
        response: { 201: s.ActivityEntry, ...errorResponses() },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await activity.report(principalOf(request), request.body)),
  );

  app.get(
    '/v1/activity/stats',
    {
      config: read,
      schema: {
        tags,
        summary: 'Activity counted per actor and per action over a window (default: the last day)',
        querystring: s.ActivityStatsQuery,
        response: { 200: s.ActivityStats },
      },
    },
    async (request) => activity.stats(principalOf(request), request.query),
  );
}

import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { PlaybookHooks } from './hooks.ts';
import type { PlaybookScheduler } from './scheduler.ts';
import * as s from './schemas.ts';
import type { PlaybooksService } from './service.ts';

export function registerPlaybookRoutes(
  app: App,
  playbooks: PlaybooksService,
  scheduler: PlaybookScheduler,
  hooks: PlaybookHooks,
): void {
  const tags = ['playbooks'];
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };
  const admin = { auth: { scope: 'admin' } as const };
  const runs = playbooks.runs;

  app.post(
    '/v1/playbooks',
    {
      config: write,
      schema: {
        tags,
        summary: 'Add a playbook: a prompt an agent runs on a schedule, by hand or by a webhook',
        body: s.CreatePlaybookBody,
        response: { 201: s.Playbook, ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await playbooks.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/playbooks',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's playbooks, newest first",
        querystring: s.PlaybookListQuery,
        response: { 200: s.Playbooks },
      },
    },
    async (request) => playbooks.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/playbooks/scheduler/status',
    {
      config: read,
      schema: {
        tags,
        summary: 'The scheduler: leader, paused, last tick, due playbooks',
        response: { 200: s.SchedulerStatus },
      },
    },
    async (request) => scheduler.status(principalOf(request)),
  );

  for (const action of ['pause', 'resume'] as const)
    app.post(
      `/v1/playbooks/scheduler/${action}`,
      {
        config: admin,
        schema: {
          tags,
          summary:
            action === 'pause' ? "Stop firing the team's playbooks (on every server)" : 'Fire them again',
          response: { 200: s.SchedulerStatus, ...errorResponses() },
        },
      },
      async (request) => scheduler[action](principalOf(request)),
    );

  app.get(
    '/v1/playbooks/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One playbook',
        params: IdParams,
        response: { 200: s.Playbook, ...errorResponses(404) },
      },
    },
    async (request) => playbooks.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/playbooks/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Change a playbook; next_run_at is recomputed when its timing changes',
        params: IdParams,
        body: s.UpdatePlaybookBody,
        response: { 200: s.Playbook, ...errorResponses(404) },
      },
    },
    async (request) => playbooks.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/playbooks/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a playbook and its runs (a run in flight is cancelled)',
        params: IdParams,
        response: { 200: s.PlaybookDeleted, ...errorResponses(404) },
      },
    },
    async (request) => playbooks.remove(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/playbooks/:id/rotate-token',
    {
      config: write,
      schema: {
        tags,
        summary: 'A new webhook token (shown once); the old one stops working',
        params: IdParams,
        response: { 200: s.Playbook, ...errorResponses(404) },
      },
    },
    async (request) => playbooks.rotateToken(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/playbooks/:id/run',
    {
      config: write,
      schema: {
        tags,
        summary: 'Fire the playbook now (202 with the run; skipped when its previous run is still active)',
        params: IdParams,
        response: { 202: s.PlaybookRun, ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await playbooks.run(principalOf(request), request.params.id)),
  );

  app.get(
    '/v1/playbooks/:id/runs',
    {
      config: read,
      schema: {
        tags,
        summary: "One playbook's runs, newest first",
        params: IdParams,
        querystring: s.RunListQuery,
        response: { 200: s.PlaybookRuns, ...errorResponses(404) },
      },
    },
    async (request) => {
      const pb = await playbooks.get(principalOf(request), request.params.id);
      return runs.list(principalOf(request), { ...request.query, playbook_id: pb.id });
    },
  );

  app.get(
    '/v1/playbook-runs',
    {
      config: read,
      schema: {
        tags,
        summary: 'Runs of every playbook, newest first',
        querystring: s.RunListQuery,
        response: { 200: s.PlaybookRuns },
      },
    },
    async (request) => runs.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/playbook-runs/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One run',
        params: IdParams,
        response: { 200: s.PlaybookRun, ...errorResponses(404) },
      },
    },
    async (request) => runs.get(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/playbook-runs/:id/cancel',
    {
      config: write,
      schema: {
        tags,
        summary: 'Cancel a queued or running run (409 run_not_active otherwise)',
        params: IdParams,
        response: { 200: s.PlaybookRun, ...errorResponses(404, 409) },
      },
    },
    async (request) => runs.cancel(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/hooks/playbooks/:token',
    {
      config: { auth: 'public' },
      bodyLimit: s.HOOK_BODY_MAX_BYTES,
      schema: {
        tags,
        summary:
          'Fire a webhook playbook: the token is the credential, the JSON body goes to the agent after the prompt',
        params: s.HookParams,
        response: { 202: s.PlaybookRun, ...errorResponses(404, 409, 413, 429) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await hooks.fire(request.params.token, request.body, request.ip ?? null)),
  );
}

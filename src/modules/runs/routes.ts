import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams, PageQuery } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { RunsService } from './service.ts';

/**
 * Runs. Admin routes take team keys and sessions; agent routes (`agent:
 * 'only'`) take the agent key and see only that agent's runs. Static segments
 * (/v1/runs/current, /v1/runs/complete-all) win over /v1/runs/:id in Fastify's
 * router; POST /v1/runs/:id/complete is one route for both sides.
 */
export function registerRunRoutes(app: App, runs: RunsService): void {
  const tags = ['runs'];
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };
  const agentRead = { auth: { scope: 'read', agent: 'only' } as const };
  const agentWrite = { auth: { scope: 'write', agent: 'only' } as const };
  const eitherRead = { auth: { scope: 'read', agent: 'also' } as const };
  const eitherWrite = { auth: { scope: 'write', agent: 'also' } as const };
  // An empty POST (`curl -X POST …/complete`) means the defaults.
  const emptyBody = async (request: { body: unknown }) => {
    request.body ??= {};
  };

  // -- agent side ----------------------------------------------------------

  app.get(
    '/v1/runs/current',
    {
      config: agentRead,
      schema: {
        tags,
        summary: "The calling agent's latest running run (agent key)",
        response: { 200: s.Run, ...errorResponses(404) },
      },
    },
    async (request) => runs.current(principalOf(request)),
  );

  app.patch(
    '/v1/runs/current',
    {
      config: agentWrite,
      schema: {
        tags,
        summary: "Rename the calling agent's running run or set its outcome (agent key)",
        body: s.UpdateRunBody,
        response: { 200: s.Run, ...errorResponses(404) },
      },
    },
    async (request) => runs.updateCurrent(principalOf(request), request.body),
  );

  app.post(
    '/v1/runs/current/complete',
    {
      config: agentWrite,
      schema: {
        tags,
        summary: "Complete the calling agent's latest running run (agent key)",
        description:
          'ended_reason defaults to agent_signaled. outcome: the body’s, else one set earlier, else the policy’s outcome_defaults[ended_reason], else success.',
        body: Type.Optional(s.CompleteRunBody),
        response: { 200: s.CompletionSummary, ...errorResponses(404, 409) },
      },
      preValidation: emptyBody,
    },
    async (request) => runs.completeAsAgent(principalOf(request), 'current', request.body ?? {}),
  );

  app.post(
    '/v1/runs/complete-all',
    {
      config: agentWrite,
      schema: {
        tags,
        summary: 'Complete every running run of the calling agent (agent key); idempotent',
        body: Type.Optional(s.CompleteAllBody),
        response: { 200: s.CompleteAllResult, ...errorResponses() },
      },
      preValidation: emptyBody,
    },
    async (request) => runs.completeAll(principalOf(request), request.body ?? {}),
  );

  app.post(
    '/v1/runs/:id/steps',
    {
      config: agentWrite,
      schema: {
        tags,
        summary: 'Log a tool call in one of the calling agent’s running runs (agent key)',
        description:
          'cost_usd counts against the run’s budget like a model call’s: 402 when it does not fit.',
        params: IdParams,
        body: s.ToolStepBody,
        response: { 201: s.Step, ...errorResponses(402, 404, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await runs.addToolStep(principalOf(request), request.params.id, request.body)),
  );

  // -- both sides ----------------------------------------------------------

  app.post(
    '/v1/runs/:id/complete',
    {
      config: eitherWrite,
      schema: {
        tags,
        summary:
          'Complete a running run (admin: the run; agent key: its own run, answering the completion summary)',
        description:
          'Admins send `reason` (default admin_completed); agents send `ended_reason` (default agent_signaled). completion_reason is explicit. 409 when the run is not running.',
        params: IdParams,
        body: Type.Optional(s.CompleteRunBody),
        response: { 200: Type.Union([s.Run, s.CompletionSummary]), ...errorResponses(404, 409) },
      },
      preValidation: emptyBody,
    },
    async (request) => runs.complete(principalOf(request), request.params.id, request.body ?? {}),
  );

  app.get(
    '/v1/runs/:id',
    {
      config: eitherRead,
      schema: {
        tags,
        summary: 'One run (an agent key sees only its own)',
        params: IdParams,
        response: { 200: s.Run, ...errorResponses(404) },
      },
    },
    async (request) => runs.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/runs/:id',
    {
      config: eitherWrite,
      schema: {
        tags,
        summary: 'Rename a run or set its outcome, in any status (an agent key: only its own)',
        params: IdParams,
        body: s.UpdateRunBody,
        response: { 200: s.Run, ...errorResponses(404) },
      },
    },
    async (request) => runs.update(principalOf(request), request.params.id, request.body),
  );

  app.get(
    '/v1/runs/:id/steps',
    {
      config: eitherRead,
      schema: {
        tags,
        summary: "A run's steps, oldest first (an agent key: only its own runs)",
        params: IdParams,
        querystring: PageQuery,
        response: { 200: s.Steps, ...errorResponses(404) },
      },
    },
    async (request) => runs.steps(principalOf(request), request.params.id, request.query),
  );

  // -- admin side ----------------------------------------------------------

  app.get(
    '/v1/runs',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's runs, newest first",
        querystring: s.RunListQuery,
        response: { 200: s.Runs, ...errorResponses() },
      },
    },
    async (request) => runs.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/runs/:id/ledger',
    {
      config: read,
      schema: {
        tags,
        summary: "A run's ledger entries (one per charged step), oldest first",
        params: IdParams,
        querystring: PageQuery,
        response: { 200: s.Ledger, ...errorResponses(404) },
      },
    },
    async (request) => runs.ledger(principalOf(request), request.params.id, request.query),
  );

  app.post(
    '/v1/runs/:id/stop',
    {
      config: write,
      schema: {
        tags,
        summary: 'Force-stop a running run (admin_stopped)',
        description:
          'New implicit runs of the same agent and policy are then refused (run_blocked_after_force_stop) for the policy’s force_stop_cooldown_minutes, unless unblocked.',
        params: IdParams,
        response: { 200: s.Run, ...errorResponses(404, 409) },
      },
    },
    async (request) => runs.forceStop(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/runs/:id/unblock',
    {
      config: write,
      schema: {
        tags,
        summary: 'Lift the cooldown after a force-stop (the run stays force_stopped)',
        params: IdParams,
        response: { 200: s.Run, ...errorResponses(404, 409) },
      },
    },
    async (request) => runs.unblock(principalOf(request), request.params.id),
  );
}

import type { Static, TSchema } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { Principal } from '../identity/principal.ts';
import * as s from './schemas.ts';
import type { QueuesService } from './service.ts';
import type { JobView } from './views.ts';

export function registerQueueRoutes(app: App, queues: QueuesService): void {
  const tags = ['queues'];
  // Workers: agent keys, and team keys with the queue scope (write and admin include it).
  const worker = { auth: { scope: 'queue', agent: 'also' } as const };
  // Claims and heartbeats are a worker's polling (a claim that finds nothing changes nothing):
  // like a sandbox host's heartbeats they make no audit entry; what they did shows on the job
  // (worker_id, claimed_at, attempts, lease_expires_at). Completions and failures are audited
  // with their events.
  const polling = { ...worker, audit: false as const };
  const submit = { auth: { scope: 'write', agent: 'also' } as const };
  const read = { auth: { scope: 'read' } as const };
  const readJob = { auth: { scope: 'read', agent: 'also' } as const };
  const write = { auth: { scope: 'write' } as const };

  app.post(
    '/v1/queues/:name/jobs',
    {
      config: submit,
      schema: {
        tags,
        summary: 'Submit a job (201); a known idempotency_key answers the job it made (200)',
        params: s.QueueParams,
        body: s.SubmitJobBody,
        response: { 200: s.Job, 201: s.Job, ...errorResponses(409) },
      },
    },
    async (request, reply) => {
      const { job, created } = await queues.submit(principalOf(request), request.params.name, request.body);
      return reply.status(created ? 201 : 200).send(job);
    },
  );

  app.get(
    '/v1/queues/:name/jobs',
    {
      config: read,
      schema: {
        tags,
        summary: "The queue's jobs, newest first; filter by status and type",
        params: s.QueueParams,
        querystring: s.JobListQuery,
        response: { 200: s.Jobs },
      },
    },
    async (request) => queues.list(principalOf(request), request.params.name, request.query),
  );

  app.get(
    '/v1/queues/:name/jobs/:id',
    {
      config: readJob,
      schema: {
        tags,
        summary: 'One job',
        params: s.JobParams,
        response: { 200: s.Job, ...errorResponses(404) },
      },
    },
    async (request) => queues.get(principalOf(request), request.params.name, request.params.id),
  );

  app.post(
    '/v1/queues/:name/claim',
    {
      config: polling,
      schema: {
        tags,
        summary:
          'Claim up to batch_size due jobs (higher priority first, then oldest), each leased for its timeout_sec; always an array, empty when none (wait_sec: long poll)',
        params: s.QueueParams,
        body: s.ClaimBody,
        response: { 200: s.Claimed },
      },
    },
    async (request, reply) => {
      const closed = new AbortController();
      reply.raw.once('close', () => closed.abort());
      return queues.claim(principalOf(request), request.params.name, request.body, closed.signal);
    },
  );

  app.post(
    '/v1/queues/:name/complete',
    {
      config: worker,
      schema: {
        tags,
        summary: "Complete many of this worker's jobs in one call: each completed or rejected",
        params: s.QueueParams,
        body: s.CompleteManyBody,
        response: { 200: s.CompletedMany },
      },
    },
    async (request) => queues.completeBatch(principalOf(request), request.params.name, request.body),
  );

  // A worker's calls on one job it holds: 409 not_lease_holder when it does not (any more).
  const jobAction = <B extends TSchema>(
    path: string,
    summary: string,
    body: B,
    run: (principal: Principal, name: string, id: string, body: Static<B>) => Promise<JobView>,
  ) =>
    app.post(
      `/v1/queues/:name/jobs/:id/${path}`,
      {
        config: path === 'heartbeat' ? polling : worker,
        schema: {
          tags,
          summary,
          params: s.JobParams,
          body,
          response: { 200: s.Job, ...errorResponses(404, 409) },
        },
      },
      async (request) =>
        run(principalOf(request), request.params.name, request.params.id, request.body as Static<B>),
    );
  jobAction(
    'heartbeat',
    'Extend the lease of a job this worker holds',
    s.HeartbeatBody,
    (p, name, id, body) => queues.heartbeat(p, name, id, body),
  );
  jobAction(
    'complete',
    'Complete a job this worker holds, with its result',
    s.CompleteBody,
    (p, name, id, body) => queues.complete(p, name, id, body),
  );
  jobAction(
    'fail',
    'Report a failure: queued again after a backoff while attempts remain (unless retry is false), else failed',
    s.FailBody,
    (p, name, id, body) => queues.fail(p, name, id, body),
  );

  app.post(
    '/v1/queues/:name/jobs/:id/cancel',
    {
      config: write,
      schema: {
        tags,
        summary: 'Cancel a queued or active job; 409 once it ended',
        params: s.JobParams,
        response: { 200: s.Job, ...errorResponses(404, 409) },
      },
    },
    async (request) => queues.cancel(principalOf(request), request.params.name, request.params.id),
  );

  app.get(
    '/v1/queues/:name/stats',
    {
      config: read,
      schema: {
        tags,
        summary: 'Depth, the oldest waiting job, throughput and failures over the last hour',
        params: s.QueueParams,
        response: { 200: s.QueueStats },
      },
    },
    async (request) => queues.stats(principalOf(request), request.params.name),
  );

  app.get(
    '/v1/queues',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's queues (those holding a job) by name, with their jobs counted by status",
        querystring: s.QueueListQuery,
        response: { 200: s.Queues },
      },
    },
    async (request) => queues.queues(principalOf(request), request.query),
  );
}

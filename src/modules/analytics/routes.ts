import type { TSchema } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { Principal } from '../identity/principal.ts';
import * as s from './schemas.ts';
import type { AnalyticsService, ReportInput } from './service.ts';

export function registerAnalyticsRoutes(app: App, analytics: AnalyticsService): void {
  const tags = ['analytics'];
  // Team keys and members with read scope; agent keys are refused (the auth rule takes none),
  // as for GET /v1/events: the figures name every agent of the team.
  const read = { auth: { scope: 'read' } as const };
  const admin = { auth: { scope: 'admin' } as const };

  type Report = (principal: Principal, q: ReportInput) => Promise<unknown>;
  const report = (path: string, summary: string, response: TSchema, answer: Report) =>
    app.get(
      `/v1/analytics/${path}`,
      {
        config: read,
        schema: {
          tags,
          summary,
          querystring: s.ReportQuery,
          response: { 200: response, ...errorResponses() },
        },
      },
      async (request) => answer(principalOf(request), request.query),
    );
  report('costs', 'Spend and tokens per group and period, from the rollups', s.CostsReport, (p, q) =>
    analytics.costs(p, q),
  );
  report(
    'latency',
    'Latency p50/p95/p99 (from a histogram) and average per group and period',
    s.LatencyReport,
    (p, q) => analytics.latency(p, q),
  );
  report(
    'errors',
    'Requests by outcome, error rate and failovers per group and period',
    s.ErrorsReport,
    (p, q) => analytics.errors(p, q),
  );
  report(
    'throughput',
    'Requests, tokens by kind and spend per group and period',
    s.ThroughputReport,
    (p, q) => analytics.throughput(p, q),
  );

  app.get(
    '/v1/analytics/provider-reliability',
    {
      config: read,
      schema: {
        tags,
        summary: 'Success, error and failover rates, latency and spend per provider',
        querystring: s.ReliabilityQuery,
        response: { 200: s.ReliabilityReport, ...errorResponses() },
      },
    },
    async (request) => analytics.providerReliability(principalOf(request), request.query),
  );

  app.get(
    '/v1/analytics/runs',
    {
      config: read,
      schema: {
        tags,
        summary: 'Runs started in the range by outcome, duration, steps and cost, per period',
        querystring: s.RunsQuery,
        response: { 200: s.RunsReport, ...errorResponses() },
      },
    },
    async (request) => analytics.runs(principalOf(request), request.query),
  );

  app.get(
    '/v1/analytics/top',
    {
      config: read,
      schema: {
        tags,
        summary: 'The top agents, models or providers by cost, calls, tokens or errors',
        querystring: s.TopQuery,
        response: { 200: s.TopReport, ...errorResponses() },
      },
    },
    async (request) => analytics.top(principalOf(request), request.query),
  );

  app.get(
    '/v1/analytics/tasks',
    {
      config: read,
      schema: {
        tags,
        summary:
          'Tasks created in the range by status, their cost split into model and sandbox, sandbox time',
        querystring: s.TasksQuery,
        response: { 200: s.TasksReport, ...errorResponses() },
      },
    },
    async (request) => analytics.tasks(principalOf(request), request.query),
  );

  app.get(
    '/v1/overview/agents',
    {
      config: read,
      schema: {
        tags,
        summary:
          'Per agent, over its tasks created in the range: done, success rate, cost and tokens per task, queue wait p50/p95, last active',
        querystring: s.AgentsKpiQuery,
        response: { 200: s.AgentsKpi, ...errorResponses() },
      },
    },
    async (request) => analytics.agents(principalOf(request), request.query),
  );

  app.get(
    '/v1/overview/stats',
    {
      config: read,
      schema: {
        tags,
        summary: "Today's spend, runs and tokens (UTC) with trends against yesterday at the same time",
        response: { 200: s.OverviewStats, ...errorResponses() },
      },
    },
    async (request) => analytics.overview(principalOf(request)),
  );

  app.get(
    '/v1/analytics/cleanup-preview',
    {
      config: admin,
      schema: {
        tags,
        summary:
          'What a cleanup before this time would delete: runs ended before it, their steps and ledger entries',
        querystring: s.CleanupPreviewQuery,
        response: { 200: s.CleanupCounts, ...errorResponses() },
      },
    },
    async (request) => analytics.cleanupPreview(principalOf(request), request.query),
  );

  app.post(
    '/v1/analytics/cleanup',
    {
      config: admin,
      schema: {
        tags,
        summary:
          'Delete the steps and ledger entries of runs that ended before `before` (rollups and runs stay)',
        body: s.CleanupBody,
        response: { 200: s.CleanupCounts, ...errorResponses() },
      },
    },
    async (request) => analytics.cleanup(principalOf(request), request.body),
  );
}

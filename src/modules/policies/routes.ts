import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams, PageQuery } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import { type PoliciesService, policyIdOf } from './service.ts';

export function registerPolicyRoutes(app: App, policies: PoliciesService): void {
  const tags = ['policies'];
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };

  app.post(
    '/v1/policies',
    {
      config: write,
      schema: {
        tags,
        summary: 'Create a policy (omitted fields get their defaults; writes version 1)',
        body: s.CreatePolicyBody,
        response: { 201: s.Policy, ...errorResponses(409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await policies.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/policies',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's policies, newest first",
        querystring: s.PolicyListQuery,
        response: { 200: s.Policies, ...errorResponses() },
      },
    },
    async (request) => policies.list(principalOf(request), request.query),
  );

  app.put(
    '/v1/policies/by-name/:name',
    {
      config: write,
      schema: {
        tags,
        summary: 'Create (201, with defaults) or deep-merge update (200) the policy of this name',
        params: s.NameParams,
        body: s.UpsertPolicyBody,
        response: { 200: s.Policy, 201: s.Policy, ...errorResponses(409) },
      },
    },
    async (request, reply) => {
      const result = await policies.upsertByName(principalOf(request), request.params.name, request.body);
      return reply.status(result.created ? 201 : 200).send(result.policy);
    },
  );

  app.get(
    '/v1/policies/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One policy',
        params: IdParams,
        response: { 200: s.Policy, ...errorResponses(404) },
      },
    },
    async (request) => policies.get(principalOf(request), policyIdOf(request.params.id)),
  );

  app.put(
    '/v1/policies/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Deep-merge the fields sent into the policy (omitted fields are kept)',
        params: IdParams,
        body: s.UpdatePolicyBody,
        response: { 200: s.Policy, ...errorResponses(404, 409) },
      },
    },
    async (request) => policies.update(principalOf(request), policyIdOf(request.params.id), request.body),
  );

  app.delete(
    '/v1/policies/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a policy (409 policy_in_use while an agent has it as its policy)',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await policies.remove(principalOf(request), policyIdOf(request.params.id));
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/policies/:id/versions',
    {
      config: read,
      schema: {
        tags,
        summary: 'Version history, oldest first (readable after the policy is deleted)',
        params: IdParams,
        querystring: PageQuery,
        response: { 200: s.PolicyVersions, ...errorResponses(404) },
      },
    },
    async (request) => policies.versions(principalOf(request), policyIdOf(request.params.id), request.query),
  );

  app.get(
    '/v1/policies/:id/versions/:n',
    {
      config: read,
      schema: {
        tags,
        summary: 'One version of a policy',
        params: s.VersionParams,
        response: { 200: s.PolicyVersion, ...errorResponses(404) },
      },
    },
    async (request) =>
      policies.version(principalOf(request), policyIdOf(request.params.id), request.params.n),
  );

  app.get(
    '/v1/policies/:id/stats',
    {
      config: read,
      schema: {
        tags,
        summary: 'Runs, spend and outcomes under this policy (runs started in [since, until))',
        params: IdParams,
        querystring: s.StatsQuery,
        response: { 200: s.PolicyStats, ...errorResponses(404) },
      },
    },
    async (request) => policies.stats(principalOf(request), policyIdOf(request.params.id), request.query),
  );

  app.get(
    '/v1/policies/:id/cost-trend',
    {
      config: read,
      schema: {
        tags,
        summary: 'Cost of each ended run under this policy, oldest first',
        params: IdParams,
        querystring: s.CostTrendQuery,
        response: { 200: s.CostTrend, ...errorResponses(404) },
      },
    },
    async (request) => policies.costTrend(principalOf(request), policyIdOf(request.params.id), request.query),
  );
}

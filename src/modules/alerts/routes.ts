import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { AlertRulesService } from './service.ts';

export function registerAlertRoutes(app: App, rules: AlertRulesService): void {
  const tags = ['alerts'];
  // Team admins manage rules (they e-mail people); every member reads. Agent keys: 403 agent_key_not_allowed.
  const read = { auth: { scope: 'read' } as const };
  const admin = { auth: { scope: 'admin' } as const };

  app.post(
    '/v1/alert-rules',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Create an alert rule: a condition on the team’s records, evaluated on a schedule',
        body: s.CreateAlertRuleBody,
        response: { 201: s.AlertRule, ...errorResponses(409) },
      },
    },
    async (request, reply) => reply.status(201).send(await rules.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/alert-rules',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's alert rules, newest first",
        querystring: s.AlertRuleListQuery,
        response: { 200: s.AlertRules },
      },
    },
    async (request) => rules.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/alert-rules/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One alert rule',
        params: IdParams,
        response: { 200: s.AlertRule, ...errorResponses(404) },
      },
    },
    async (request) => rules.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/alert-rules/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Change a rule: the fields sent (condition_config is replaced and checked against the type)',
        params: IdParams,
        body: s.UpdateAlertRuleBody,
        response: { 200: s.AlertRule, ...errorResponses(404, 409) },
      },
    },
    async (request) => rules.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/alert-rules/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Delete a rule (its firings stay listed in GET /v1/alerts)',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await rules.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  for (const [path, status, summary] of [
    ['enable', 'active', 'Evaluate the rule again (from the next tick)'],
    ['disable', 'disabled', 'Stop evaluating the rule'],
  ] as const)
    app.post(
      `/v1/alert-rules/:id/${path}`,
      {
        config: admin,
        schema: { tags, summary, params: IdParams, response: { 200: s.AlertRule, ...errorResponses(404) } },
      },
      async (request) => rules.setStatus(principalOf(request), request.params.id, status),
    );

  app.get(
    '/v1/alert-rules/:id/firings',
    {
      config: read,
      schema: {
        tags,
        summary: "The rule's firings with their evidence, newest first",
        params: IdParams,
        querystring: s.FiringListQuery,
        response: { 200: s.AlertFirings, ...errorResponses(404) },
      },
    },
    async (request) => rules.firings(principalOf(request), request.params.id, request.query),
  );

  app.get(
    '/v1/alerts',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's alert firings (every rule's, deleted rules' too), newest first",
        querystring: s.AlertListQuery,
        response: { 200: s.AlertFirings },
      },
    },
    async (request) => rules.alerts(principalOf(request), request.query),
  );
}

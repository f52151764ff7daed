import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { DeliveryParams } from '../webhooks/schemas.ts';
import type { NotificationsService } from './notifications.ts';
import * as s from './schemas.ts';
import type { ChannelsService } from './service.ts';

export function registerChannelRoutes(
  app: App,
  channels: ChannelsService,
  notifications: NotificationsService,
): void {
  const tags = ['channels'];
  // Team API keys and members; the service asks admin for changes, and refuses agent keys.
  const read = { auth: { scope: 'read' } as const };
  const admin = { auth: { scope: 'admin' } as const };

  app.post(
    '/v1/channels',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Create a notification channel; a webhook channel’s secret is shown only here',
        body: s.CreateChannelBody,
        response: { 201: s.ChannelWithSecret, ...errorResponses(409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await channels.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/channels',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's channels, newest first (never their config)",
        querystring: s.ChannelListQuery,
        response: { 200: s.Channels },
      },
    },
    async (request) => channels.list(principalOf(request), request.query),
  );

  app.post(
    '/v1/channels/test',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Send a test message with a provider config, saving nothing',
        body: s.TestChannelBody,
        response: { 200: s.TestResult, ...errorResponses(502) },
      },
    },
    async (request) => channels.test(principalOf(request), request.body),
  );

  app.get(
    '/v1/channels/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One channel (never its config)',
        params: IdParams,
        response: { 200: s.Channel, ...errorResponses(404) },
      },
    },
    async (request) => channels.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/channels/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Rename a channel or replace its events',
        params: IdParams,
        body: s.UpdateChannelBody,
        response: { 200: s.Channel, ...errorResponses(404, 409) },
      },
    },
    async (request) => channels.update(principalOf(request), request.params.id, request.body),
  );

  app.put(
    '/v1/channels/:id/config',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Replace the provider config entirely (rotate its secrets)',
        params: IdParams,
        body: s.ChannelConfigBody,
        response: { 200: s.ChannelWithSecret, ...errorResponses(404) },
      },
    },
    async (request) => channels.replaceConfig(principalOf(request), request.params.id, request.body.config),
  );

  app.delete(
    '/v1/channels/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Delete a channel with its deliveries',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await channels.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/channels/:id/deliveries',
    {
      config: read,
      schema: {
        tags,
        summary: "The channel's deliveries, newest first: attempts, last status code and error",
        params: IdParams,
        querystring: s.ChannelListQuery,
        response: { 200: s.ChannelDeliveries, ...errorResponses(404) },
      },
    },
    async (request) => channels.deliveriesOf(principalOf(request), request.params.id, request.query),
  );

  app.post(
    '/v1/channels/:id/deliveries/:delivery_id/redeliver',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Send an ended delivery once more (the same message and id); 409 while it is pending',
        params: DeliveryParams,
        response: { 202: s.ChannelDelivery, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply
        .status(202)
        .send(await channels.redeliver(principalOf(request), request.params.id, request.params.delivery_id)),
  );

  const inbox = ['notifications'];
  app.get(
    '/v1/notifications',
    {
      config: read,
      schema: {
        tags: inbox,
        summary: 'Your in-app notifications in the active team, newest first',
        querystring: s.NotificationListQuery,
        response: { 200: s.Notifications },
      },
    },
    async (request) => notifications.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/notifications/unread-count',
    {
      config: read,
      schema: {
        tags: inbox,
        summary: 'How many of your notifications are unread',
        response: { 200: s.UnreadCount },
      },
    },
    async (request) => notifications.unreadCount(principalOf(request)),
  );

  app.post(
    '/v1/notifications/read-all',
    {
      config: read,
      schema: { tags: inbox, summary: 'Mark all your notifications read', response: { 200: s.MarkedAll } },
    },
    async (request) => notifications.markAllRead(principalOf(request)),
  );

  app.post(
    '/v1/notifications/:id/read',
    {
      config: read,
      schema: {
        tags: inbox,
        summary: 'Mark one of your notifications read',
        params: IdParams,
        response: { 200: s.Notification, ...errorResponses(404) },
      },
    },
    async (request) => notifications.markRead(principalOf(request), request.params.id),
  );
}

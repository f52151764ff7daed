import type { Timers } from '../../core/context.ts';
import { principalOf } from '../../http/auth.ts';
import { sendSse, wantsEventStream } from '../../http/event-stream.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import { EVENT_TYPES } from './service.ts';
import { type EventStreamService, resumeAfter } from './stream.ts';

/** A comment line this often keeps proxies from closing a quiet stream. */
export const EVENTS_KEEPALIVE_MS = 30_000;
/**
 * A stream ends after this long, and its client comes back with
 * Last-Event-ID (an EventSource does so by itself, 2 s later), authenticated
 * again: a revoked key, a removed member or an ended session stops reading
 * the team's events within this time, not whenever the client hangs up.
 */
export const EVENTS_STREAM_LIFE_MS = 5 * 60_000;

// Team API keys and members with read scope; agent keys are refused (the auth rule takes none):
// a team's events name every agent, key and member.
const read = { auth: { scope: 'read' } as const };

const SORTED_TYPES = [...EVENT_TYPES].sort();

export function registerEventRoutes(app: App, stream: EventStreamService, timers: Timers): void {
  app.get(
    '/v1/events/types',
    {
      config: read,
      schema: {
        tags: ['events'],
        summary: 'Every event type there is: what a webhook or a channel can subscribe to',
        response: { 200: s.EventTypes },
      },
    },
    async () => ({ data: SORTED_TYPES }),
  );

  app.get(
    '/v1/events',
    {
      config: read,
      schema: {
        tags: ['events'],
        summary:
          'The team’s events, newest first (after=: oldest first from that event); with Accept: text/event-stream, a live stream (resumable with Last-Event-ID; 429 beyond the streams a team may hold open)',
        querystring: s.EventListQuery,
        response: { 200: s.Events, ...errorResponses(429) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (!wantsEventStream(request)) return stream.list(principal, request.query);
      const after = resumeAfter(request.headers['last-event-id'], request.query.after);
      const closed = new AbortController();
      // Filters, access and the cap are checked (a 400, 403 or 429 answered) before the stream starts.
      const frames = await stream.follow(principal, request.query, after, closed.signal);
      const life = timers.after(EVENTS_STREAM_LIFE_MS, () => closed.abort());
      try {
        await sendSse(request, reply, frames, closed, timers, {
          keepaliveMs: EVENTS_KEEPALIVE_MS,
          endEvent: false,
        });
      } finally {
        life.cancel();
      }
    },
  );
}

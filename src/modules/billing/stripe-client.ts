import Stripe from 'stripe';
import { Agent, fetch as undiciFetch } from 'undici';
import type { StripeSettings } from '../../billing-config.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';

const TIMEOUT_MS = 30_000;

/**
 * The official SDK, its every connection through the outbound-address guard:
 * Stripe's own API is public and passes; PADDOCK_STRIPE_API_URL (a local
 * server in tests, a proxy) is held to the guard's rules like a provider base
 * URL, so a private or loopback address needs PADDOCK_ALLOW_PRIVATE_UPSTREAMS.
 */
export function stripeClient(settings: StripeSettings, guard: OutboundGuard): Stripe {
  const dispatcher = new Agent({
    connect: guard.undiciConnector({ timeoutMs: 10_000 }),
    keepAliveTimeout: 10_000,
  });
  const guardedFetch = ((url: string, init: RequestInit) =>
    undiciFetch(url, { ...(init as object), dispatcher })) as unknown as typeof fetch;
  return new Stripe(settings.secretKey, {
    httpClient: Stripe.createFetchHttpClient(guardedFetch),
    timeout: TIMEOUT_MS,
    // Requests that change something carry idempotency keys of ours; one retry is the SDK's default.
    maxNetworkRetries: 1,
    telemetry: false,
    ...(settings.api
      ? { protocol: settings.api.protocol, host: settings.api.host, port: settings.api.port }
      : {}),
  });
}

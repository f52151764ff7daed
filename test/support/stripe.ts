import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

/** One request the Stripe SDK sent: its form body decoded into a flat map (`metadata[team_id]`). */
export interface StripeRequest {
  method: string;
  path: string;
  form: Record<string, string>;
  idempotencyKey: string | undefined;
  authorization: string | undefined;
}

/**
 * A stand-in for Stripe's API on 127.0.0.1: it records what the official SDK
 * sends and answers the minimal objects Paddock reads (customers, Checkout
 * and portal sessions, PaymentIntents). `decline` makes the next
 * PaymentIntents fail as a declined card does.
 */
export class StripeServer {
  readonly requests: StripeRequest[] = [];
  /** A card error for PaymentIntents (Stripe answers 402). */
  decline: { code: string; decline_code: string; message: string } | undefined;
  /** What GET /v1/customers/{id} says is the default payment method. */
  defaultPaymentMethod: string | null = 'pm_card_visa';
  private server: Server | undefined;
  private seq = 0;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        raw += chunk;
      });
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://stripe.test');
        const form = Object.fromEntries(new URLSearchParams(req.method === 'GET' ? url.search : raw));
        const key = req.headers['idempotency-key'];
        this.requests.push({
          method: req.method ?? 'GET',
          path: url.pathname,
          form,
          idempotencyKey: typeof key === 'string' ? key : undefined,
          authorization: req.headers.authorization,
        });
        const [status, body] = this.answer(req.method ?? 'GET', url.pathname, form);
        res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${this.seq}` });
        res.end(JSON.stringify(body));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** The requests to one method and path (a path ending in `*` matches the prefix). */
  sent(method: string, path: string): StripeRequest[] {
    return this.requests.filter(
      (r) =>
        r.method === method && (path.endsWith('*') ? r.path.startsWith(path.slice(0, -1)) : r.path === path),
    );
  }

  private answer(method: string, path: string, form: Record<string, string>): [number, unknown] {
    this.seq += 1;
    const n = this.seq;
    if (method === 'POST' && path === '/v1/customers')
      return [200, { id: `cus_test${n}`, object: 'customer', metadata: metadataOf(form) }];
    const customer = /^\/v1\/customers\/([^/]+)$/.exec(path);
    if (method === 'GET' && customer)
      return [
        200,
        {
          id: customer[1],
          object: 'customer',
          invoice_settings: { default_payment_method: this.defaultPaymentMethod },
        },
      ];
    if (method === 'GET' && /^\/v1\/customers\/[^/]+\/payment_methods$/.test(path))
      return [200, { object: 'list', data: [], has_more: false, url: path }];
    if (method === 'POST' && path === '/v1/checkout/sessions')
      return [
        200,
        {
          id: `cs_test${n}`,
          object: 'checkout.session',
          mode: form.mode,
          url: `https://checkout.stripe.test/c/cs_test${n}`,
        },
      ];
    if (method === 'POST' && path === '/v1/billing_portal/sessions')
      return [
        200,
        { id: `bps_${n}`, object: 'billing_portal.session', url: `https://billing.stripe.test/p/${n}` },
      ];
    if (method === 'POST' && path === '/v1/payment_intents') {
      if (this.decline)
        return [
          402,
          { error: { type: 'card_error', ...this.decline, payment_intent: { id: `pi_test${n}` } } },
        ];
      return [
        200,
        {
          id: `pi_test${n}`,
          object: 'payment_intent',
          amount: Number(form.amount),
          currency: form.currency,
          status: 'processing',
          metadata: metadataOf(form),
        },
      ];
    }
    return [404, { error: { type: 'invalid_request_error', message: `no such route ${method} ${path}` } }];
  }
}

function metadataOf(form: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(form)) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m) out[m[1]!] = v;
  }
  return out;
}

/** A webhook body as Stripe sends it, and its Stripe-Signature header made by the SDK's own test helper. */
export function signedEvent(
  secret: string,
  event: { id: string; type: string; object: Record<string, unknown>; created?: number },
): { payload: string; signature: string } {
  const payload = JSON.stringify({
    id: event.id,
    object: 'event',
    api_version: '2026-11-18.endive',
    created: event.created ?? Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: event.type,
    data: { object: event.object },
  });
  const signature = new Stripe('sk_test_signer').webhooks.generateTestHeaderString({ payload, secret });
  return { payload, signature };
}

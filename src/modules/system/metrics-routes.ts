import { createHash, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../core/clock.ts';
import { AppError } from '../../core/errors.ts';
import type { Metrics } from '../../core/metrics.ts';
import type { App } from '../../http/types.ts';

const CHALLENGE = { 'www-authenticate': 'Bearer realm="paddock-metrics"' };

/** SHA-256 first, so the comparison is of equal lengths whatever was sent, and takes the same time. */
const digest = (token: string) => createHash('sha256').update(token).digest();

/**
 * GET /metrics, wherever it is served (the main port, or its own address):
 * the token check and the text. Without PADDOCK_METRICS_TOKEN anyone who
 * reaches it may read it (docs/operations.md says when that is acceptable).
 */
export class MetricsEndpoint {
  private readonly tokenDigest: Buffer | undefined;
  /** host:port of its own server once that listens (PADDOCK_METRICS_LISTEN); undefined on the main port. */
  ownAddress: string | undefined;

  constructor(
    private readonly metrics: Metrics,
    token: string | undefined,
    private readonly clock: Clock,
  ) {
    this.tokenDigest = token === undefined ? undefined : digest(token);
  }

  /** Throws a 401 unless the request carries the metrics token (when one is set). */
  authorize(authorization: string | undefined): void {
    if (this.tokenDigest === undefined) return;
    const given = authorization === undefined ? undefined : /^Bearer +(\S+) *$/i.exec(authorization)?.[1];
    if (given === undefined)
      throw new AppError(
        401,
        'unauthenticated',
        'the metrics need "Authorization: Bearer <token>" with the server\'s PADDOCK_METRICS_TOKEN',
        undefined,
        CHALLENGE,
      );
    if (!timingSafeEqual(digest(given), this.tokenDigest))
      throw new AppError(401, 'invalid_token', 'the token is not the metrics token', undefined, CHALLENGE);
  }

  render(): Promise<string> {
    return this.metrics.render(this.clock.now());
  }

  get contentType(): string {
    return this.metrics.contentType;
  }
}

/** /metrics on the main port (when PADDOCK_METRICS_LISTEN does not give it an address of its own). */
export function registerMetricsRoute(app: App, endpoint: MetricsEndpoint): void {
  // Outside /v1 and the OpenAPI document: a Prometheus scrape, not an API call.
  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    endpoint.authorize(request.headers.authorization);
    const text = await endpoint.render();
    return reply.header('content-type', endpoint.contentType).send(text);
  });
}

import { createHmac, randomBytes } from 'node:crypto';

// Standard Webhooks (standardwebhooks.com): the secret is `whsec_` and the
// base64 of random bytes; a signature is `v1,` and the base64 HMAC-SHA256,
// keyed with those bytes, of `<webhook-id>.<webhook-timestamp>.<body>`.

const SECRET_PREFIX = 'whsec_';
/** 24 random bytes: the specification asks for 24 to 64. */
const SECRET_BYTES = 24;

export function newWebhookSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;
}

export function signature(secret: string, messageId: string, timestampSec: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  const mac = createHmac('sha256', key).update(`${messageId}.${timestampSec}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The headers of one attempt: one signature per secret (two during a rotation), space-separated. */
export function signedHeaders(
  secrets: readonly string[],
  messageId: string,
  timestampSec: number,
  body: string,
): Record<string, string> {
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(timestampSec),
    'webhook-signature': secrets.map((s) => signature(s, messageId, timestampSec, body)).join(' '),
  };
}

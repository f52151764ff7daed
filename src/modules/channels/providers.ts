import { type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { ValidationError } from '../../core/errors.ts';
import type { EventView } from '../events/stream.ts';
import { webhookBody } from '../webhooks/dispatcher.ts';
import { signedHeaders } from '../webhooks/signing.ts';
import { type Message, messageOf, plainText } from './messages.ts';

// Every provider's config (validated with TypeBox) and its real wire format:
// what one message to it looks like as an HTTP request.

export const PROVIDERS = [
  'slack',
  'discord',
  'teams',
  'googlechat',
  'telegram',
  'matrix',
  'webhook',
  'in_app',
] as const;
export type ChannelProvider = (typeof PROVIDERS)[number];

export type ChannelConfig = Record<string, unknown>;

const Text = (description: string) => Type.String({ minLength: 1, maxLength: 2000, description });
const Url = (description: string) => Type.String({ minLength: 1, maxLength: 2000, description });
const strict = <T extends Record<string, TSchema>>(props: T) =>
  Type.Object(props, { additionalProperties: false });

const IncomingWebhook = strict({ webhook_url: Url('the incoming-webhook URL the provider gave you') });

export const CONFIG_SCHEMAS: Record<ChannelProvider, TSchema> = {
  slack: IncomingWebhook,
  discord: IncomingWebhook,
  teams: IncomingWebhook,
  googlechat: IncomingWebhook,
  telegram: strict({
    bot_token: Text('the bot’s token from @BotFather'),
    chat_id: Type.String({ minLength: 1, maxLength: 100, description: 'the chat to post in' }),
  }),
  matrix: strict({
    homeserver_url: Url('e.g. https://matrix.example.org'),
    access_token: Text('the posting user’s access token'),
    room_id: Type.String({ minLength: 1, maxLength: 255, pattern: '^!', description: '!room:server' }),
  }),
  webhook: strict({
    url: Url('where the signed event JSON is POSTed'),
    secret: Type.Optional(
      Type.String({
        pattern: '^whsec_[A-Za-z0-9+/]{24,88}={0,2}$',
        description: 'whsec_ and base64; generated when omitted',
      }),
    ),
  }),
  in_app: strict({
    user_ids: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
        minItems: 1,
        maxItems: 200,
        uniqueItems: true,
      }),
    ),
  }),
};

/** The fields of a config that are URLs Paddock will connect to: checked by the outbound guard when saved. */
export const URL_FIELDS: Partial<Record<ChannelProvider, string>> = {
  slack: 'webhook_url',
  discord: 'webhook_url',
  teams: 'webhook_url',
  googlechat: 'webhook_url',
  matrix: 'homeserver_url',
  webhook: 'url',
};

/** The config, checked against its provider's schema: 400 validation_failed naming each bad field. */
export function validConfig(provider: ChannelProvider, config: unknown): ChannelConfig {
  const schema = CONFIG_SCHEMAS[provider];
  if (Value.Check(schema, config)) return config as ChannelConfig;
  const fields: Record<string, string> = {};
  for (const e of Value.Errors(schema, config)) {
    const params = e.params as { requiredProperties?: string[]; additionalProperties?: string[] };
    for (const name of params.requiredProperties ?? []) fields[`config.${name}`] = 'is required';
    for (const name of params.additionalProperties ?? [])
      fields[`config.${name}`] = `is not a field of a ${provider} channel`;
    if (e.instancePath !== '' && e.keyword !== 'boolean')
      fields[`config${e.instancePath.replaceAll('/', '.')}`] ??= e.message;
  }
  throw new ValidationError(
    `config is invalid for a ${provider} channel: ${Object.entries(fields)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}`,
    fields,
  );
}

/** Values to blank out of any error text kept or shown: every string of the config. */
export function secretsOf(config: ChannelConfig): string[] {
  return Object.values(config).filter((v): v is string => typeof v === 'string' && v.length >= 4);
}

export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.replaceAll(s, '[redacted]');
  return out;
}

export interface OutboundRequest {
  method: 'POST' | 'PUT';
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface RequestSettings {
  /** PADDOCK_TELEGRAM_API_URL: https://api.telegram.org by default. */
  telegramApiUrl: string;
}

const str = (config: ChannelConfig, key: string) => String(config[key]);
const trimSlash = (url: string) => url.replace(/\/+$/, '');

function chatBody(provider: ChannelProvider, m: Message): unknown {
  const text = plainText(m);
  switch (provider) {
    case 'slack':
      // Slack incoming webhooks: text is the fallback, blocks the layout.
      return {
        text,
        blocks: [
          { type: 'header', text: { type: 'plain_text', text: m.title } },
          { type: 'section', text: { type: 'mrkdwn', text: m.lines.join('\n') } },
        ],
      };
    case 'discord':
      return { content: `**${m.title}**\n${m.lines.join('\n')}`.slice(0, 2000) };
    case 'teams':
      // Office 365 connector MessageCard: title, and text where a blank line breaks a line.
      return {
        '@type': 'MessageCard',
        '@context': 'https://schema.org/extensions',
        summary: m.title,
        title: m.title,
        text: m.lines.join('\n\n'),
      };
    default:
      return { text };
  }
}

/**
 * The request that posts `event` to a channel. `messageId` is the delivery's
 * id: a webhook's webhook-id and a Matrix transaction id, the same on every
 * attempt, so a receiver can drop a repeat.
 */
export function requestFor(
  provider: Exclude<ChannelProvider, 'in_app'>,
  config: ChannelConfig,
  event: EventView,
  messageId: string,
  nowSec: number,
  settings: RequestSettings,
): OutboundRequest {
  const json = { 'content-type': 'application/json' };
  const m = messageOf(event);
  switch (provider) {
    case 'telegram':
      return {
        method: 'POST',
        url: `${trimSlash(settings.telegramApiUrl)}/bot${str(config, 'bot_token')}/sendMessage`,
        headers: json,
        body: JSON.stringify({ chat_id: str(config, 'chat_id'), text: plainText(m) }),
      };
    case 'matrix':
      return {
        method: 'PUT',
        url: `${trimSlash(str(config, 'homeserver_url'))}/_matrix/client/v3/rooms/${encodeURIComponent(
          str(config, 'room_id'),
        )}/send/m.room.message/${encodeURIComponent(messageId)}`,
        headers: { ...json, authorization: `Bearer ${str(config, 'access_token')}` },
        body: JSON.stringify({ msgtype: 'm.text', body: plainText(m) }),
      };
    case 'webhook': {
      const body = webhookBody(event);
      return {
        method: 'POST',
        url: str(config, 'url'),
        headers: { ...json, ...signedHeaders([str(config, 'secret')], messageId, nowSec, body) },
        body,
      };
    }
    default:
      return {
        method: 'POST',
        url: str(config, 'webhook_url'),
        headers: json,
        body: JSON.stringify(chatBody(provider, m)),
      };
  }
}

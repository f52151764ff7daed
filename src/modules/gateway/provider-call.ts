/** The providers Paddock can call (the one list: policies, provider keys and routing import it). */
export const PROVIDERS = ['anthropic', 'openai', 'openai_compatible'] as const;
export type Provider = (typeof PROVIDERS)[number];
/**
 * A wire format: what a client speaks at one of the gateway's endpoints, and
 * what a provider is spoken to in. `openai` is Chat Completions, `anthropic`
 * Messages, `responses` OpenAI's Responses API; `embeddings` and
 * `completions` are OpenAI's endpoints of those names.
 */
export type WireFormat = 'openai' | 'anthropic' | 'responses' | 'embeddings' | 'completions';

export const ANTHROPIC_VERSION = '2023-06-01';

/** The chat format a provider speaks natively (Messages for Anthropic, Chat Completions for the rest). */
export function formatOf(provider: Provider): 'openai' | 'anthropic' {
  return provider === 'anthropic' ? 'anthropic' : 'openai';
}

/**
 * The format `provider` is spoken to in to serve a client speaking `client`,
 * or null when that provider cannot serve it (the attempt is skipped):
 * chat formats translate both ways; the Responses API passes through to
 * OpenAI and goes as the provider's chat format elsewhere; embeddings and
 * legacy completions exist only on OpenAI-format providers.
 */
export function providerFormatFor(provider: Provider, client: WireFormat): WireFormat | null {
  switch (client) {
    case 'openai':
    case 'anthropic':
      return formatOf(provider);
    case 'responses':
      return provider === 'openai' ? 'responses' : formatOf(provider);
    case 'embeddings':
    case 'completions':
      return provider === 'anthropic' ? null : client;
  }
}

const PATH_OF: Record<WireFormat, string> = {
  openai: 'chat/completions',
  anthropic: 'messages',
  responses: 'responses',
  embeddings: 'embeddings',
  completions: 'completions',
};

/**
 * A provider's endpoint for a format. A base URL may or may not end in /v1
 * (Ollama and vLLM are usually configured as ".../v1"): both work.
 */
export function endpointOf(baseUrl: string, format: WireFormat): string {
  return underV1(baseUrl, PATH_OF[format]);
}

/** The provider's model list (`GET`): `/v1/models` in both wire formats. */
export function modelsEndpointOf(baseUrl: string): string {
  return underV1(baseUrl, 'models');
}

/** Anthropic's token count for a Messages request (`POST`). */
export function countTokensEndpointOf(baseUrl: string): string {
  return underV1(baseUrl, 'messages/count_tokens');
}

function underV1(baseUrl: string, path: string): string {
  const base = baseUrl.replace(/\/+$/, '');
  return base.endsWith('/v1') ? `${base}/${path}` : `${base}/v1/${path}`;
}

export function headersFor(provider: Provider, apiKey: string, stream: boolean): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: stream ? 'text/event-stream' : 'application/json',
  };
  if (provider === 'anthropic') {
    headers['x-api-key'] = apiKey;
    headers['anthropic-version'] = ANTHROPIC_VERSION;
  } else {
    headers.authorization = `Bearer ${apiKey}`;
  }
  return headers;
}

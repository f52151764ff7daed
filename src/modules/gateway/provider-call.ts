/** The providers Paddock can call (the one list: policies, provider keys and routing import it). */
export const PROVIDERS = ['anthropic', 'openai', 'openai_compatible'] as const;
export type Provider = (typeof PROVIDERS)[number];
/** The wire format each provider speaks. */
export type WireFormat = 'openai' | 'anthropic';

export const ANTHROPIC_VERSION = '2023-06-01';

export function formatOf(provider: Provider): WireFormat {
  return provider === 'anthropic' ? 'anthropic' : 'openai';
}

/**
 * The endpoint for a provider. A base URL may or may not end in /v1 (Ollama
 * and vLLM are usually configured as ".../v1"): both work.
 */
export function endpointOf(provider: Provider, baseUrl: string): string {
  return underV1(baseUrl, formatOf(provider) === 'anthropic' ? 'messages' : 'chat/completions');
}

/** The provider's model list (`GET`): `/v1/models` in both wire formats. */
export function modelsEndpointOf(baseUrl: string): string {
  return underV1(baseUrl, 'models');
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

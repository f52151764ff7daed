/** The providers Paddock can call and the wire format each speaks. */
export type Provider = 'anthropic' | 'openai' | 'openai_compatible';
export type WireFormat = 'openai' | 'anthropic';

export const DEFAULT_BASE_URLS: Record<Provider, string> = {
  anthropic: 'https://api.anthropic.com',
  openai: 'https://api.openai.com',
  openai_compatible: 'http://127.0.0.1:11434',
};

export const ANTHROPIC_VERSION = '2023-06-01';

export function formatOf(provider: Provider): WireFormat {
  return provider === 'anthropic' ? 'anthropic' : 'openai';
}

/**
 * The endpoint for a provider. A base URL may or may not end in /v1 (Ollama
 * and vLLM are usually configured as ".../v1"): both work.
 */
export function endpointOf(provider: Provider, baseUrl: string): string {
  const base = baseUrl.replace(/\/+$/, '');
  const path = formatOf(provider) === 'anthropic' ? 'messages' : 'chat/completions';
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

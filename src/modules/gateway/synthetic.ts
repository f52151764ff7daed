import { newId } from '../../core/ids.ts';
import { type Admitted, type ProxyResult, settleCall, usd, ZERO } from './call.ts';
import type { WireFormat } from './provider-call.ts';
import type { RateLimiter } from './rate-limit.ts';
import { formatSse, type SseEvent } from './sse.ts';
import { responsesFromChat } from './translation-responses-response.ts';
import { ResponsesStreamFromChat } from './translation-responses-stream.ts';

// Answers Paddock writes itself, in the client's wire format, so an SDK reads
// them like a provider's: the dry run's today.

/** A policy's dry_run: every check passed, nothing goes to a provider, and the step says so. */
export function dryRunAnswer(a: Admitted, limiter: RateLimiter, now: Date): ProxyResult {
  const text = '[dry run] governance checks passed; the request was not forwarded';
  settleCall(a, limiter, {
    status: 'success',
    provider: null,
    model: a.model,
    keyId: null,
    usage: ZERO,
    costMicros: 0,
    response: { dry_run: true },
    type: 'dry_run',
  });
  const headers = {
    ...a.headers,
    'x-paddock-step-id': a.stepId,
    'x-paddock-model': a.model,
    'x-paddock-cost-usd': usd(0),
  };
  if (!a.stream)
    return { kind: 'json', status: 200, headers, body: syntheticResponse(a.req.format, a.model, text, now) };
  const events = syntheticStream(a.req.format, a.model, text, now);
  return {
    kind: 'stream',
    headers,
    chunks: (async function* () {
      for (const e of events) yield formatSse(e);
    })(),
  };
}

export function syntheticResponse(format: WireFormat, model: string, text: string, now: Date): unknown {
  if (format === 'responses') {
    const chat = syntheticResponse('openai', model, text, now) as Record<string, unknown>;
    return responsesFromChat(chat, Math.floor(now.getTime() / 1000));
  }
  if (format === 'embeddings')
    return { object: 'list', data: [], model, usage: { prompt_tokens: 0, total_tokens: 0 } };
  if (format === 'completions') return textCompletion(model, now, text, 'stop');
  if (format === 'anthropic') {
    return {
      id: `msg_${newId('stp').slice(4)}`,
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    };
  }
  return {
    id: `chatcmpl-${newId('stp').slice(4)}`,
    object: 'chat.completion',
    created: Math.floor(now.getTime() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text, refusal: null },
        finish_reason: 'stop',
        logprobs: null,
      },
    ],
    usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  };
}

export function syntheticStream(format: WireFormat, model: string, text: string, now: Date): SseEvent[] {
  if (format === 'responses') {
    // The chat stream, with its usage chunk, as the Responses API's events.
    const chat = syntheticStream('openai', model, text, now);
    const usage = { choices: [], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } };
    chat.splice(-1, 0, { event: undefined, data: JSON.stringify(usage) });
    const translate = new ResponsesStreamFromChat(model, Math.floor(now.getTime() / 1000));
    return [...chat.flatMap((e) => translate.push(e)), ...translate.end()];
  }
  if (format === 'completions')
    return [
      { event: undefined, data: JSON.stringify(textCompletion(model, now, text, null)) },
      { event: undefined, data: JSON.stringify(textCompletion(model, now, '', 'stop')) },
      { event: undefined, data: '[DONE]' },
    ];
  if (format === 'anthropic') {
    const message = {
      id: `msg_${newId('stp').slice(4)}`,
      type: 'message',
      role: 'assistant',
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    };
    const ev = (event: string, data: unknown): SseEvent => ({
      event,
      data: JSON.stringify({ type: event, ...(data as object) }),
    });
    return [
      ev('message_start', { message }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text } }),
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', {
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 0 },
      }),
      ev('message_stop', {}),
    ];
  }
  const id = `chatcmpl-${newId('stp').slice(4)}`;
  const created = Math.floor(now.getTime() / 1000);
  const chunk = (delta: unknown, finish: string | null) => ({
    event: undefined,
    data: JSON.stringify({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    }),
  });
  return [
    chunk({ role: 'assistant', content: text }, null),
    chunk({}, 'stop'),
    { event: undefined, data: '[DONE]' },
  ];
}

/** A legacy completion (or one chunk of its stream, which has the same shape). */
function textCompletion(model: string, now: Date, text: string, finish: string | null): unknown {
  return {
    id: `cmpl-${newId('stp').slice(4)}`,
    object: 'text_completion',
    created: Math.floor(now.getTime() / 1000),
    model,
    choices: [{ index: 0, text, finish_reason: finish, logprobs: null }],
    usage: finish === null ? null : { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  };
}

import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { Nullable } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import {
  anthropicModel,
  anthropicModelPage,
  findModel,
  type ModelLister,
  openAiModel,
  openAiModelList,
} from './agent-models.ts';
import { proxyErrorRenderer } from './errors.ts';
import { agentOf } from './proxy-http.ts';
import type { ProxyRoute } from './routes.ts';
import type { GatewayService } from './service.ts';

// The gateway's endpoints beside chat: embeddings, legacy completions, token
// counting and the model list, each in the wire format of the SDKs that call it.

/** OpenAI's limit on the inputs of one embeddings request (and the prompts of one completion). */
const MAX_BATCH = 2048;
const TokenIds = Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 });
/** A string, strings, token ids, or arrays of token ids (OpenAI's four forms of a model input). */
const batchOf = (text: ReturnType<typeof Type.String>) =>
  Type.Union([
    text,
    Type.Array(text, { minItems: 1, maxItems: MAX_BATCH }),
    TokenIds,
    Type.Array(TokenIds, { minItems: 1, maxItems: MAX_BATCH }),
  ]);

const EmbeddingsBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 200 }),
    input: batchOf(Type.String({ minLength: 1 })),
    encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
    dimensions: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_536 })),
    user: Type.Optional(Type.String({ maxLength: 256 })),
    // Embeddings do not stream.
    stream: Type.Optional(Type.Literal(false)),
  },
  {
    additionalProperties: true,
    description: 'an OpenAI embeddings request; x-paddock-* run controls may ride',
  },
);

const CompletionsBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 200 }),
    prompt: batchOf(Type.String()),
    // 0 is allowed: with echo, a prompt's log probabilities and no new tokens.
    max_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 1_000_000 }))),
    n: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 128 }))),
    best_of: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 20 }))),
    stream: Type.Optional(Nullable(Type.Boolean())),
    stream_options: Type.Optional(
      Nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: true })),
    ),
    echo: Type.Optional(Nullable(Type.Boolean())),
    suffix: Type.Optional(Nullable(Type.String())),
    stop: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })]))),
    logprobs: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 5 }))),
    temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
    top_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
  },
  {
    additionalProperties: true,
    description: 'an OpenAI legacy completions request; x-paddock-* run controls may ride',
  },
);

const CountTokensBody = Type.Object(
  {
    model: Type.Optional(Type.String({ maxLength: 200 })),
    messages: Type.Array(Type.Unknown(), {
      minItems: 1,
      description: 'the conversation, as for /v1/messages',
    }),
    system: Type.Optional(Type.Unknown()),
    tools: Type.Optional(Type.Array(Type.Unknown())),
  },
  { additionalProperties: true, description: 'an Anthropic Messages request, without max_tokens' },
);

const ModelsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    after_id: Type.Optional(Type.String({ maxLength: 256 })),
    before_id: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
);

const ModelItem = Type.Object(
  {
    id: Type.String(),
    object: Type.Optional(Type.Literal('model')),
    created: Type.Optional(Type.Integer()),
    owned_by: Type.Optional(Type.String()),
    type: Type.Optional(Type.Literal('model')),
    display_name: Type.Optional(Type.String()),
    created_at: Type.Optional(Type.String()),
  },
  { description: "a model in OpenAI's shape, or Anthropic's with an anthropic-version header" },
);

const ModelList = Type.Object(
  {
    object: Type.Optional(Type.Literal('list')),
    data: Type.Array(ModelItem),
    has_more: Type.Optional(Type.Boolean()),
    first_id: Type.Optional(Nullable(Type.String())),
    last_id: Type.Optional(Nullable(Type.String())),
  },
  {
    description:
      "OpenAI's list; Anthropic's page (has_more, first_id, last_id) with an anthropic-version header",
  },
);

/** Anthropic's SDK sends its version header; everything else is answered as OpenAI would. */
const speaksAnthropic = (request: FastifyRequest) => request.headers['anthropic-version'] !== undefined;

const renderByClient = (
  request: FastifyRequest,
  ...rest: [number, string, string, Record<string, unknown>?]
) => proxyErrorRenderer(speaksAnthropic(request) ? 'anthropic' : 'openai')(request, ...rest);

export function registerEndpointRoutes(
  app: App,
  gateway: GatewayService,
  models: ModelLister,
  registerProxy: (route: ProxyRoute) => void,
): void {
  registerProxy({
    path: '/v1/embeddings',
    format: 'embeddings',
    summary: 'OpenAI embeddings through governance (agent key)',
    body: EmbeddingsBody,
  });
  registerProxy({
    path: '/v1/completions',
    format: 'completions',
    summary: 'OpenAI legacy text completions through governance (agent key)',
    body: CompletionsBody,
  });
  registerProxy({
    path: '/v1/messages/count_tokens',
    format: 'anthropic',
    summary: 'Anthropic token counting: free, rate-limited and recorded (agent key)',
    body: CountTokensBody,
    serve: (g, req) => g.countTokens(req),
  });

  // The data plane: its governance blocks are audited, its calls are not.
  const config = {
    auth: { scope: 'read' as const, agent: 'only' as const },
    renderError: renderByClient,
    audit: false as const,
  };
  app.get(
    '/v1/models',
    {
      config,
      schema: {
        tags: ['gateway'],
        summary: 'The models this agent may call (agent key)',
        querystring: ModelsQuery,
        response: { 200: ModelList },
      },
    },
    async (request) => {
      const usable = await gateway.models(agentOf(request), models);
      return speaksAnthropic(request) ? anthropicModelPage(usable, request.query) : openAiModelList(usable);
    },
  );
  app.get(
    '/v1/models/:id',
    {
      config,
      schema: {
        tags: ['gateway'],
        summary: 'One model this agent may call (agent key)',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) }),
        response: { 200: ModelItem },
      },
    },
    async (request) => {
      const model = findModel(await gateway.models(agentOf(request), models), request.params.id);
      return speaksAnthropic(request) ? anthropicModel(model) : openAiModel(model);
    },
  );
}

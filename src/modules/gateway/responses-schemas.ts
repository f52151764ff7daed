import { type TSchema, Type } from 'typebox';
import { Nullable } from '../../http/schemas.ts';

// OpenAI's Responses API request, as far as Paddock reads it. Objects accept
// fields beyond these (the API grows; a passthrough to OpenAI carries them),
// but the ones named here must have the right shape.

const open = <T extends Record<string, TSchema>>(properties: T, description?: string) =>
  Type.Object(properties, { additionalProperties: true, ...(description ? { description } : {}) });

// PADDOCK_DEFAULT_MAX_TOKENS has the same ceiling.
const MaxTokens = Type.Integer({ minimum: 1, maximum: 1_000_000 });

const ContentPart = Type.Union([
  open({ type: Type.Literal('input_text'), text: Type.String() }),
  open({ type: Type.Literal('output_text'), text: Type.String() }),
  open({ type: Type.Literal('refusal'), refusal: Type.String() }),
  open({
    type: Type.Literal('input_image'),
    image_url: Type.Optional(Nullable(Type.String())),
    file_id: Type.Optional(Nullable(Type.String())),
    detail: Type.Optional(Type.Union([Type.Literal('low'), Type.Literal('high'), Type.Literal('auto')])),
  }),
  open({
    type: Type.Literal('input_file'),
    file_data: Type.Optional(Type.String()),
    file_id: Type.Optional(Nullable(Type.String())),
    filename: Type.Optional(Type.String()),
  }),
]);

const MessageItem = open(
  {
    type: Type.Optional(Type.Literal('message')),
    role: Type.Union([
      Type.Literal('user'),
      Type.Literal('assistant'),
      Type.Literal('system'),
      Type.Literal('developer'),
    ]),
    content: Type.Union([Type.String(), Type.Array(ContentPart)]),
  },
  'a message',
);

const FunctionCallItem = open({
  type: Type.Literal('function_call'),
  call_id: Type.String({ minLength: 1 }),
  name: Type.String({ minLength: 1 }),
  arguments: Type.String(),
});

const FunctionCallOutputItem = open({
  type: Type.Literal('function_call_output'),
  call_id: Type.String({ minLength: 1 }),
  output: Type.Union([Type.String(), Type.Array(open({ type: Type.String() }))]),
});

// Reasoning items, hosted tools' calls, item references…: their type names none of the above.
const OtherItem = open({
  type: Type.String({ pattern: '^(?!(message|function_call|function_call_output)$)' }),
});

export const ResponseInputItem = Type.Union([
  MessageItem,
  FunctionCallItem,
  FunctionCallOutputItem,
  OtherItem,
]);

const FunctionTool = open({
  type: Type.Literal('function'),
  name: Type.String({ minLength: 1, maxLength: 128 }),
  description: Type.Optional(Nullable(Type.String())),
  parameters: Type.Optional(Nullable(Type.Record(Type.String(), Type.Unknown()))),
  strict: Type.Optional(Nullable(Type.Boolean())),
});

// Hosted tools (web_search, file_search, code_interpreter, …): checked where they are served.
const OtherTool = open({ type: Type.String({ pattern: '^(?!function$)' }) });

const TextFormat = Type.Union([
  open({ type: Type.Literal('text') }),
  open({ type: Type.Literal('json_object') }),
  open({
    type: Type.Literal('json_schema'),
    name: Type.String({ minLength: 1, maxLength: 64 }),
    schema: Type.Record(Type.String(), Type.Unknown()),
    description: Type.Optional(Type.String()),
    strict: Type.Optional(Nullable(Type.Boolean())),
  }),
]);

export const ResponsesBody = Type.Object(
  {
    model: Type.Optional(Type.String({ maxLength: 200 })),
    input: Type.Union([Type.String(), Type.Array(ResponseInputItem)]),
    instructions: Type.Optional(Nullable(Type.String())),
    tools: Type.Optional(Type.Array(Type.Union([FunctionTool, OtherTool]))),
    tool_choice: Type.Optional(
      Type.Union([
        Type.Literal('auto'),
        Type.Literal('none'),
        Type.Literal('required'),
        open({ type: Type.String() }),
      ]),
    ),
    parallel_tool_calls: Type.Optional(Nullable(Type.Boolean())),
    // Paddock reserves budget from it, so it must be a sane whole number.
    max_output_tokens: Type.Optional(Nullable(MaxTokens)),
    temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
    top_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
    reasoning: Type.Optional(
      Nullable(
        open({
          effort: Type.Optional(
            Nullable(
              Type.Union([
                Type.Literal('none'),
                Type.Literal('minimal'),
                Type.Literal('low'),
                Type.Literal('medium'),
                Type.Literal('high'),
              ]),
            ),
          ),
        }),
      ),
    ),
    text: Type.Optional(Nullable(open({ format: Type.Optional(TextFormat) }))),
    // OpenAI: at most 16 pairs, keys up to 64 characters, values up to 512.
    metadata: Type.Optional(
      Nullable(
        Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 512 }), { maxProperties: 16 }),
      ),
    ),
    store: Type.Optional(Nullable(Type.Boolean())),
    previous_response_id: Type.Optional(Nullable(Type.String({ maxLength: 100 }))),
    stream: Type.Optional(Nullable(Type.Boolean())),
    user: Type.Optional(Type.String({ maxLength: 256 })),
    // Both would need the provider to keep the response, which it is never asked to (store: false).
    background: Type.Optional(
      Nullable(
        Type.Literal(false, { description: 'background responses are not supported: stream instead' }),
      ),
    ),
    conversation: Type.Optional(
      Type.Null({ description: 'OpenAI conversations are not supported: use previous_response_id' }),
    ),
  },
  {
    additionalProperties: true,
    description: 'an OpenAI Responses API request; x-paddock-* run controls may ride as top-level fields',
  },
);

export const ResponseIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export const InputItemsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'desc' })),
    after: Type.Optional(Type.String({ maxLength: 200 })),
    include: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  },
  { additionalProperties: false },
);

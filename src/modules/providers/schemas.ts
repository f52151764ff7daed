import { Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';

import { PROVIDERS } from '../gateway/provider-call.ts';

export const Provider = Type.Enum(PROVIDERS);
export const KeyStatus = Type.Enum(['active', 'disabled', 'deleted']);

/** Names travel in URLs (/by-name/{name}): no slashes, no blank ends. */
export const KeyName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\s/](?:[^/]*[^\\s/])?$',
  description: 'unique among the team’s keys that are not deleted; no "/"',
});
const Id = Type.String({ minLength: 1, maxLength: 100 });

const ApiKeySecret = Type.String({
  minLength: 1,
  maxLength: 4096,
  pattern: '^\\S+$',
  description: 'the provider secret; sealed at rest and never shown again (only its last 4 characters)',
});

export const BaseUrl = Type.String({
  maxLength: 2000,
  format: 'uri',
  pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
  description: 'http(s) endpoint replacing the provider default; required for openai_compatible',
});

const UsdPerMtok = Type.Number({ minimum: 0, maximum: 1_000_000 });
export const PriceOverrides = Type.Record(
  Type.String({ minLength: 1, maxLength: 200 }),
  Type.Object(
    {
      input: UsdPerMtok,
      output: UsdPerMtok,
      cache_read: Type.Optional(UsdPerMtok),
      cache_write: Type.Optional(UsdPerMtok),
    },
    { additionalProperties: false },
  ),
  {
    maxProperties: 200,
    propertyNames: { not: { enum: ['__proto__', 'constructor', 'prototype'] } },
    description:
      'model name or glob → USD per million tokens; beats the built-in price table for calls made with this key',
  } as Record<string, unknown>,
);

export const CreateProviderKeyBody = Body({
  name: KeyName,
  provider: Provider,
  api_key: ApiKeySecret,
  base_url: Type.Optional(Nullable(BaseUrl)),
  price_overrides: Type.Optional(Nullable(PriceOverrides)),
});

export const UpdateProviderKeyBody = Body(
  {
    name: Type.Optional(KeyName),
    base_url: Type.Optional(Nullable(BaseUrl)),
    api_key: Type.Optional(ApiKeySecret),
    price_overrides: Type.Optional(Nullable(PriceOverrides)),
  },
  'the fields sent replace the key’s; a new api_key is a rotation',
);

export const UpsertProviderKeyBody = Body(
  {
    provider: Type.Optional(Provider),
    api_key: Type.Optional(ApiKeySecret),
    base_url: Type.Optional(Nullable(BaseUrl)),
    price_overrides: Type.Optional(Nullable(PriceOverrides)),
  },
  'creates the key (provider and api_key required) or updates it (provider, when sent, must match)',
);

export const ProviderKey = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  provider: Provider,
  api_key: Nullable(Type.String({ description: 'masked: "…" and the last 4 characters; null once deleted' })),
  status: KeyStatus,
  base_url: Nullable(Type.String()),
  price_overrides: Nullable(PriceOverrides),
  last_used_at: NullableTimestamp,
  rotated_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const ProviderKeys = Paginated(ProviderKey);

export const ProviderKeyListQuery = Type.Object(
  {
    provider: Type.Optional(Provider),
    status: Type.Optional(KeyStatus),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);

export const KeyNameParams = Type.Object({ name: KeyName });

export const DeleteQuery = Type.Object({ remap_to: Type.Optional(Id) }, { additionalProperties: false });

export const Deleted = Type.Object({
  message: Type.String(),
  remapped_agents: Type.Integer(),
});

export const Dependents = Type.Object({
  agents: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      is_only_key_for_provider: Type.Boolean({
        description:
          'the agent has no other key for this provider: disabling or deleting it cuts the agent off',
      }),
    }),
  ),
  active_run_count: Type.Integer({ description: 'running runs of those agents' }),
  runs_last_30_days: Type.Integer({ description: 'runs with a call made with this key in the last 30 days' }),
  last_used_at: NullableTimestamp,
});

export const ProviderHealth = Type.Object({
  provider_key_id: Type.String(),
  name: Type.String(),
  provider: Provider,
  state: Type.Enum(['closed', 'open', 'half_open']),
  failure_count: Type.Integer({ description: 'consecutive failures' }),
  last_failure_at: NullableTimestamp,
  last_success_at: NullableTimestamp,
  opened_at: NullableTimestamp,
  recovery_at: Nullable(
    Type.String({ format: 'date-time', description: 'when a half-open probe is let through' }),
  ),
  p50_latency_ms: Nullable(Type.Number()),
});
export const ProviderHealthList = Type.Object({ data: Type.Array(ProviderHealth) });

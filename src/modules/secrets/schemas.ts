import { Type } from 'typebox';
import { Body, ListQuery, Nullable, Paginated, Timestamp } from '../../http/schemas.ts';
import { ENV_NAME_PATTERN, MAX_NAME_LENGTH, MAX_VALUE_LENGTH, NAME_RULE } from '../sandboxes/envs.ts';

/** The capsule's rule for environment variables, as the tool processes receive them. */
export const SecretName = Type.String({
  minLength: 1,
  maxLength: MAX_NAME_LENGTH,
  pattern: ENV_NAME_PATTERN,
  description: `the environment variable the value is set as, e.g. DATABASE_URL: ${NAME_RULE}`,
});

/**
 * At least 4 characters: the runner replaces every value it finds in tool
 * output, and a shorter one would blank out ordinary text. At most what a
 * capsule process may be given in one variable, and no NUL (envs.ts).
 */
export const SecretValue = Type.String({
  minLength: 4,
  maxLength: MAX_VALUE_LENGTH,
  pattern: '^[^\\u0000]*$',
  description:
    'sealed at rest; never shown again, and replaced by [secret:NAME] wherever it appears in tool output',
});

export const SecretScope = Type.Enum(['all', 'agents'], {
  description: 'all: every agent of the team; agents: only the agents in agent_ids',
});

const AgentIds = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
  maxItems: 200,
  uniqueItems: true,
  description: 'with scope agents: the agents that get the secret (at least one)',
});

export const CreateSecretBody = Body({
  name: SecretName,
  value: SecretValue,
  scope: Type.Optional(SecretScope),
  agent_ids: Type.Optional(AgentIds),
});

export const UpdateSecretBody = Body({
  name: Type.Optional(SecretName),
  value: Type.Optional(SecretValue),
  scope: Type.Optional(SecretScope),
  agent_ids: Type.Optional(AgentIds),
});

/** PUT /v1/secrets/{name}: the value, and (when sent) which agents get it. */
export const PutSecretBody = Body({
  value: SecretValue,
  scope: Type.Optional(SecretScope),
  agent_ids: Type.Optional(AgentIds),
});

/** `{id}`: a secret's id (sec_…) or its name. */
export const SecretRefParams = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: MAX_NAME_LENGTH, description: 'the secret’s id or its name' }),
  },
  { additionalProperties: false },
);

export const SecretHistoryQuery = ListQuery({});

export const SecretListQuery = ListQuery({
  agent_id: Type.Optional(
    Type.String({ minLength: 1, maxLength: 100, description: 'only the secrets this agent gets' }),
  ),
});

export const Secret = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  value: Type.Literal('••••••••', { description: 'always redacted' }),
  value_version: Type.Integer({
    description: 'the value’s version: 1 when created, one more at each new value',
  }),
  scope: SecretScope,
  agent_ids: Type.Array(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const Secrets = Paginated(Secret);

export const RevealedSecret = Type.Object({
  id: Type.String(),
  name: Type.String(),
  value: Type.String({ description: 'the value itself (answered with Cache-Control: no-store)' }),
  value_version: Type.Integer(),
});

export const SecretVersion = Type.Object({
  secret_id: Type.String(),
  name: Type.String({ description: 'the secret’s name now' }),
  version: Type.Integer(),
  changed_by_kind: Type.String({ description: 'user, api_key, agent or system' }),
  changed_by: Nullable(Type.String({ description: 'the user’s, key’s or agent’s id' })),
  changed_at: Timestamp,
});

export const SecretHistory = Paginated(SecretVersion);

import { AppError, UnauthorizedError } from '../../core/errors.ts';
import type { AgentId, TeamId } from '../../core/ids.ts';
import { boundKeyIds } from './admission.ts';
import { GovernanceBlock } from './errors.ts';
import { checkModel } from './governance.ts';
import type { KeyToList, ListedModel } from './models.ts';
import type { GatewayPorts } from './ports.ts';
import type { Provider } from './provider-call.ts';

/** What lists a provider key's models (ModelLists, cached per key). */
export interface ModelLister {
  list(teamId: TeamId, keys: readonly KeyToList[]): Promise<ListedModel[]>;
}

/** One model an agent may call: the first of its keys (in id order) that serves it. */
export interface UsableModel {
  id: string;
  provider: Provider;
}

/**
 * `GET /v1/models` for an agent key: the models its usable provider keys can
 * reach (what `GET /v1/agents/{id}/models` lists) that its policy allows — the
 * blocked_models / allowed_models rules; under a model_override only that model,
 * the one every call goes to. One entry an id, sorted by id.
 */
export async function usableModels(
  ports: Pick<GatewayPorts, 'agent' | 'policy' | 'keys'>,
  lister: ModelLister,
  agentId: AgentId,
): Promise<UsableModel[]> {
  const agent = await ports.agent(agentId);
  if (!agent) throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
  if (agent.status === 'disabled')
    throw new GovernanceBlock(403, 'agent_disabled', `agent ${agent.name} is disabled`, null);
  const policy = await ports.policy(agent.teamId, agent.policyId);
  const keys = await ports.keys(agent.teamId, boundKeyIds(agent.providerKeys));
  const listed =
    keys.size === 0
      ? []
      : await lister.list(
          agent.teamId,
          [...keys.values()].map((k) => ({ id: k.id, provider: k.provider })),
        );
  const spec = policy?.spec;
  const out = new Map<string, UsableModel>();
  for (const m of listed) {
    if (out.has(m.id)) continue;
    if (spec?.model_override ? m.id !== spec.model_override : spec && !checkModel(spec, m.id).ok) continue;
    out.set(m.id, { id: m.id, provider: m.provider });
  }
  return [...out.values()];
}

/**
 * Paddock keeps no provider's release dates: every model says the Unix epoch
 * (`created: 0`, `created_at: 1970-01-01T00:00:00Z`).
 */
const EPOCH = new Date(0).toISOString().replace('.000Z', 'Z');

export function openAiModel(m: UsableModel) {
  return { id: m.id, object: 'model' as const, created: 0, owned_by: m.provider };
}

export function anthropicModel(m: UsableModel) {
  return { type: 'model' as const, id: m.id, display_name: m.id, created_at: EPOCH };
}

/** OpenAI's list: every model at once. */
export function openAiModelList(models: readonly UsableModel[]) {
  return { object: 'list' as const, data: models.map(openAiModel) };
}

/** Anthropic's page: `limit` (1–1000, default 20) after `after_id` or before `before_id`. */
export function anthropicModelPage(
  models: readonly UsableModel[],
  q: { limit?: number; after_id?: string; before_id?: string },
) {
  const ids = models.map((m) => m.id);
  const limit = q.limit ?? 20;
  let start = q.after_id !== undefined ? ids.indexOf(q.after_id) + 1 : 0;
  let end = ids.length;
  if (q.before_id !== undefined && q.after_id === undefined) {
    end = Math.max(0, ids.indexOf(q.before_id));
    start = Math.max(0, end - limit);
  }
  end = Math.min(end, start + limit);
  const page = models.slice(start, end);
  const hasMore = q.before_id !== undefined && q.after_id === undefined ? start > 0 : end < ids.length;
  return {
    data: page.map(anthropicModel),
    has_more: hasMore,
    first_id: page[0]?.id ?? null,
    last_id: page.at(-1)?.id ?? null,
  };
}

/** The model `id` of the list, or a 404 naming it. */
export function findModel(models: readonly UsableModel[], id: string): UsableModel {
  const found = models.find((m) => m.id === id);
  if (!found)
    throw new AppError(
      404,
      'model_not_found',
      `the model ${id} does not exist or this agent may not use it`,
      {
        model: id,
      },
    );
  return found;
}

import { newId } from '../../core/ids.ts';
import type { ActivityActorType, ActivityLink } from '../../db/schema/activity.ts';
import type { EventInsert } from '../events/repo.ts';
import type { ActivityInsert } from './repo.ts';

/** The feed's actor types: people, agents and team keys by name; anything else (hosts, Paddock's own work) is system. */
export function activityActorType(actorKind: string): ActivityActorType {
  return actorKind === 'user' || actorKind === 'agent' || actorKind === 'api_key' ? actorKind : 'system';
}

type Data = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const quoted = (v: unknown): string => {
  const s = str(v);
  if (s === undefined) return '';
  return ` “${s.length > 80 ? `${s.slice(0, 79)}…` : s}”`;
};
const words = (s: string) => s.replace(/_/g, ' ');
/** A work item's or a named resource's name in a summary: its title, name or filename. */
const nameOf = (d: Data) => quoted(d.title ?? d.name ?? d.filename ?? d.email);
const assignee = (type: unknown, id: unknown) =>
  str(id) ? `${str(type) ?? ''} ${str(id)}`.trim() : 'nobody';

/** Summaries worth more than the generic one: what a reader asks about first. */
const SUMMARIES: Record<string, (d: Data) => string> = {
  'work_item.created': (d) => `Created work item${nameOf(d)} (${d.priority}, ${words(String(d.status))})`,
  'work_item.updated': (d) =>
    `Updated work item${nameOf(d)}: ${((d.changed_fields as string[]) ?? []).map(words).join(', ')}`,
  'work_item.status_changed': (d) =>
    `Moved work item${nameOf(d)} from ${words(String(d.from))} to ${words(String(d.to))}`,
  'work_item.assigned': (d) =>
    `Assigned work item${nameOf(d)} to ${assignee(d.assignee_type, d.assignee_id)}`,
  'work_item.commented': (d) => `Commented on work item${nameOf(d)}`,
  'work_item.comment_deleted': (d) => `Deleted a comment on work item${nameOf(d)}`,
  'work_item.linked': (d) => `Linked ${words(String(d.target_type))} ${d.target_id} to work item${nameOf(d)}`,
  'work_item.unlinked': (d) =>
    `Unlinked ${words(String(d.target_type))} ${d.target_id} from work item${nameOf(d)}`,
  'work_item.archived': (d) => `Archived work item${nameOf(d)}`,
  'work_item.unarchived': (d) => `Unarchived work item${nameOf(d)}`,
  'task.created': (d) => `Submitted a task to agent ${d.agent_id} (model ${d.model})`,
  'task.started': (d) => `Started a task for agent ${d.agent_id} (attempt ${d.attempt})`,
  'task.completed': (d) => `Completed a task of agent ${d.agent_id} in ${d.turns} turns`,
  'task.failed': (d) => `A task of agent ${d.agent_id} failed (${d.code})`,
  'task.cancelled': (d) => `Cancelled a task of agent ${d.agent_id}`,
  'agent.online': (d) => `Agent${nameOf(d)} came online (${words(String(d.status))})`,
  'agent.offline': (d) => `Agent${nameOf(d)} went offline (no heartbeat since ${d.last_heartbeat_at})`,
  'credits.added': (d) => `Added ${d.amount} credits (${d.type}): balance ${d.balance}`,
  'credits.low': (d) => `Credits are low: ${d.balance} left, below ${d.threshold}`,
  'credits.exhausted': (d) => `Credits ran out (balance ${d.balance})`,
  'member.added': (d) => `Added member ${d.user_id} as ${d.role}`,
  'member.removed': (d) => `Removed member ${d.user_id}`,
  'member.role_changed': (d) => `Changed member ${d.user_id}'s role from ${d.from} to ${d.to}`,
  'capsule.state_changed': (d) => `Capsule went from ${d.from} to ${d.to}`,
  'alert.triggered': (d) => `Alert${quoted(d.rule_name)} fired`,
  'playbook.fired': (d) => `Fired a playbook (run ${d.run_id})${d.skipped ? ', skipped' : ''}`,
};

/** The generic summary: the event's verb and noun in words, with the name it carries ("Agent created “scout”"). */
function genericSummary(type: string, data: Data): string {
  const dot = type.indexOf('.');
  const noun = words(type.slice(0, dot));
  const verb = words(type.slice(dot + 1));
  return `${noun.charAt(0).toUpperCase()}${noun.slice(1)} ${verb}${nameOf(data)}`;
}

export function summaryOf(type: string, data: Data): string {
  const special = SUMMARIES[type];
  return special ? special(data) : genericSummary(type, data);
}

/**
 * The activity entry a team's event makes (events of no team make none): who
 * did what to which resource, with a readable summary. An agent's own report
 * (activity.reported) is its entry as the agent wrote it.
 */
export function activityEntryOf(event: EventInsert): ActivityInsert | undefined {
  if (!event.teamId) return undefined;
  const data = event.data;
  const common = {
    id: newId('act'),
    teamId: event.teamId,
    eventId: event.id,
    actorType: activityActorType(event.actorKind),
    actorId: event.actorId ?? null,
    createdAt: event.createdAt,
  };
  if (event.type === 'activity.reported') {
    return {
      ...common,
      source: 'reported',
      action: String(data.action),
      resourceType: (data.resource_type as string | null) ?? null,
      resourceId: (data.resource_id as string | null) ?? null,
      summary: String(data.summary),
      details: (data.details as Data) ?? {},
      links: (data.links as ActivityLink[]) ?? [],
    };
  }
  return {
    ...common,
    source: 'event',
    action: event.type,
    resourceType: event.type.slice(0, event.type.indexOf('.')),
    resourceId: event.subjectId ?? null,
    summary: summaryOf(event.type, data),
    details: data,
    links: [],
  };
}

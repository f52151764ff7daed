import type { EventView } from '../events/stream.ts';

// The readable message of an event, the same words for every chat provider:
// a title naming the event, then its subject and the scalar fields of its
// payload (events never hold a secret, a prompt or a result: docs/events.md).

const MAX_FIELDS = 12;
const MAX_VALUE_CHARS = 200;

export interface Message {
  /** "Paddock: task.completed" */
  title: string;
  /** "field: value" lines: the subject, the payload's fields, the time. */
  lines: string[];
}

function valueText(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) {
    const items = value.filter((v) => typeof v !== 'object' || v === null).map(String);
    return items.length > 0 ? items.join(', ') : undefined;
  }
  if (typeof value === 'object') return undefined;
  const text = String(value);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
}

export function messageOf(event: EventView): Message {
  const lines: string[] = [];
  if (event.subject_id) lines.push(`subject: ${event.subject_id}`);
  for (const [key, value] of Object.entries(event.data).slice(0, MAX_FIELDS)) {
    const text = valueText(value);
    if (text !== undefined && text !== '') lines.push(`${key}: ${text}`);
  }
  lines.push(`by: ${event.actor_kind}${event.actor_id ? ` ${event.actor_id}` : ''}`);
  lines.push(`at: ${event.created_at}`);
  return { title: `Paddock: ${event.type}`, lines };
}

/** Plain text: the title, then one line per field. */
export function plainText(m: Message): string {
  return [m.title, ...m.lines].join('\n');
}

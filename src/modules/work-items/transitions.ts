import { ConflictError } from '../../core/errors.ts';
import type { WorkItemStatus } from '../../db/schema/work-items.ts';

/**
 * Where an item may go from each status (Orkosi lists the statuses, not the
 * moves; docs/work-board.md). Work starts before it is reviewed; done and
 * cancelled items are reopened to todo first.
 */
export const ALLOWED_TRANSITIONS: Record<WorkItemStatus, readonly WorkItemStatus[]> = {
  todo: ['in_progress', 'done', 'blocked', 'cancelled'],
  in_progress: ['todo', 'review', 'done', 'blocked', 'cancelled'],
  review: ['in_progress', 'done', 'blocked', 'cancelled'],
  blocked: ['todo', 'in_progress', 'cancelled'],
  done: ['todo'],
  cancelled: ['todo'],
};

/** A move the table does not allow: 409 invalid_transition, naming where it could go. */
export function checkTransition(from: WorkItemStatus, to: WorkItemStatus): void {
  const allowed = ALLOWED_TRANSITIONS[from];
  if (!allowed.includes(to))
    throw new ConflictError(
      'invalid_transition',
      `a work item cannot move from ${from} to ${to}; from ${from} it may move to ${allowed.join(', ')}`,
      { from, to, allowed: [...allowed] },
    );
}

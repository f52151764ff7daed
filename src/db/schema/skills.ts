import { index, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps } from './columns.ts';
import { namedTeamRow } from './identity.ts';

/**
 * A team's skills: named instruction documents (markdown) with a short
 * description. An agent lists the ones it may use (definition.skill_ids); a
 * task's system prompt names them, and the model loads one's content with
 * load_skill only when it needs it.
 */
export const skills = pgTable(
  'skills',
  {
    ...namedTeamRow<Id<'skl'>>(),
    description: text('description').notNull(),
    content: text('content').notNull(),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('skills_team_name_key').on(t.teamId, t.name),
    index('skills_team_idx').on(t.teamId, t.id),
  ],
);

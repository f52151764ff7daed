import type { SkillRow, SkillSummaryRow } from './repo.ts';

export function skillSummaryView(row: SkillSummaryRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    name: row.name,
    description: row.description,
    content_chars: row.contentChars,
    created_by: row.createdBy,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type SkillSummaryView = ReturnType<typeof skillSummaryView>;

/** Characters as the limits count them (Unicode code points, as Ajv and Postgres's char_length do). */
export function charCount(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

export function skillView(row: SkillRow) {
  return { ...skillSummaryView({ ...row, contentChars: charCount(row.content) }), content: row.content };
}
export type SkillView = ReturnType<typeof skillView>;

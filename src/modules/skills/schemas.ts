import { Type } from 'typebox';
import { Body, Nullable, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

/** A skill's name is what the model passes to load_skill: a short slug. */
export const SKILL_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,63}$';
export const MAX_DESCRIPTION_CHARS = 1000;
export const MAX_CONTENT_CHARS = 200_000;

export const SkillName = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: SKILL_NAME_PATTERN,
  description: 'unique in the team; lower-case letters, digits, _ and -, starting with a letter or digit',
});

const SkillDescription = Type.String({
  minLength: 1,
  maxLength: MAX_DESCRIPTION_CHARS,
  pattern: '\\S',
  description:
    'what the skill is for: the model sees it in every task, and decides from it to load the skill',
});

const SkillContent = Type.String({
  minLength: 1,
  maxLength: MAX_CONTENT_CHARS,
  pattern: '\\S',
  description: 'the instructions (markdown); the model gets them only when it calls load_skill',
});

export const CreateSkillBody = Body({
  name: SkillName,
  description: SkillDescription,
  content: SkillContent,
});

export const UpdateSkillBody = Body({
  name: Type.Optional(SkillName),
  description: Type.Optional(SkillDescription),
  content: Type.Optional(SkillContent),
});

export const SkillListQuery = PageQuery;

const skillFields = {
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  content_chars: Type.Integer({ description: 'the length of the content, in characters' }),
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
};

export const Skill = Type.Object({ ...skillFields, content: Type.String() });

/** A list's items leave the content out (GET /v1/skills/:id has it). */
export const SkillSummary = Type.Object(skillFields);

export const Skills = Paginated(SkillSummary);

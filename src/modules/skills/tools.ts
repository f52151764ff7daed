import type { LoopTool, ToolSource } from '../tasks/loop-tools.ts';
import type { ToolOutcome } from '../tasks/tools.ts';
import type { LoadableSkill, SkillsService } from './service.ts';

export const LOAD_SKILL = 'load_skill';

const SIGNATURE = '{"name": string}';

/** A description on one line, so the skills' list stays one line per skill whatever was typed. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** The system prompt's lines: what a skill is, then one line per skill (its name and description). */
export function skillPromptLines(skills: readonly LoadableSkill[]): string[] {
  return [
    `Skills: instructions for particular kinds of work. Only their names and descriptions are shown here; before you follow a skill, call ${LOAD_SKILL} with its name to read it.`,
    ...skills.map((s) => `- ${s.name}: ${oneLine(s.description)}`),
  ];
}

function refused(output: string): ToolOutcome {
  return { ok: false, output, malformed: true };
}

/** load_skill {name}: the whole content of one of the skills listed in the prompt. */
export function loadSkillTool(skills: readonly LoadableSkill[]): LoopTool {
  const byName = new Map(skills.map((s) => [s.name, s]));
  const names = skills.map((s) => s.name).join(', ');
  return {
    name: LOAD_SKILL,
    description:
      'Reads the full instructions of one of the skills listed in the system prompt. Call it before following a skill.',
    parameters: {
      type: 'object',
      properties: {
        name: { type: 'string', enum: skills.map((s) => s.name), description: 'the skill’s name' },
      },
      required: ['name'],
      additionalProperties: false,
    },
    async run(rawArguments) {
      let args: unknown;
      try {
        args = JSON.parse(rawArguments);
      } catch {
        return refused(`The arguments of ${LOAD_SKILL} are not valid JSON. Send ${SIGNATURE}.`);
      }
      if (args === null || typeof args !== 'object' || Array.isArray(args))
        return refused(`The arguments of ${LOAD_SKILL} must be a JSON object: ${SIGNATURE}.`);
      const extra = Object.keys(args).filter((k) => k !== 'name');
      if (extra.length > 0)
        return refused(
          `Invalid arguments for ${LOAD_SKILL}: unknown field "${extra[0]}". Expected ${SIGNATURE}.`,
        );
      const { name } = args as { name?: unknown };
      if (typeof name !== 'string')
        return refused(
          `Invalid arguments for ${LOAD_SKILL}: "name" must be a string. Expected ${SIGNATURE}.`,
        );
      const skill = byName.get(name);
      if (!skill)
        return refused(`There is no skill named ${JSON.stringify(name)}; the skills are: ${names}.`);
      return { ok: true, output: skill.content };
    },
  };
}

/**
 * The skills an agent version lists (definition.skill_ids), read once when
 * the attempt opens: the content load_skill answers is the one of the skills
 * the prompt listed, even when a skill is edited or deleted meanwhile. A
 * skill deleted before the attempt opens is left out (older versions may
 * list one); with none left, the agent has no load_skill tool.
 */
export function skillToolSource(skills: Pick<SkillsService, 'forAgent'>): ToolSource {
  return {
    name: 'skills',
    async open(ctx) {
      const ids = ctx.agent.definition.skill_ids;
      if (ids.length === 0) return undefined;
      const listed = await skills.forAgent(ctx.teamId, ids);
      if (listed.length === 0) return undefined;
      return { tools: [loadSkillTool(listed)], promptLines: skillPromptLines(listed) };
    },
  };
}

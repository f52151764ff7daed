import { runInNewContext } from 'node:vm';
import { Cron } from 'croner';
import { BadRequestError } from '../../core/errors.ts';
import type { ChainConfig, SuccessCriterion, TriggerType } from '../../db/schema/playbooks.ts';

/**
 * Vonzio's PlaybookChainConfig bounds (the server clamps, it does not refuse);
 * the defaults and the upper bound of timeout_per_chain_seconds are Paddock's
 * (the seed gives none): a task's timeout is at most a day.
 */
export const CHAIN_BOUNDS = {
  max_chains: { min: 1, max: 20, default: 3 },
  budget_cap_usd: { min: 0.1, max: 100, default: 5 },
  chain_delay_ms: { min: 1000, max: 60_000, default: 1000 },
  max_turns_per_chain: { min: 5, max: 200, default: 50 },
  timeout_per_chain_seconds: { min: 60, max: 86_400, default: 600 },
} as const;

type NumericKey = keyof typeof CHAIN_BOUNDS;

export function clampChainConfig(input: Partial<ChainConfig> | undefined, base?: ChainConfig): ChainConfig {
  const out = {} as ChainConfig;
  for (const key of Object.keys(CHAIN_BOUNDS) as NumericKey[]) {
    const b = CHAIN_BOUNDS[key];
    const given = input?.[key] ?? base?.[key] ?? b.default;
    out[key] = Math.min(b.max, Math.max(b.min, given));
  }
  const tools = input?.allowed_tools !== undefined ? input.allowed_tools : (base?.allowed_tools ?? null);
  out.allowed_tools = tools === null ? null : [...new Set(tools)];
  return out;
}

/** An IANA zone name Node's Intl knows (UTC included); a 400 otherwise. */
export function checkTimezone(zone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new BadRequestError(
      'invalid_timezone',
      `${zone} is not an IANA time zone (e.g. Europe/Paris, UTC)`,
      {
        timezone: zone,
      },
    );
  }
}

/** A 5-field cron expression croner accepts (seconds and years are not taken); a 400 otherwise. */
export function cronOf(schedule: string, timezone: string): Cron {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 5)
    throw new BadRequestError(
      'invalid_schedule',
      `schedule must be a 5-field cron expression (minute hour day month weekday), got ${fields.length} fields`,
      { schedule },
    );
  try {
    const cron = new Cron(schedule.trim(), { timezone, paused: true, mode: '5-part' } as never);
    if (cron.nextRun(new Date()) === null)
      throw new BadRequestError('invalid_schedule', `schedule ${schedule} never fires`, { schedule });
    return cron;
  } catch (err) {
    if (err instanceof BadRequestError) throw err;
    throw new BadRequestError(
      'invalid_schedule',
      `schedule is not a valid cron expression: ${(err as Error).message}`,
      {
        schedule,
      },
    );
  }
}

export interface Timing {
  triggerType: TriggerType;
  schedule: string | null;
  timezone: string;
  intervalSeconds: number | null;
  enabled: boolean;
}

/**
 * The next time the scheduler fires the playbook, strictly after `after`:
 * cron, the expression's next slot in its zone; interval, `after` plus the
 * interval. Null when disabled or not scheduled (manual, webhook).
 */
export function nextRunAfter(t: Timing, after: Date): Date | null {
  if (!t.enabled) return null;
  if (t.triggerType === 'cron' && t.schedule) return cronOf(t.schedule, t.timezone).nextRun(after);
  if (t.triggerType === 'interval' && t.intervalSeconds)
    return new Date(after.getTime() + t.intervalSeconds * 1000);
  return null;
}

/**
 * The next slot after a fire of `slot` at `now`: cron, the first slot after
 * now (every slot missed while the servers were down collapses into the one
 * fire); interval, the first of slot + k·interval after now (the cadence kept).
 */
export function nextAfterFire(t: Timing, slot: Date, now: Date): Date | null {
  if (t.triggerType === 'interval' && t.intervalSeconds && t.enabled) {
    const step = t.intervalSeconds * 1000;
    const k = Math.floor((now.getTime() - slot.getTime()) / step) + 1;
    return new Date(slot.getTime() + k * step);
  }
  return nextRunAfter(t, now);
}

/** A `matches` pattern is tried on at most the answer's last this many characters… */
export const MATCH_TAIL_CHARS = 100_000;
/** …for at most this long: a pattern that backtracks past it counts as not matching. */
export const MATCH_TIMEOUT_MS = 100;

/** A criterion the final answer fails; `timedOut`: a `matches` check stopped at MATCH_TIMEOUT_MS. */
export type FailedCriterion = SuccessCriterion & { timedOut?: true };

/** The criteria the final answer fails (empty: all pass). */
export function failedCriteria(criteria: readonly SuccessCriterion[], answer: string): FailedCriterion[] {
  const failed: FailedCriterion[] = [];
  for (const c of criteria) {
    if (c.type === 'contains') {
      if (!answer.includes(c.value)) failed.push(c);
    } else if (c.type === 'not_contains') {
      if (answer.includes(c.value)) failed.push(c);
    } else {
      const result = matchesWithin(c.pattern, answer.slice(-MATCH_TAIL_CHARS));
      if (result !== true) failed.push(result === 'timeout' ? { ...c, timedOut: true } : c);
    }
  }
  return failed;
}

/**
 * A user's pattern runs in its own context under a time limit, which
 * interrupts a runaway (catastrophically backtracking) expression: a check
 * never holds the leader's tick, which every team's playbooks share.
 */
function matchesWithin(pattern: string, text: string): boolean | 'timeout' {
  try {
    return (
      runInNewContext(
        'new RegExp(pattern, "u").test(text)',
        { pattern, text },
        { timeout: MATCH_TIMEOUT_MS },
      ) === true
    );
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return 'timeout';
    throw err;
  }
}

export function checkCriteria(criteria: readonly SuccessCriterion[]): void {
  for (const c of criteria)
    if (c.type === 'matches')
      try {
        new RegExp(c.pattern, 'u');
      } catch (err) {
        throw new BadRequestError(
          'invalid_success_criteria',
          `pattern ${c.pattern} is not a regular expression: ${(err as Error).message}`,
        );
      }
}

export function describeCriterion(c: FailedCriterion): string {
  if (c.type !== 'matches')
    return `the answer ${c.type === 'contains' ? 'contains' : 'does not contain'} "${c.value}"`;
  return c.timedOut
    ? `the answer matches /${c.pattern}/ (the check ran past ${MATCH_TIMEOUT_MS} ms and counts as failed)`
    : `the answer matches /${c.pattern}/`;
}

import { describe, expect, it } from 'vitest';
import { describeCriterion, failedCriteria, MATCH_TAIL_CHARS } from '../../src/modules/playbooks/schedule.ts';

/** Success criteria are checked in the leader's tick: a user's pattern must never hold it. */
describe('playbook success criteria', () => {
  it('a catastrophically backtracking pattern is stopped promptly and counts as failed', () => {
    const answer = `${'a'.repeat(200_000)}b`;
    const started = Date.now();
    const failed = failedCriteria([{ type: 'matches', pattern: '(a+)+$' }], answer);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(failed).toEqual([{ type: 'matches', pattern: '(a+)+$', timedOut: true }]);
    expect(describeCriterion(failed[0]!)).toContain('counts as failed');
  });

  it('patterns see only the answer’s last 100 000 characters; the other criteria see all of it', () => {
    const answer = `START ${'x'.repeat(MATCH_TAIL_CHARS)} DONE`;
    expect(failedCriteria([{ type: 'matches', pattern: 'DONE$' }], answer)).toEqual([]);
    expect(failedCriteria([{ type: 'matches', pattern: '^START' }], answer)).toHaveLength(1);
    expect(failedCriteria([{ type: 'contains', value: 'START' }], answer)).toEqual([]);
    expect(failedCriteria([{ type: 'not_contains', value: 'START' }], answer)).toHaveLength(1);
  });
});

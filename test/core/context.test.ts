import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { ManualTimers } from '../../src/core/context.ts';

describe('ManualTimers', () => {
  it('runs nothing until time moves, then each due timer in order at its own time', async () => {
    const clock = new ManualClock(1_000);
    const timers = new ManualTimers(clock);
    const seen: Array<[string, number]> = [];
    timers.after(300, () => seen.push(['b', clock.now().getTime()]));
    timers.after(100, () => seen.push(['a', clock.now().getTime()]));
    const late = timers.after(500, () => seen.push(['never', 0]));
    expect(seen).toEqual([]);
    await timers.advance(400);
    expect(seen).toEqual([
      ['a', 1_100],
      ['b', 1_300],
    ]);
    expect(clock.now().getTime()).toBe(1_400);
    late.cancel();
    await timers.advance(1_000);
    expect(seen).toHaveLength(2);
    expect(timers.pending).toBe(0);
  });

  it('repeats an interval until cancelled, and lets the work a tick starts finish', async () => {
    const timers = new ManualTimers();
    let ticks = 0;
    let finished = 0;
    const loop = timers.every(1_000, () => {
      ticks++;
      void Promise.resolve().then(() => finished++);
    });
    await timers.advance(3_500);
    expect(ticks).toBe(3);
    expect(finished).toBe(3);
    loop.cancel();
    await timers.advance(5_000);
    expect(ticks).toBe(3);
  });

  it('sleeps until time reaches it, and an abort rejects at once with its reason', async () => {
    const timers = new ManualTimers();
    let woke = false;
    const sleeping = timers.sleep(200).then(() => {
      woke = true;
    });
    await timers.advance(199);
    expect(woke).toBe(false);
    await timers.advance(1);
    await sleeping;
    expect(woke).toBe(true);

    const abort = new AbortController();
    const cut = timers.sleep(10_000, abort.signal);
    abort.abort(new Error('stopped'));
    await expect(cut).rejects.toThrow('stopped');
    expect(timers.pending).toBe(0);
  });
});

import type { GatewayPorts, StepOutcome } from './ports.ts';

/**
 * The money one call holds between admission and its answer. Every path out
 * of the gateway ends it exactly once: `settle` charges what the call used
 * (written behind), `release` gives it back when nothing reached a provider,
 * and a stream being relayed owns it until the stream ends. GatewayService
 * releases whatever is still held in one `finally`, so no path, awaited or not,
 * returns or throws with the money still held.
 */
export class Reservation {
  private state: 'held' | 'streaming' | 'ended' = 'held';

  constructor(
    private readonly runs: Pick<GatewayPorts['runs'], 'release' | 'settleLater'>,
    readonly id: string,
    /** What was reserved, in micro-USD. */
    readonly reservedMicros: number,
    /** The run's budget left after the reservation; null when the policy sets no limit. */
    readonly remainingMicros: number | null,
  ) {}

  /** Whether the money is still the gateway's to give back (neither ended nor owned by a stream). */
  get held(): boolean {
    return this.state === 'held';
  }

  /** Charges the finished call; a second end is ignored (the first one holds). */
  settle(outcome: StepOutcome): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.runs.settleLater(this.id, outcome);
  }

  /** The relayed stream settles it when it ends; until then the gateway must not release it. */
  handToStream(): void {
    if (this.state === 'held') this.state = 'streaming';
  }

  /** Gives the money back (the call never reached a provider); only while it is held. */
  async release(): Promise<void> {
    if (this.state !== 'held') return;
    this.state = 'ended';
    await this.runs.release(this.id);
  }
}

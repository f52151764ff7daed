/** Credits are kept in micro-credits: 1 credit = 1 000 000, so sums are exact integers. */
export const MICRO = 1_000_000;

export const creditsOf = (micro: number): number => micro / MICRO;
export const microCreditsOf = (credits: number): number => Math.round(credits * MICRO);

/**
 * What usage costs in credits: ledger cost (micro-USD) × the platform's
 * markup ÷ the price of a credit (USD). A settled entry consumes its cost
 * rounded to the nearest micro-credit; a call reserves its most possible
 * cost rounded up, so a reservation always covers what it may consume.
 */
export class CreditRate {
  /** Micro-credits per micro-USD of ledger cost. */
  readonly perMicroUsd: number;

  constructor(
    readonly priceUsd: number,
    readonly markup: number,
  ) {
    this.perMicroUsd = markup / priceUsd;
  }

  consumed(costMicros: number): number {
    return costMicros > 0 ? Math.round(costMicros * this.perMicroUsd) : 0;
  }

  reserve(maxCostMicros: number): number {
    return maxCostMicros > 0 ? Math.ceil(maxCostMicros * this.perMicroUsd) : 0;
  }
}

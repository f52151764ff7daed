import {
  getMetricsFromIterator,
  type PromData,
  type PromHistogramData,
  type PromMetric,
  type PromMetrics,
} from 'prom2javascript';

// A scrape read by a Prometheus text-format parser (prom2javascript), not by
// Paddock's own code. (parse-prometheus-text-format, the better-known one,
// merges a histogram's labelled series into one and drops their counts.)

type Sample = PromData | PromHistogramData;

export class Scrape {
  private constructor(
    readonly text: string,
    readonly families: Map<string, PromMetric>,
  ) {}

  static async parse(text: string): Promise<Scrape> {
    const parsed: PromMetrics = await getMetricsFromIterator(text.split('\n')[Symbol.iterator]());
    return new Scrape(text, new Map(Object.entries(parsed)));
  }

  family(name: string): PromMetric {
    const f = this.families.get(name);
    if (!f) throw new Error(`the scrape has no ${name}`);
    return f;
  }

  /** The samples of `name` whose labels include `labels`. */
  samples(name: string, labels: Record<string, string> = {}): Sample[] {
    return (this.family(name).data as Sample[]).filter((m) =>
      Object.entries(labels).every(([k, v]) => m.labels[k] === v),
    );
  }

  /** The one sample of a counter or gauge with these labels' values (undefined: no such series). */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.samples(name, labels) as PromData[];
    if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} names ${found.length} series`);
    return found[0]?.value;
  }

  /** A histogram's observations, over the series whose labels include `labels`. */
  count(name: string, labels: Record<string, string> = {}): number {
    return (this.samples(name, labels) as PromHistogramData[]).reduce((n, m) => n + m.count, 0);
  }

  sum(name: string, labels: Record<string, string> = {}): number {
    return (this.samples(name, labels) as PromHistogramData[]).reduce((n, m) => n + (m.sum ?? 0), 0);
  }

  /** Every label value of every sample. */
  labelValues(): Array<{ metric: string; label: string; value: string }> {
    const all: Array<{ metric: string; label: string; value: string }> = [];
    for (const [metric, f] of this.families)
      for (const m of f.data as Sample[])
        for (const [label, value] of Object.entries(m.labels)) all.push({ metric, label, value });
    return all;
  }
}

/** GET `url` over HTTP, with the bearer token when given. */
export async function getMetrics(url: string, token?: string): Promise<Response> {
  return fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
}

// The dashboard's one chart: a time series drawn as lines, areas or stacked
// bars in plain SVG (no chart library: a page's chunk stays small). Colours
// come from the theme's variables (chart.css), so it reads in light and dark;
// the figures are also a table for screen readers and exact values.
import { type ReactNode, useEffect, useId, useState } from 'react';
import './chart.css';

export interface Series {
  name: string;
  /** One value per label; null where the series has no figure. */
  values: Array<number | null>;
}

export type ChartKind = 'line' | 'area' | 'bar';

/** The drawing's height in pixels; its width follows its box, so the text keeps its size. */
const H = 220;
const PAD = { top: 12, right: 12, bottom: 28, left: 64 };
/** Series past this many colours share the last one (a page groups the rest as "other"). */
const COLOURS = 6;

/** A figure to three significant digits, so that neighbouring ticks (0.05, 0.1, 0.15) stay apart. */
export function short(value: number): string {
  return Number(value.toPrecision(3)).toLocaleString(undefined, { maximumFractionDigits: 6 });
}

/** A round step for about `count` ticks up to `max`: 1, 2 or 5 × 10ⁿ. */
export function niceStep(max: number, count = 4): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

/** Which of n labels to print under the axis: as many as fit (one per ~90 px), evenly spaced, ending on the last. */
function shownLabels(n: number, plotWidth: number): Set<number> {
  const most = Math.max(2, Math.floor(plotWidth / 90));
  const every = Math.max(1, Math.ceil(n / most));
  const shown = new Set<number>();
  for (let i = n - 1; i >= 0; i -= every) shown.add(i);
  return shown;
}

export function Chart(props: {
  /** What the chart shows: its accessible name and the data table's caption. */
  title: string;
  labels: string[];
  series: Series[];
  kind?: ChartKind;
  /** The y axis's label (its unit), e.g. "USD" or "tokens". */
  yLabel: string;
  /** The x axis's label, e.g. "Day (UTC)". */
  xLabel: string;
  /** A value as printed on the axis and in the table. */
  format?: (value: number) => string;
  /** A label as printed under the axis and in the table. */
  formatLabel?: (label: string) => string;
  /** Shown instead of the drawing when there is nothing to draw. */
  empty?: ReactNode;
}) {
  const id = useId();
  const size = useWidth();
  const kind = props.kind ?? 'line';
  const format = props.format ?? short;
  const formatLabel = props.formatLabel ?? ((l: string) => l);
  const n = props.labels.length;
  const hasData = n > 0 && props.series.some((s) => s.values.some((v) => v !== null && v !== 0));
  if (!hasData && props.empty) return <>{props.empty}</>;
  const width = size.px;

  // Bars stack, so their axis goes to the highest total; lines to the highest value.
  const totals = props.labels.map((_, i) =>
    kind === 'bar'
      ? props.series.reduce((sum, s) => sum + Math.max(0, s.values[i] ?? 0), 0)
      : Math.max(0, ...props.series.map((s) => s.values[i] ?? 0)),
  );
  const step = niceStep(Math.max(0, ...totals));
  const top = Math.max(step, Math.ceil(Math.max(0, ...totals) / step) * step);
  const ticks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);

  // Room on the left for the longest tick value beside the rotated unit (about 6.5 px a character).
  const pad = {
    ...PAD,
    left: Math.max(PAD.left, 30 + 6.5 * Math.max(...ticks.map((t) => format(t).length))),
  };
  const plotW = width - pad.left - pad.right;
  const plotH = H - pad.top - pad.bottom;
  const slot = plotW / Math.max(1, n);
  const x = (i: number) =>
    kind === 'bar' ? pad.left + slot * (i + 0.5) : pad.left + (n <= 1 ? plotW / 2 : (plotW * i) / (n - 1));
  const y = (v: number) => pad.top + plotH - (plotH * v) / top;
  const shown = shownLabels(n, plotW);
  const summary = `${props.title}: ${props.series
    .map((s) => {
      const values = s.values.filter((v): v is number => v !== null);
      const total = values.reduce((a, b) => a + b, 0);
      const peak = Math.max(0, ...values);
      return `${s.name} peaks at ${format(peak)}${kind === 'bar' ? `, ${format(total)} in all` : ''}`;
    })
    .join('; ')}.`;

  return (
    <figure className="chart" aria-labelledby={`${id}-title`} ref={size.ref}>
      <figcaption id={`${id}-title`} className="visually-hidden">
        {props.title}
      </figcaption>
      <svg viewBox={`0 0 ${width} ${H}`} role="img" aria-label={summary} className="chart-svg">
        <g className="chart-grid">
          {ticks.map((t) => (
            <g key={t}>
              <line x1={pad.left} x2={width - pad.right} y1={y(t)} y2={y(t)} />
              <text x={pad.left - 6} y={y(t)} dy="0.32em" textAnchor="end" className="chart-tick">
                {format(t)}
              </text>
            </g>
          ))}
          {props.labels.map((label, i) =>
            shown.has(i) ? (
              <text
                key={label}
                x={x(i)}
                y={H - pad.bottom + 16}
                textAnchor={
                  kind !== 'bar' && i === n - 1 && n > 1
                    ? 'end'
                    : kind !== 'bar' && i === 0
                      ? 'start'
                      : 'middle'
                }
                className="chart-tick"
              >
                {formatLabel(label)}
              </text>
            ) : null,
          )}
          <text
            className="chart-axis-label"
            transform={`translate(12 ${pad.top + plotH / 2}) rotate(-90)`}
            textAnchor="middle"
          >
            {props.yLabel}
          </text>
        </g>
        {kind === 'bar' ? (
          <Bars series={props.series} labels={props.labels} x={x} y={y} slot={slot} format={format} />
        ) : (
          props.series.map((s, si) => (
            <Line
              key={s.name}
              values={s.values}
              x={x}
              y={y}
              base={y(0)}
              area={kind === 'area'}
              colour={Math.min(si, COLOURS - 1)}
            />
          ))
        )}
      </svg>
      <p className="chart-x-label">{props.xLabel}</p>
      <ul className="chart-legend" aria-label={`${props.title}: legend`}>
        {props.series.map((s, si) => (
          <li key={s.name}>
            <span className={`chart-swatch chart-c${Math.min(si, COLOURS - 1)}`} aria-hidden="true" />
            {s.name}
          </li>
        ))}
      </ul>
      <details className="chart-data">
        <summary>Show the figures: {props.title}</summary>
        <table className="table">
          <caption className="visually-hidden">{props.title}</caption>
          <thead>
            <tr>
              <th scope="col">{props.xLabel}</th>
              {props.series.map((s) => (
                <th scope="col" key={s.name}>
                  {s.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {props.labels.map((label, i) => (
              <tr key={label}>
                <th scope="row">{formatLabel(label)}</th>
                {props.series.map((s) => {
                  const v = s.values[i];
                  return <td key={s.name}>{v === null || v === undefined ? '—' : format(v)}</td>;
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

/** The figure's width in pixels, followed as its box resizes (640 until it is measured). */
function useWidth(): { px: number; ref: (el: HTMLElement | null) => void } {
  const [el, ref] = useState<HTMLElement | null>(null);
  const [px, setPx] = useState(640);
  useEffect(() => {
    if (!el) return;
    const observer = new ResizeObserver(([entry]) => {
      if (entry) setPx(Math.max(240, Math.round(entry.contentRect.width)));
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, [el]);
  return { px, ref };
}

function Line(props: {
  values: Array<number | null>;
  x: (i: number) => number;
  y: (v: number) => number;
  base: number;
  area: boolean;
  colour: number;
}) {
  // A gap (null) breaks the line into runs.
  const runs: Array<Array<[number, number]>> = [];
  let run: Array<[number, number]> = [];
  props.values.forEach((v, i) => {
    if (v === null) {
      if (run.length > 0) runs.push(run);
      run = [];
    } else run.push([props.x(i), props.y(v)]);
  });
  if (run.length > 0) runs.push(run);
  return (
    <g className={`chart-c${props.colour}`}>
      {runs.map((points) => {
        const d = points
          .map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${px.toFixed(1)},${py.toFixed(1)}`)
          .join('');
        const first = points[0]!;
        const last = points[points.length - 1]!;
        return (
          <g key={`${first[0]}`}>
            {props.area ? (
              <path
                className="chart-area"
                d={`${d}L${last[0].toFixed(1)},${props.base.toFixed(1)}L${first[0].toFixed(1)},${props.base.toFixed(1)}Z`}
              />
            ) : null}
            <path className="chart-line" d={d} />
            {/* A lone point has no line to show it. */}
            {points.length === 1 ? <circle className="chart-dot" cx={first[0]} cy={first[1]} r={3} /> : null}
          </g>
        );
      })}
    </g>
  );
}

function Bars(props: {
  series: Series[];
  labels: string[];
  x: (i: number) => number;
  y: (v: number) => number;
  slot: number;
  format: (v: number) => string;
}) {
  const width = Math.max(1, Math.min(32, props.slot * 0.7));
  return (
    <g>
      {props.labels.map((label, i) => {
        let below = 0;
        return (
          <g key={label}>
            {props.series.map((s, si) => {
              const v = Math.max(0, s.values[i] ?? 0);
              if (v === 0) return null;
              const y0 = props.y(below);
              below += v;
              const y1 = props.y(below);
              return (
                <rect
                  key={s.name}
                  className={`chart-bar chart-c${Math.min(si, COLOURS - 1)}`}
                  x={props.x(i) - width / 2}
                  y={y1}
                  width={width}
                  height={Math.max(0.5, y0 - y1)}
                >
                  <title>{`${s.name}: ${props.format(v)}`}</title>
                </rect>
              );
            })}
          </g>
        );
      })}
    </g>
  );
}

/** Series from rows that each carry a period, a group and a figure: one series per group, one value per label. */
export function seriesOf<Row extends { period: string | null; group: string | null }>(
  rows: Row[],
  labels: string[],
  value: (row: Row) => number,
  name: (group: string | null) => string,
  /** At most this many series: the largest groups by total, the rest summed as "other". */
  max = COLOURS - 1,
): Series[] {
  const at = new Map(labels.map((l, i) => [new Date(l).getTime(), i]));
  const byGroup = new Map<string | null, Array<number | null>>();
  for (const row of rows) {
    const i = row.period === null ? undefined : at.get(new Date(row.period).getTime());
    if (i === undefined) continue;
    const values = byGroup.get(row.group) ?? labels.map(() => 0);
    values[i] = (values[i] ?? 0) + value(row);
    byGroup.set(row.group, values);
  }
  const total = (values: Array<number | null>) => values.reduce<number>((a, v) => a + (v ?? 0), 0);
  // A group with nothing to show for this figure (sandbox time's tokens) would only crowd the legend.
  const ranked = [...byGroup.entries()]
    .filter(([, v]) => total(v) !== 0)
    .sort((a, b) => total(b[1]) - total(a[1]));
  const series = ranked.slice(0, max).map(([group, values]) => ({ name: name(group), values }));
  const rest = ranked.slice(max);
  if (rest.length > 0)
    series.push({
      name: `other (${rest.length})`,
      values: labels.map((_, i) => rest.reduce((a, [, values]) => a + (values[i] ?? 0), 0)),
    });
  return series;
}

export type Granularity = 'hour' | 'day' | 'week';
const STEP_MS: Record<Granularity, number> = { hour: 3_600_000, day: 86_400_000, week: 7 * 86_400_000 };

/** Every period start from `from` up to `to` (UTC; weeks on Monday), as the analytics API labels them. */
export function periods(from: Date, to: Date, granularity: Granularity): string[] {
  const start = new Date(from);
  start.setUTCMinutes(0, 0, 0);
  if (granularity !== 'hour') start.setUTCHours(0);
  if (granularity === 'week') start.setUTCDate(start.getUTCDate() - ((start.getUTCDay() + 6) % 7));
  const out: string[] = [];
  for (let t = start.getTime(); t < to.getTime(); t += STEP_MS[granularity])
    out.push(new Date(t).toISOString());
  return out;
}

/** A period's label under the axis: the hour for hours, the date otherwise (UTC, as the periods are). */
export function periodLabel(granularity: Granularity): (iso: string) => string {
  return (iso) => {
    const d = new Date(iso);
    if (granularity === 'hour')
      return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' });
    return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
  };
}

/** A moment's label: the local time of day to the second (metrics and live series). */
export function clockLabel(iso: string): string {
  // Seconds too: a sandbox's samples come every few seconds.
  return new Date(iso).toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

// Prometheus text exposition (format 0.0.4): counters, gauges and histograms with labels, rendered on each scrape.

/** Label names to values of one series. */
export type Labels = Readonly<Record<string, string>>;

/** The content type of the text format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(',')}}`;
}

// One series per distinct label set, keyed by its rendered labels.
function seriesKey(labels: Labels): string {
  return formatLabels(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new Error(`invalid metric name '${name}'`);
  }

  render(): string[] {
    const help = this.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
    return [`# HELP ${this.name} ${help}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()];
  }

  protected abstract samples(): string[];
}

/** A value that only goes up. */
export class Counter extends Metric {
  private readonly series = new Map<string, { labels: Labels; value: number }>();

  constructor(name: string, help: string, initial: Labels[] = [{}]) {
    super(name, help, 'counter');
    // Series that exist from the start read 0 instead of being absent (rate() needs the first sample).
    for (const labels of initial) this.inc(labels, 0);
  }

  inc(labels: Labels = {}, by = 1): void {
    const key = seriesKey(labels);
    const series = this.series.get(key);
    if (series) series.value += by;
    else this.series.set(key, { labels, value: by });
  }

  value(labels: Labels = {}): number {
    return this.series.get(seriesKey(labels))?.value ?? 0;
  }

  protected samples(): string[] {
    return [...this.series.values()].map((s) => `${this.name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
  }
}

/** A value read when scraped. */
export class Gauge extends Metric {
  constructor(
    name: string,
    help: string,
    private readonly read: () => number,
  ) {
    super(name, help, 'gauge');
  }

  protected samples(): string[] {
    return [`${this.name} ${formatValue(this.read())}`];
  }
}

/** Observations counted into buckets (upper bounds, cumulative), with their sum and count. */
export class Histogram extends Metric {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(
    name: string,
    help: string,
    private readonly buckets: readonly number[],
    initial: Labels[] = [{}],
  ) {
    super(name, help, 'histogram');
    for (const labels of initial) this.entry(labels);
  }

  observe(value: number, labels: Labels = {}): void {
    if (!Number.isFinite(value)) return;
    const series = this.entry(labels);
    this.buckets.forEach((bound, i) => {
      if (value <= bound) series.counts[i]++;
    });
    series.sum += value;
    series.count++;
  }

  /** Observations so far in one series. */
  count(labels: Labels = {}): number {
    return this.series.get(seriesKey(labels))?.count ?? 0;
  }

  private entry(labels: Labels) {
    const key = seriesKey(labels);
    let series = this.series.get(key);
    if (!series) {
      series = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, series);
    }
    return series;
  }

  protected samples(): string[] {
    return [...this.series.values()].flatMap((s) => [
      ...this.buckets.map(
        (bound, i) => `${this.name}_bucket${formatLabels({ ...s.labels, le: formatValue(bound) })} ${s.counts[i]}`,
      ),
      `${this.name}_bucket${formatLabels({ ...s.labels, le: '+Inf' })} ${s.count}`,
      `${this.name}_sum${formatLabels(s.labels)} ${formatValue(s.sum)}`,
      `${this.name}_count${formatLabels(s.labels)} ${s.count}`,
    ]);
  }
}

/** The metrics of one server, rendered in registration order. */
export class Registry {
  private readonly metrics: Metric[] = [];

  add<M extends Metric>(metric: M): M {
    if (this.metrics.some((m) => m.name === metric.name)) throw new Error(`metric '${metric.name}' registered twice`);
    this.metrics.push(metric);
    return metric;
  }

  render(): string {
    return `${this.metrics.flatMap((m) => m.render()).join('\n')}\n`;
  }
}

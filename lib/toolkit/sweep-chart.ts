// The sweep as an SVG a browser shows: perplexity against experts per token, and experts per token by layer.
import { DynamoeError } from '../errors';
import { requireObject } from '../validate';
import { SweepPoint, SweepReport } from './sweep';

const WIDTH = 1110;
const HEIGHT = 440;
const PANEL = { width: 400, height: 300, top: 70 };
const LEFT_X = 80;
const RIGHT_X = 560;
const KIND_COLOURS: Record<string, string[]> = {
  'top-k': ['#fdae6b', '#e6550d', '#a63603'],
  'top-p': ['#9ecae1', '#3182bd', '#08306b'],
  threshold: ['#a1d99b', '#31a354', '#00441b'],
};

interface Scale {
  (value: number): number;
  ticks: number[];
}

const escapeXml = (text: string) =>
  text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);

/** About five round tick values covering [lo, hi]. */
function niceTicks(lo: number, hi: number): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/** A linear scale from the data's nice range onto [from, to] pixels. */
function scale(values: number[], from: number, to: number): Scale {
  const ticks = niceTicks(Math.min(...values), Math.max(...values));
  const lo = ticks[0];
  const hi = ticks[ticks.length - 1];
  const s = ((v: number) => from + ((v - lo) / (hi - lo || 1)) * (to - from)) as Scale;
  s.ticks = ticks;
  return s;
}

const kindOf = (label: string) => label.split(':')[0];
const formatTick = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(3).replace(/0+$/, ''));

/** Mixes two #rrggbb colours: t = 0 gives `a`, t = 1 gives `b`. */
function mix(a: string, b: string, t: number): string {
  const channel = (hex: string, i: number) => parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16);
  const mixed = [0, 1, 2].map((i) => Math.round(channel(a, i) + (channel(b, i) - channel(a, i)) * t));
  return `#${mixed.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

/** Each kind's points get shades of its colour, lightest for the fewest experts. */
function colourOf(point: SweepPoint, points: SweepPoint[]): string {
  const same = points
    .filter((p) => kindOf(p.policy) === kindOf(point.policy))
    .sort((a, b) => a.stats.expertsPerToken - b.stats.expertsPerToken);
  const [light, , dark] = KIND_COLOURS[kindOf(point.policy)] ?? ['#bbbbbb', '#777777', '#000000'];
  return mix(light, dark, same.indexOf(point) / Math.max(same.length - 1, 1));
}

function axes(x: Scale, y: Scale, left: number, xLabel: string, yLabel: string, title: string): string[] {
  const bottom = PANEL.top + PANEL.height;
  const out = [
    `<text x="${left}" y="${PANEL.top - 16}" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<rect x="${left}" y="${PANEL.top}" width="${PANEL.width}" height="${PANEL.height}" fill="none" stroke="#888"/>`,
    `<text x="${left + PANEL.width / 2}" y="${bottom + 40}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text transform="translate(${left - 52},${PANEL.top + PANEL.height / 2}) rotate(-90)" text-anchor="middle">` +
      `${escapeXml(yLabel)}</text>`,
  ];
  for (const t of x.ticks) {
    out.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${PANEL.top}" y2="${bottom}" stroke="#eee"/>`);
    out.push(`<text x="${x(t)}" y="${bottom + 18}" text-anchor="middle" font-size="12">${formatTick(t)}</text>`);
  }
  for (const t of y.ticks) {
    out.push(`<line x1="${left}" x2="${left + PANEL.width}" y1="${y(t)}" y2="${y(t)}" stroke="#eee"/>`);
    out.push(`<text x="${left - 8}" y="${y(t) + 4}" text-anchor="end" font-size="12">${formatTick(t)}</text>`);
  }
  return out;
}

function qualityPanel(report: SweepReport): string[] {
  const all = [report.trained, ...report.points];
  const x = scale(all.map((p) => p.stats.expertsPerToken), LEFT_X, LEFT_X + PANEL.width);
  const y = scale(all.map((p) => p.perplexity), PANEL.top + PANEL.height, PANEL.top);
  const out = axes(x, y, LEFT_X, 'experts per token (mean over MoE layers)', 'perplexity', 'Quality vs compute');
  for (const kind of Object.keys(KIND_COLOURS)) {
    const series = report.points
      .filter((p) => kindOf(p.policy) === kind)
      .sort((a, b) => a.stats.expertsPerToken - b.stats.expertsPerToken);
    if (series.length > 1) {
      const path = series.map((p) => `${x(p.stats.expertsPerToken)},${y(p.perplexity)}`).join(' ');
      out.push(`<polyline points="${path}" fill="none" stroke="${KIND_COLOURS[kind][1]}" stroke-width="1.5"/>`);
    }
  }
  for (const p of report.points) {
    const [cx, cy] = [x(p.stats.expertsPerToken), y(p.perplexity)];
    out.push(`<circle cx="${cx}" cy="${cy}" r="4.5" fill="${colourOf(p, report.points)}" stroke="#333"/>`);
    // Labels near the right edge go on the point's left so they stay inside the chart.
    const anchor = cx > LEFT_X + PANEL.width - 70 ? `x="${cx - 7}" text-anchor="end"` : `x="${cx + 7}"`;
    out.push(`<text ${anchor} y="${cy - 6}" font-size="11">${escapeXml(p.policy)}</text>`);
  }
  const [tx, ty] = [x(report.trained.stats.expertsPerToken), y(report.trained.perplexity)];
  out.push(`<path d="M${tx} ${ty - 8} L${tx + 8} ${ty} L${tx} ${ty + 8} L${tx - 8} ${ty} Z" fill="none" stroke="#d62728" stroke-width="2"/>`);
  out.push(`<text x="${tx + 10}" y="${ty + 16}" font-size="11" fill="#d62728">trained (${escapeXml(report.trained.policy)})</text>`);
  return out;
}

function layerPanel(report: SweepReport): string[] {
  const layers = report.model.moeLayers;
  const all = [report.trained, ...report.points];
  const x = scale(layers, RIGHT_X, RIGHT_X + PANEL.width);
  const y = scale([0, ...all.flatMap((p) => p.stats.layers.map((l) => l.expertsPerToken))], PANEL.top + PANEL.height, PANEL.top);
  const out = axes(x, y, RIGHT_X, 'MoE layer', 'experts per token', 'Experts per token by layer');
  report.points.forEach((p, i) => {
    const colour = colourOf(p, report.points);
    const path = p.stats.layers.map((l) => `${x(l.layer)},${y(l.expertsPerToken)}`).join(' ');
    out.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const l of p.stats.layers) out.push(`<circle cx="${x(l.layer)}" cy="${y(l.expertsPerToken)}" r="2.5" fill="${colour}"/>`);
    const ly = PANEL.top + 6 + i * 15;
    if (ly < PANEL.top + PANEL.height) {
      out.push(`<line x1="${RIGHT_X + PANEL.width + 12}" x2="${RIGHT_X + PANEL.width + 30}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="3"/>`);
      out.push(`<text x="${RIGHT_X + PANEL.width + 34}" y="${ly + 4}" font-size="11">${escapeXml(p.policy)}</text>`);
    }
  });
  return out;
}

/** A self-contained SVG of the sweep (no scripts, no external resources). */
export function sweepChart(report: SweepReport): string {
  const r = requireObject(report, 'sweep report');
  if (typeof r.model !== 'object' || typeof r.text !== 'object' || typeof r.trained !== 'object' || !Array.isArray(r.points)) {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', 'the sweep report must be what runSweep() returns ({ model, text, trained, points })');
  }
  const caption =
    `${report.model.architecture} ${report.model.dtype} (${report.model.source}), ` +
    `${report.text.predictedTokens} predicted tokens in ${report.text.windows} window${report.text.windows === 1 ? '' : 's'}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${LEFT_X}" y="24" font-size="13" fill="#555">${escapeXml(caption)}</text>`,
    ...qualityPanel(report),
    ...layerPanel(report),
    '</svg>',
    '',
  ].join('\n');
}

// `dynamoe sweep`: runs a text under many policies, prints a table, writes the JSON report and the SVG chart.
import { promises as fs } from 'fs';
import { DynamoeError } from '../errors';
import { parsePolicyList } from '../policy/policy-list';
import { runSweep, SweepPoint } from '../toolkit/sweep';
import { sweepChart } from '../toolkit/sweep-chart';
import { Values } from './args';
import { openEvaluation } from './evaluation-input';
import { taskProgress } from './progress';

/** The policies swept when --policies is not given. */
export const DEFAULT_SWEEP_POLICIES = 'top-k:1,top-k:2,top-k:4,top-p:0.2..0.8:0.1';

/** Percent of (token, layer) routings that used 1, 2, 3 and 4 or more experts: `62/25/9/4`. */
function histogramText(p: SweepPoint): string {
  const counts = [0, 0, 0, 0];
  for (const layer of p.stats.layers) {
    layer.histogram.forEach((n, experts) => {
      if (experts > 0) counts[Math.min(experts, 4) - 1] += n;
    });
  }
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  return counts.map((n) => Math.round((100 * n) / total)).join('/');
}

function row(p: SweepPoint, label: string, zeroExperts: boolean): string {
  const sign = (v: number) => (v >= 0 ? '+' : '');
  return [
    label.padEnd(22),
    p.perplexity.toFixed(3).padStart(11),
    `${sign(p.perplexityChange)}${p.perplexityChange.toFixed(3)}`.padStart(9),
    p.stats.expertsPerToken.toFixed(3).padStart(8),
    ...(zeroExperts ? [p.stats.ffnExpertsPerToken.toFixed(3).padStart(8)] : []),
    `  ${p.stats.layers.map((l) => l.expertsPerToken.toFixed(2)).join(' ')}`.padEnd(28),
    histogramText(p).padStart(12),
    `${(p.expertFlopsSaved * 100).toFixed(1)}%`.padStart(8),
    p.tokensPerSecond.toFixed(0).padStart(9),
  ].join(' ');
}

async function write(path: string, content: string): Promise<void> {
  try {
    await fs.writeFile(path, content);
  } catch (error) {
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot write ${path}: ${(error as Error).message}`);
  }
}

export async function sweepCommand(values: Values, positionals: string[]): Promise<void> {
  const policies = parsePolicyList((values.policies as string | undefined) ?? DEFAULT_SWEEP_POLICIES);
  const jsonPath = (values.json as string | undefined) ?? 'sweep.json';
  const svgPath = (values.svg as string | undefined) ?? 'sweep.svg';
  const { model, windows, textSource } = await openEvaluation(values, positionals, 'sweep');
  const progress = taskProgress('sweep', 'windows');
  try {
    const report = await runSweep(model, windows, policies, (done, total, what) => progress.update(done, total, what));
    progress.stop();
    const windowCount = `${windows.length} window${windows.length === 1 ? '' : 's'}`;
    console.log(`${report.text.predictedTokens} predicted tokens of ${textSource} in ${windowCount}`);
    const zero = model.info.layers.some((l) => l.kind === 'moe' && l.zeroExperts !== undefined);
    console.log(
      `${'policy'.padEnd(22)} ${'perplexity'.padStart(11)} ${'change'.padStart(9)} ${'exp/tok'.padStart(8)}  ` +
        (zero ? `${'ffn/tok'.padStart(8)} ` : '') +
        `${'per MoE layer'.padEnd(26)} ${'1/2/3/4+ %'.padStart(12)} ${'FLOPs'.padStart(8)} ${'tok/s'.padStart(9)}`,
    );
    console.log(row(report.trained, `${report.trained.policy} (trained)`, zero));
    for (const p of report.points) console.log(row(p, p.policy, zero));
    if (zero) {
      const t = report.trained.stats;
      const saved = 1 - t.ffnExpertsPerToken / t.expertsPerToken;
      console.log('ffn/tok: FFN experts per token; the other routed slots were zero-computation experts (no GEMM)');
      console.log(`zero-computation experts took ${(saved * 100).toFixed(1)}% of the trained policy's routed slots: ` +
        'the expert FLOPs they saved against FFN experts in every slot');
    }
    console.log('1/2/3/4+ %: share of token routings (all MoE layers) that used 1, 2, 3, 4 or more experts');
    console.log('FLOPs: routed-expert FLOPs saved against the trained policy (negative: more compute)');
    await write(jsonPath, `${JSON.stringify({ ...report, text: { source: textSource, ...report.text } }, null, 2)}\n`);
    await write(svgPath, sweepChart(report));
    console.log(`wrote ${jsonPath} and ${svgPath}`);
  } finally {
    progress.stop();
    model.dispose();
  }
}

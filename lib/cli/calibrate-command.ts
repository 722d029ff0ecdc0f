// `dynamoe calibrate`: per-layer thresholds for an experts-per-token budget, saved as a policy file.
import { calibrate, CalibrationCandidate } from '../toolkit/calibrate';
import { writePolicyFile } from '../policy/policy-file';
import { parsePolicyList } from '../policy/policy-list';
import { fail, numberFlag, Values } from './args';
import { openEvaluation } from './evaluation-input';
import { taskProgress } from './progress';

/** `0.1..0.9:0.1` or `0.2,0.4,0.6`: candidate thresholds. */
function gridFlag(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  return parsePolicyList(text.split(',').map((part) => `top-p:${part}`).join(',')).map((p) => (p.kind === 'top-p' ? p.p : NaN));
}

function describe(c: CalibrationCandidate): string {
  const p = c.p.every((v) => v === c.p[0]) ? `p = ${c.p[0]} on every layer` : `p = ${c.p.join(', ')}`;
  return `${c.expertsPerToken.toFixed(3)} experts/token, perplexity ${c.perplexity.toFixed(3)} (${p})`;
}

export async function calibrateCommand(values: Values, positionals: string[]): Promise<void> {
  if (values['experts-per-token'] === undefined) fail(`'calibrate' needs --experts-per-token <budget>, e.g. 1.5`);
  const budget = numberFlag(values, 'experts-per-token', 0, false);
  const grid = gridFlag(values.grid as string | undefined);
  const out = (values.out as string | undefined) ?? 'policy.json';
  const { model, windows, textSource } = await openEvaluation(values, positionals, 'calibrate');
  const progress = taskProgress('calibrate', 'windows');
  try {
    const result = await calibrate(model, windows, {
      expertsPerToken: budget,
      grid,
      onProgress: (done, total, what) => progress.update(done, total, what),
    });
    progress.stop();
    const lines = [
      `text            ${textSource}, ${windows.length} windows`,
      `budget          ${budget} experts/token (mean over ${result.layers.length} MoE layers)`,
      `chosen          ${result.chosen.kind}: ${describe(result.chosen)}`,
      `best uniform p  ${result.uniform ? describe(result.uniform) : 'none on the grid fits the budget'}`,
      `reference       ${describe(result.reference)}`,
      `trained policy  ${result.trained.policy}: ${result.trained.expertsPerToken.toFixed(3)} experts/token, ` +
        `perplexity ${result.trained.perplexity.toFixed(3)}`,
      'sensitivity     per layer: experts/token and NLL increase (nats/token) at each p, other layers at the richest p',
      ...result.sensitivity.map(
        (s) =>
          `  layer ${String(s.layer).padEnd(4)} ` +
          s.p.map((p, g) => `${p}: ${s.expertsPerToken[g].toFixed(2)}/${s.nllIncrease[g] >= 0 ? '+' : ''}${s.nllIncrease[g].toFixed(4)}`).join('  '),
      ),
    ];
    console.log(lines.join('\n'));
    await writePolicyFile(out, result.policies, result.layers, {
      tool: 'dynamoe calibrate',
      model: model.info.source,
      text: textSource,
      budget,
      expertsPerToken: result.chosen.expertsPerToken,
      perplexity: result.chosen.perplexity,
      candidate: result.chosen.kind,
    });
    console.log(`wrote ${out}: use it with dynamoe run --policy ${out}, or readPolicyFile() in the API`);
  } finally {
    progress.stop();
    model.dispose();
  }
}

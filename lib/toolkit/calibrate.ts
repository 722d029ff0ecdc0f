// `dynamoe calibrate`: per-layer top-p thresholds that meet an experts-per-token budget at the least perplexity.
import { DynamoeError } from '../errors';
import { Model } from '../model/model';
import { moeLayers } from '../model/spec';
import { TopPPolicy } from '../policy/routing-policy';
import { solveBudget } from './budget-solver';
import { requireObject, typeError } from '../validate';
import { checkEvaluationInput, PolicyEvaluation, scoreWindows } from './evaluate-policy';
import { SweepProgress } from './sweep';

/** Options of {@link calibrate}. */
export interface CalibrateOptions {
  /** The budget: mean experts per token over the MoE layers. */
  expertsPerToken: number;
  /** Candidate thresholds p per layer, ascending (default 0.1, 0.2, .., 0.9). */
  grid?: number[];
  onProgress?: SweepProgress;
}

/** How sensitive one MoE layer is to its threshold, the others held at the richest grid value. */
export interface LayerSensitivity {
  layer: number;
  p: number[];
  /** The layer's experts per token at each p. */
  expertsPerToken: number[];
  /** Mean NLL per token minus the reference's, at each p. */
  nllIncrease: number[];
}

/** A measured candidate: one policy per MoE layer. */
export interface CalibrationCandidate {
  /** `calibrated` (from the per-layer solve) or `uniform` (one p on every layer). */
  kind: 'calibrated' | 'uniform';
  p: number[];
  expertsPerToken: number;
  perplexity: number;
}

/** Result of {@link calibrate}. */
export interface CalibrationResult {
  /** The chosen policies, one per MoE layer: pass as the `policy` option, or save with writePolicyFile. */
  policies: TopPPolicy[];
  layers: number[];
  budget: number;
  /** The chosen candidate (measured on the text). */
  chosen: CalibrationCandidate;
  /** The best single p on the grid within the budget (null when none fits), for comparison. */
  uniform: CalibrationCandidate | null;
  /** Every layer at the richest grid p: the reference of the sensitivities. */
  reference: CalibrationCandidate;
  /** The model's own (trained) policy on the same text. */
  trained: { policy: string; expertsPerToken: number; perplexity: number };
  sensitivity: LayerSensitivity[];
}

const DEFAULT_GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
// Re-solves with a tightened budget when the measured cost overshoots (layers interact through their inputs).
const SOLVE_ATTEMPTS = 4;

const topP = (p: number): TopPPolicy => ({ kind: 'top-p', p });

function checkOptions(options: CalibrateOptions): number[] {
  requireObject(options, 'calibrate options');
  const budget = options.expertsPerToken;
  if (typeof budget !== 'number' || !Number.isFinite(budget) || budget < 1) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `expertsPerToken must be a number >= 1, got ${String(budget)}`);
  }
  const grid = options.grid ?? DEFAULT_GRID;
  if (!Array.isArray(grid)) typeError('grid', 'an array of numbers', grid);
  const ascending = grid.every((p, i) => typeof p === 'number' && p > 0 && p <= 1 && (i === 0 || p > grid[i - 1]));
  if (grid.length < 2 || !ascending) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `grid must hold at least 2 ascending values in (0, 1], got [${grid}]`);
  }
  return grid;
}

/**
 * Finds per-layer thresholds: measures each layer's perplexity cost and experts per token at every grid p (the other
 * layers at the richest p), solves for the cheapest-in-perplexity choice within the budget, then measures the choice
 * and the best uniform p, and keeps whichever candidate within the budget has the lower perplexity.
 */
export async function calibrate(
  model: Model,
  windows: Int32Array[],
  options: CalibrateOptions,
): Promise<CalibrationResult> {
  checkEvaluationInput(model, windows);
  const grid = checkOptions(options);
  const budget = options.expertsPerToken;
  const layers = moeLayers(model.spec).map((l) => l.layer);
  const slots = layers.length;
  const richest = grid.length - 1;
  const total = windows.length * (1 + grid.length + slots * richest + SOLVE_ATTEMPTS);
  let done = 0;
  const run = (p: number[], label: string) =>
    scoreWindows(model, windows, p.map(topP), () => options.onProgress?.(++done, total, label));
  const candidate = (kind: CalibrationCandidate['kind'], p: number[], e: PolicyEvaluation): CalibrationCandidate => ({
    kind,
    p,
    expertsPerToken: e.stats.expertsPerToken,
    perplexity: e.perplexity,
  });

  const trained = await scoreWindows(model, windows, undefined, () => options.onProgress?.(++done, total, 'trained'));
  const uniformRuns: PolicyEvaluation[] = [];
  for (const p of grid) uniformRuns.push(await run(new Array(slots).fill(p), `top-p:${p} on every layer`));
  const reference = uniformRuns[richest];

  const sensitivity: LayerSensitivity[] = layers.map((layer, slot) => ({
    layer,
    p: [...grid],
    expertsPerToken: grid.map(() => reference.stats.layers[slot].expertsPerToken),
    nllIncrease: grid.map(() => 0),
  }));
  for (let slot = 0; slot < slots; slot++) {
    for (let g = 0; g < richest; g++) {
      const p = new Array(slots).fill(grid[richest]);
      p[slot] = grid[g];
      const e = await run(p, `layer ${layers[slot]} at top-p:${grid[g]}`);
      sensitivity[slot].expertsPerToken[g] = e.stats.layers[slot].expertsPerToken;
      sensitivity[slot].nllIncrease[g] = e.nll - reference.nll;
    }
  }

  const costs = sensitivity.map((s) => ({ cost: s.expertsPerToken, loss: s.nllIncrease }));
  const minimum = costs.reduce((sum, c) => sum + Math.min(...c.cost), 0) / slots;
  if (minimum > budget) {
    throw new DynamoeError(
      'ERR_DYNAMOE_VALUE',
      `a budget of ${budget} experts per token is below what the grid can reach (${minimum.toFixed(3)} at ` +
        `p = ${grid[0]} everywhere); lower the grid's smallest p`,
    );
  }
  const fits = (c: CalibrationCandidate) => c.expertsPerToken <= budget;
  const candidates: CalibrationCandidate[] = [];
  let target = budget;
  for (let attempt = 0; attempt < SOLVE_ATTEMPTS; attempt++) {
    const choice = solveBudget(costs, target * slots);
    if (!choice) break;
    const p = choice.map((g) => grid[g]);
    const measured = candidate('calibrated', p, await run(p, 'calibrated thresholds'));
    candidates.push(measured);
    if (fits(measured)) break;
    target -= measured.expertsPerToken - budget; // overshoot: tighten by as much and solve again
  }
  const lowest = (list: CalibrationCandidate[]) =>
    list.length ? list.reduce((best, c) => (c.perplexity < best.perplexity ? c : best)) : null;
  const uniform = lowest(uniformRuns.map((e, g) => candidate('uniform', new Array(slots).fill(grid[g]), e)).filter(fits));
  if (uniform) candidates.push(uniform);
  options.onProgress?.(total, total, 'done');
  const chosen = lowest(candidates.filter(fits));
  if (!chosen) {
    throw new DynamoeError(
      'ERR_DYNAMOE_VALUE',
      `no thresholds on the grid met ${budget} experts per token on this text; try a finer or lower grid`,
    );
  }
  return {
    policies: chosen.p.map(topP),
    layers,
    budget,
    chosen,
    uniform,
    reference: candidate('uniform', new Array(slots).fill(grid[richest]), reference),
    trained: { policy: trained.policy, expertsPerToken: trained.stats.expertsPerToken, perplexity: trained.perplexity },
    sensitivity,
  };
}

// `dynamoe sweep`: the same text under many routing policies — quality, experts per token, speed, compute saved.
import { Model } from '../model/model';
import { moeLayers } from '../model/spec';
import { RoutingPolicy } from '../policy/routing-policy';
import { policyLabel } from '../policy/short-form';
import { typeError } from '../validate';
import { checkEvaluationInput, PolicyEvaluation, scoreWindows } from './evaluate-policy';

/** One policy's row of a sweep. */
export interface SweepPoint extends PolicyEvaluation {
  /** Perplexity minus the trained policy's. */
  perplexityChange: number;
  /** 1 - expert FLOPs / the trained policy's expert FLOPs (negative: more compute). */
  expertFlopsSaved: number;
}

/** A whole sweep, as `dynamoe sweep --json` writes it. */
export interface SweepReport {
  model: { source: string; architecture: string; dtype: string; moeLayers: number[]; experts: number[] };
  text: { windows: number; predictedTokens: number };
  /** The model's own (trained) policy, the reference of every change and saving. */
  trained: SweepPoint;
  points: SweepPoint[];
}

/** Called after each window of each policy. */
export type SweepProgress = (done: number, total: number, policy: string) => void;

function point(evaluation: PolicyEvaluation, trained: PolicyEvaluation): SweepPoint {
  return {
    ...evaluation,
    perplexityChange: evaluation.perplexity - trained.perplexity,
    expertFlopsSaved: 1 - evaluation.expertFlopsPerToken / trained.expertFlopsPerToken,
  };
}

/** Runs the trained policy, then each of `policies` (one policy for every MoE layer), over the same windows. */
export async function runSweep(
  model: Model,
  windows: Int32Array[],
  policies: RoutingPolicy[],
  onProgress: SweepProgress = () => undefined,
): Promise<SweepReport> {
  checkEvaluationInput(model, windows);
  if (!Array.isArray(policies)) typeError('policies', 'an array of policies', policies);
  const total = windows.length * (policies.length + 1);
  let done = 0;
  const evaluate = (policy: RoutingPolicy | undefined, label: string) =>
    scoreWindows(model, windows, policy, () => onProgress(++done, total, label));
  const trained = await evaluate(undefined, 'trained policy');
  const points: SweepPoint[] = [];
  for (const policy of policies) points.push(point(await evaluate(policy, policyLabel(policy)), trained));
  const info = model.info;
  return {
    model: {
      source: info.source,
      architecture: info.architecture,
      dtype: info.dtype,
      moeLayers: moeLayers(model.spec).map((l) => l.layer),
      experts: moeLayers(model.spec).map((l) => l.moe.experts),
    },
    text: { windows: windows.length, predictedTokens: trained.predictedTokens },
    trained: point(trained, trained),
    points,
  };
}

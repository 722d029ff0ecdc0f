// The parity table's row types: one op on one shape, dtype and policy, with its inputs made from a seed.
// A new op (a graph op, say) adds a row interface here, its generator beside the others and one case in runner.ts.
import type { ErrorCode, MoEForwardResult, RoutingPolicy } from '../../lib';
import type { ScoreDistribution, WeightDtype } from '../reference';
import type { Backend } from './backends';

export type Op = 'route' | 'moe_layer';
export const OPS: readonly Op[] = ['route', 'moe_layer'];

/** How a backend refuses a row beyond its limits; `optional`: it may also run it, and must then agree. */
export interface Refusal {
  code: ErrorCode;
  message?: RegExp;
  optional?: boolean;
}

interface RowBase {
  op: Op;
  /** unique within its op: the jest test's name */
  name: string;
  dtype: WeightDtype;
  policy: RoutingPolicy;
  /** the inputs' seed (scores or x) */
  seed: number;
  /** also a CPU row (false: too costly for CI's CPU budget; the CPU still runs as the baseline of other backends) */
  cpu: boolean;
  refusedOn?: Partial<Record<Backend, Refusal>>;
}

export interface RouteRow extends RowBase {
  op: 'route';
  /** route() takes fp32 scores */
  dtype: 'f32';
  shape: { tokens: number; experts: number };
  input: 'logits' | 'probabilities';
  /** makeScores(new Rng(seed), distribution, ...), Rng(seed).normalArray(..., std), or the given values */
  scores: { distribution: ScoreDistribution } | { normalStd: number } | { values: readonly number[] };
  /** a documented result (ROUTING.md), asserted on every backend's own output */
  expected?: { ids: number[]; weights: number[] };
}

export interface LayerShape {
  hidden: number;
  ffn: number;
  experts: number;
  tokens: number;
  shared?: { ffn: number; gated: boolean };
  /** std of the router times sqrt(hidden): larger means more peaked routing */
  routerScale?: number;
}

export interface LayerRow extends RowBase {
  op: 'moe_layer';
  shape: LayerShape;
  /** the weights' seed: rows on the same layer share it (and the built layer) */
  weightSeed: number;
  /** [expert, score]: these experts always win on positive inputs, and x is uniform in [0.1, 1] */
  winners?: readonly (readonly [number, number])[];
  /** no near-ties: every backend picks the CPU's ids on every token */
  sameIdsAsCpu?: boolean;
  /** asserted on every backend's result */
  expectations?: (result: MoEForwardResult, tokens: number) => void;
  /** the same weights in f32 on the same backend differ from this dtype's layer by between min and max */
  contrast?: { min: number; max: number };
  /** f16/bf16 weights as f32 values, Uint16Array bits or per-expert arrays give the same bits */
  weightForms?: boolean;
}

export type ParityRow = RouteRow | LayerRow;

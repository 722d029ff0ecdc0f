// Seeded synthetic MoE layer weights and activations for the tests and the benchmarks (deterministic across runs
// and machines).
import { DType } from '../dtype';
import { SeededRandom } from '../seeded-random';
import { MoELayerWeights } from './moe-layer';

/** Shape of a synthetic MoE layer. */
export interface SyntheticLayerShape {
  hidden: number;
  ffn: number;
  experts: number;
  dtype: DType;
  /** Standard deviation of the router logits for unit-RMS inputs: larger means more confident routing. */
  routerLogitStd: number;
}

/** Random weights for one layer, scaled so activations keep a unit-order RMS through the stack. */
export function syntheticLayerWeights(shape: SyntheticLayerShape, seed: number): MoELayerWeights {
  const { hidden, ffn, experts } = shape;
  const random = new SeededRandom(seed);
  return {
    hidden,
    ffn,
    experts,
    dtype: shape.dtype,
    router: random.normals(experts * hidden, shape.routerLogitStd / Math.sqrt(hidden)),
    gate: random.normals(experts * ffn * hidden, 1 / Math.sqrt(hidden)),
    up: random.normals(experts * ffn * hidden, 1 / Math.sqrt(hidden)),
    down: random.normals(experts * hidden * ffn, 1 / Math.sqrt(ffn)),
  };
}

/** Token activations with unit RMS. */
export function syntheticActivations(tokens: number, hidden: number, seed: number): Float32Array {
  return new SeededRandom(seed).normals(tokens * hidden, 1);
}

/** RMS-normalised copy of the rows of x: the input of the next MoE block. */
export function rmsNormRows(x: Float32Array, hidden: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let row = 0; row < x.length / hidden; row++) {
    let sum = 0;
    for (let h = 0; h < hidden; h++) sum += x[row * hidden + h] ** 2;
    const scale = 1 / Math.sqrt(sum / hidden + 1e-6);
    for (let h = 0; h < hidden; h++) out[row * hidden + h] = x[row * hidden + h] * scale;
  }
  return out;
}

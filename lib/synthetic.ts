// Seeded synthetic MoE weights for the demo and the benchmarks (deterministic across runs and machines).
import { DType } from './dtype';
import { MoELayerWeights } from './moe-layer';

/** A seeded generator of uniform and normal floats (mulberry32 + Box-Muller). */
export class SeededRandom {
  #state: number;
  #spare: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal. */
  normal(): number {
    if (this.#spare !== undefined) {
      const spare = this.#spare;
      this.#spare = undefined;
      return spare;
    }
    const u = 1 - this.uniform();
    const v = this.uniform();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.#spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  }

  /** `count` normal values times `std`. */
  normals(count: number, std: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.normal() * std;
    return out;
  }
}

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

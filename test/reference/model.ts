// Float64 test reference: a whole decoder-only MoE transformer (Llama family), written from the papers / HF code,
// independent of lib/.
import { refLayerOutput } from './layer';
import { RefPolicy } from './policy';
import { RefRouterRule, selectByRule } from './router-rule';
import { refRoute } from './routing';
import { causalAttention, linear, rmsNorm } from './ops';


export interface RefSharedWeights {
  ffn: number;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  gateWeight?: Float32Array;
}

export type RefFeedForward =
  | { kind: 'dense'; ffn: number; gate: Float32Array; up: Float32Array; down: Float32Array }
  | {
      kind: 'moe';
      experts: number;
      ffn: number;
      router: Float32Array;
      gate: Float32Array[];
      up: Float32Array[];
      down: Float32Array[];
      shared?: RefSharedWeights;
      policy: RefPolicy;
      /** A family's router (sigmoid, selection bias, groups, weight rule); absent: the plain softmax. */
      routerRule?: RefRouterRule;
      /** Llama 4: the routing weight scales the expert's input, not its output. */
      weightOnInput?: boolean;
    };

export interface RefDecoderLayer {
  attnNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  mlpNorm: Float32Array;
  ffn: RefFeedForward;
}

export interface RefModel {
  vocab: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeTheta: number;
  /** Leading dimensions of each head that rotate (default headDim). */
  rotaryDim?: number;
  /** 'pairs': dimension 2i rotates with 2i + 1 (ERNIE 4.5's interleaved rotate_half); default HF's halves. */
  ropeStyle?: 'halves' | 'pairs';
  rmsNormEpsilon: number;
  qkNorm: 'none' | 'per-head' | 'full';
  /** The q/k norm after RoPE (Hunyuan-A13B) instead of before. */
  qkNormAfterRope?: boolean;
  /** Per layer, whether RoPE applies (Llama 4 leaves every 4th layer without); absent: every layer. */
  ropeLayers?: boolean[];
  /** Llama 4: q and k heads RMS-normalised without weights after RoPE, on the layers RoPE applies to. */
  qkUnitNorm?: boolean;
  /** Llama 4: RoPE layers attend within chunks of this many positions. */
  attentionChunk?: number;
  /** Llama 4's attn_temperature_tuning on NoPE layers: q times log1p(floor((i + 1) / floor)) * scale + 1. */
  attentionTemperature?: { floor: number; scale: number };
  /** Llama 3's RoPE scaling (Llama 4 uses it): frequencies below the original context's divided by `factor`. */
  llama3Rope?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalContext: number };
  embed: Float32Array;
  finalNorm: Float32Array;
  /** Absent when tied to the embedding. */
  lmHead?: Float32Array;
  layers: RefDecoderLayer[];
}



/**
 * Hugging Face rotate_half RoPE over the first `rotaryDim` dimensions: i pairs with i + rotaryDim/2 (halves), or
 * 2i with 2i + 1 (pairs), both at frequency theta^(-2i / rotaryDim).
 */
function rope(x: Float64Array, rows: number, heads: number, headDim: number, theta: number, rotaryDim = headDim, style = 'halves',
  llama3?: RefModel['llama3Rope']): void {
  const half = rotaryDim / 2;
  const first = (i: number) => (style === 'pairs' ? 2 * i : i);
  const second = (i: number) => (style === 'pairs' ? 2 * i + 1 : i + half);
  const frequency = (i: number) => llama3Frequency(theta ** ((-2 * i) / rotaryDim), llama3);
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * frequency(i);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const base = t * heads * headDim + h * headDim;
        const a = x[base + first(i)];
        const b = x[base + second(i)];
        x[base + first(i)] = a * c - b * s;
        x[base + second(i)] = b * c + a * s;
      }
    }
  }
}


/** Each rotated pair's frequency under Llama 3's scaling (what a GGUF's rope_freqs factors divide by). */
export function refLlama3Frequencies(theta: number, rotaryDim: number, scaling: NonNullable<RefModel['llama3Rope']>): number[] {
  return Array.from({ length: rotaryDim / 2 }, (_, i) => llama3Frequency(theta ** ((-2 * i) / rotaryDim), scaling));
}

// HF's _compute_llama3_parameters: long wavelengths divided by the factor, short ones kept, a smooth blend between.
function llama3Frequency(frequency: number, s: RefModel['llama3Rope']): number {
  if (!s) return frequency;
  const wavelength = (2 * Math.PI) / frequency;
  const low = s.originalContext / s.lowFreqFactor;
  const high = s.originalContext / s.highFreqFactor;
  if (wavelength > low) return frequency / s.factor;
  if (wavelength < high) return frequency;
  const smooth = (s.originalContext / wavelength - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * (frequency / s.factor) + smooth * frequency;
}

// The fixed-shape routing of a family's router rule (the reference's kMax: k, or every expert).
function routeByRule(logits: Float64Array, rows: number, experts: number, rule: RefRouterRule, policy: RefPolicy) {
  const kMax = policy.kind === 'top-k' ? policy.k : (policy.maxExperts ?? experts);
  const ids = new Int32Array(rows * kMax).fill(-1);
  const weights = new Float64Array(rows * kMax);
  const counts = new Int32Array(rows);
  for (let t = 0; t < rows; t++) {
    // The router's logits are fp32 in the model: round them as the native router sees them.
    const row = Float32Array.from(logits.subarray(t * experts, (t + 1) * experts));
    const selection = selectByRule(row, rule, policy);
    counts[t] = selection.ids.length;
    selection.ids.forEach((e, s) => {
      ids[t * kMax + s] = e;
      weights[t * kMax + s] = selection.weights[s];
    });
  }
  return { kMax, ids, weights, counts };
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function feedForward(f: RefFeedForward, x: Float64Array, rows: number, hidden: number): { out: Float64Array; counts?: Int32Array } {
  if (f.kind === 'dense') {
    const gate = linear(x, rows, hidden, f.gate, f.ffn);
    const up = linear(x, rows, hidden, f.up, f.ffn);
    const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
    return { out: linear(act, rows, f.ffn, f.down, hidden) };
  }
  const logits = linear(x, rows, hidden, f.router, f.experts);
  const routing = f.routerRule ? routeByRule(logits, rows, f.experts, f.routerRule, f.policy) : refRoute(logits, rows, f.experts, f.policy);
  const weights = {
    hidden, ffn: f.ffn, experts: f.experts, router: f.router,
    gate: concat(f.gate), up: concat(f.up), down: concat(f.down), shared: f.shared,
  };
  const out = refLayerOutput(weights, x, rows, routing.kMax, routing.ids, routing.weights, undefined, f.weightOnInput);
  return { out, counts: routing.counts };
}

/** Logits [tokens][vocab] of a fresh sequence, and the experts each token used in each MoE layer. */
export function refModelForward(m: RefModel, tokens: readonly number[]): { logits: Float64Array; counts: Int32Array[] } {
  const { hidden: H, heads, kvHeads, headDim, rmsNormEpsilon: eps } = m;
  const T = tokens.length;
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  let x = new Float64Array(T * H);
  tokens.forEach((id, t) => {
    for (let h = 0; h < H; h++) x[t * H + h] = m.embed[id * H + h];
  });
  const counts: Int32Array[] = [];
  for (const [layerIndex, layer] of m.layers.entries()) {
    const h = rmsNorm(x, T, H, layer.attnNorm, eps);
    let q = linear(h, T, H, layer.q, qW, layer.qBias);
    let k = linear(h, T, H, layer.k, kvW, layer.kBias);
    const v = linear(h, T, H, layer.v, kvW, layer.vBias);
    const qkNorm = () => {
      if (m.qkNorm === 'none') return;
      q = rmsNorm(q, T, qW, layer.qNorm!, eps, m.qkNorm === 'per-head' ? headDim : qW);
      k = rmsNorm(k, T, kvW, layer.kNorm!, eps, m.qkNorm === 'per-head' ? headDim : kvW);
    };
    if (!m.qkNormAfterRope) qkNorm();
    const rotated = m.ropeLayers?.[layerIndex] ?? true;
    if (rotated) {
      rope(q, T, heads, headDim, m.ropeTheta, m.rotaryDim, m.ropeStyle, m.llama3Rope);
      rope(k, T, kvHeads, headDim, m.ropeTheta, m.rotaryDim, m.ropeStyle, m.llama3Rope);
    }
    if (m.qkNormAfterRope) qkNorm();
    if (m.qkUnitNorm && rotated) {
      q = rmsNorm(q, T, qW, new Float32Array(headDim).fill(1), eps, headDim);
      k = rmsNorm(k, T, kvW, new Float32Array(headDim).fill(1), eps, headDim);
    }
    const temperature = m.attentionTemperature;
    if (temperature && !rotated) {
      for (let t = 0; t < T; t++) {
        const factor = Math.log1p(Math.floor((t + 1) / temperature.floor)) * temperature.scale + 1;
        for (let j = 0; j < qW; j++) q[t * qW + j] *= factor;
      }
    }
    const chunk = rotated ? m.attentionChunk : undefined;
    const attn = linear(causalAttention(q, k, v, T, { heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), chunk }), T, qW, layer.o, H);
    x = x.map((value, i) => value + attn[i]);
    const ff = feedForward(layer.ffn, rmsNorm(x, T, H, layer.mlpNorm, eps), T, H);
    if (ff.counts) counts.push(ff.counts);
    x = x.map((value, i) => value + ff.out[i]);
  }
  const final = rmsNorm(x, T, H, m.finalNorm, eps);
  return { logits: linear(final, T, H, m.lmHead ?? m.embed, m.vocab), counts };
}

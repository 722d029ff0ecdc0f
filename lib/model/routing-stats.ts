// Routing statistics of a forward or a generation: what the paper's analyses are made of (ROUTING.md).
import type { NativeMoeStepStats, RouterSums } from '../addon/native-surface';
import { RoutingPolicy } from '../policy/routing-policy';
import { policyLabel } from '../policy/short-form';

/** Statistics of one MoE layer over the tokens seen. */
export interface LayerRoutingStats {
  /** Decoder layer index. */
  layer: number;
  /** The policy that ran, e.g. `top-p:0.4`. */
  policy: string;
  tokens: number;
  /** Mean experts per token (routed slots, zero-computation experts included). */
  expertsPerToken: number;
  /** Mean FFN experts per token: what the layer computed (equals expertsPerToken without zero-computation experts). */
  ffnExpertsPerToken: number;
  /** histogram[n]: tokens that used n experts. */
  histogram: number[];
  /** Tokens routed to each expert. */
  expertLoad: number[];
  /** Mean router entropy, -sum P log P (nats); also the dynamic loss L_d. */
  entropy: number;
  /** L_b = E * sum_i f_i Q_i (f_i: fraction of tokens routed to expert i, Q_i: mean router probability). */
  loadBalanceLoss: number;
}

export interface RoutingStats {
  /** The policy that ran: one label when every MoE layer ran the same, else the layers' labels joined by commas. */
  policy: string;
  tokens: number;
  /** Mean experts per token over all MoE layers. */
  expertsPerToken: number;
  /** Mean FFN experts per token over all MoE layers (zero-computation experts left out). */
  ffnExpertsPerToken: number;
  /** Mean of the layers' dynamic (entropy) losses. */
  dynamicLoss: number;
  /** Mean of the layers' load-balance losses. */
  loadBalanceLoss: number;
  layers: LayerRoutingStats[];
}

interface LayerSums {
  layer: number;
  policy: string;
  tokens: number;
  histogram: number[];
  ffnRouted: number;
  load: Float64Array;
  probabilitySum: Float64Array;
  entropySum: Float64Array;
}

/** Sums the native per-step statistics of every MoE layer over many steps. */
export class RoutingStatsAccumulator {
  private readonly sums: LayerSums[];

  constructor(layers: { layer: number; experts: number; policy: RoutingPolicy }[]) {
    this.sums = layers.map(({ layer, experts, policy }) => ({
      layer,
      policy: policyLabel(policy),
      tokens: 0,
      histogram: [],
      ffnRouted: 0,
      load: new Float64Array(experts),
      probabilitySum: new Float64Array(experts),
      entropySum: new Float64Array(1),
    }));
  }

  /**
   * The running sums, per MoE layer, for native steps to add their tokens to: the sums then grow token by token,
   * so they have the same bits however the tokens were split into steps (and whatever shared those steps).
   */
  runningSums(): RouterSums[] {
    return this.sums.map(({ probabilitySum, entropySum }) => ({ probabilitySum, entropySum }));
  }

  add(step: NativeMoeStepStats[]): void {
    step.forEach((s, slot) => {
      const sums = this.sums[slot];
      sums.tokens += s.counts.length;
      for (const count of s.counts) {
        while (sums.histogram.length <= count) sums.histogram.push(0);
        sums.histogram[count]++;
      }
      for (const count of s.ffnCounts) sums.ffnRouted += count;
      s.expertLoad.forEach((n, e) => (sums.load[e] += n));
      // A step that added into runningSums() already did its part.
      if (s.probabilitySum === sums.probabilitySum) return;
      s.probabilitySum.forEach((p, e) => (sums.probabilitySum[e] += p));
      sums.entropySum[0] += s.entropySum[0];
    });
  }

  result(): RoutingStats {
    const layers = this.sums.map((s): LayerRoutingStats => {
      const tokens = Math.max(s.tokens, 1);
      const experts = s.load.length;
      let balance = 0;
      for (let e = 0; e < experts; e++) balance += (s.load[e] / tokens) * (s.probabilitySum[e] / tokens);
      const routed = s.histogram.reduce((sum, n, count) => sum + n * count, 0);
      return {
        layer: s.layer,
        policy: s.policy,
        tokens: s.tokens,
        expertsPerToken: routed / tokens,
        ffnExpertsPerToken: s.ffnRouted / tokens,
        histogram: [...s.histogram],
        expertLoad: Array.from(s.load),
        entropy: s.entropySum[0] / tokens,
        loadBalanceLoss: experts * balance,
      };
    });
    const mean = (f: (l: LayerRoutingStats) => number) =>
      layers.length ? layers.reduce((sum, l) => sum + f(l), 0) / layers.length : 0;
    const labels = layers.map((l) => l.policy);
    return {
      policy: labels.every((l) => l === labels[0]) ? (labels[0] ?? '') : labels.join(','),
      tokens: layers.length ? layers[0].tokens : 0,
      expertsPerToken: mean((l) => l.expertsPerToken),
      ffnExpertsPerToken: mean((l) => l.ffnExpertsPerToken),
      dynamicLoss: mean((l) => l.entropy),
      loadBalanceLoss: mean((l) => l.loadBalanceLoss),
      layers,
    };
  }
}

// IBM Granite MoE (granitemoe, and granitemoeshared with its always-on shared MLP): Llama-style attention, every
// layer MoE, routed by top-k of the router logits with a softmax over the kept k, and Granite's four multipliers
// (embeddings, each sublayer's output before the residual add, the attention softmax scale, the logits' divisor).
// Its experts are stacked and gate and up fused: `input_linear` [E][2F][H] (first F rows gate, last F up),
// `output_linear` [E][H][F]; the shared MLP fuses them the same way, [2F][H].
import { DynamoeError } from '../../errors';
import { TensorStore } from '../../formats/tensor-store';
import { RowSplit, RowSplitStore } from '../row-split-store';
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { ConfigReader } from '../config-reader';
import { ExpertMatrix, hfNaming, LayerTensor } from '../naming';
import { MultipliersSpec } from '../spec';

type Half = 'gate' | 'up';

const at = (layer: number, module: string) => `model.layers.${layer}.${module}`;
const EXPERTS = 'block_sparse_moe';
const SHARED = 'shared_mlp';

// The name a half of a fused input_linear goes by: the checkpoint's own, with `[gate]` or `[up]`.
function halfName(layer: number, module: string, half: Half): string {
  return `${at(layer, module)}.input_linear.weight[${half}]`;
}

function expertName(layer: number, matrix: ExpertMatrix): string {
  return matrix === 'down' ? `${at(layer, EXPERTS)}.output_linear.weight` : halfName(layer, EXPERTS, matrix);
}

// Each [..., 2F, H] input_linear presented as its gate and up halves [..., F, H] (chunk(2) along the rows).
function fusedHalves(store: TensorStore, layers: number): RowSplitStore {
  const splits: RowSplit[] = [];
  for (let layer = 0; layer < layers; layer++) {
    for (const module of [EXPERTS, SHARED]) {
      const fused = `${at(layer, module)}.input_linear.weight`;
      const shape = store.tensors.get(fused)?.shape ?? [];
      // A shape that cannot split stays under the fused name; the reader then reports the missing halves.
      if (shape.length < 2 || shape[shape.length - 2] % 2 !== 0) continue;
      const rows = shape[shape.length - 2] / 2;
      splits.push({ fused, parts: (['gate', 'up'] as const).map((half) => ({ name: halfName(layer, module, half), rows })) });
    }
  }
  return new RowSplitStore(store, splits);
}

function positive(c: ConfigReader, key: string): number {
  const value = c.number(key, 1);
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: '${key}' must be a positive number, got ${value}`);
  }
  return value;
}

/** The four multipliers of a Granite config.json (each 1 when absent, as in transformers' GraniteMoeConfig). */
export function graniteMultipliers(c: ConfigReader): MultipliersSpec {
  return {
    embedding: positive(c, 'embedding_multiplier'),
    residual: positive(c, 'residual_multiplier'),
    attention: positive(c, 'attention_multiplier'),
    logitsDivisor: positive(c, 'logits_scaling'),
  };
}

const base = hfNaming({
  router: `${EXPERTS}.router.layer`,
  experts: EXPERTS,
  expertMatrices: { gate: 'input_linear', up: 'input_linear', down: 'output_linear' },
  dense: 'mlp',
});
const sharedNames: Partial<Record<LayerTensor, (layer: number) => string>> = {
  shared_gate: (layer) => halfName(layer, SHARED, 'gate'),
  shared_up: (layer) => halfName(layer, SHARED, 'up'),
  shared_down: (layer) => `${at(layer, SHARED)}.output_linear.weight`,
};

export const graniteMoe: Architecture = {
  name: 'granite-moe',
  matchesHf: (c) => modelType(c) === 'granitemoe' || modelType(c) === 'granitemoeshared',
  fromHfConfig: (c) => {
    const experts = c.int('num_local_experts');
    const k = c.int('num_experts_per_tok');
    if (k > experts) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: ${k} experts per token is above num_local_experts (${experts})`);
    }
    if (c.has('hidden_act') && c.string('hidden_act') !== 'silu') {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: hidden_act '${c.string('hidden_act')}' is not supported (only silu)`);
    }
    const ffn = c.int('intermediate_size');
    // granitemoeshared: a shared MLP of this width beside the experts (0: none).
    const sharedFfn = modelType(c) === 'granitemoeshared' ? c.int('shared_intermediate_size', 0, true) : 0;
    const spec = llamaFamilySpec(c, 'granite-moe', () => ({
      kind: 'moe',
      experts,
      ffn,
      policy: topK(k, true),
      router: { scoring: 'softmax-of-kept' },
      ...(sharedFfn > 0 ? { shared: { ffn: sharedFfn, gated: false } } : {}),
    }));
    // Granite's attention has no head_dim key: hidden / heads, whatever else the config says.
    spec.headDim = Math.floor(spec.hidden / spec.heads);
    // attention_bias covers o_proj as well as q, k and v.
    if (spec.attentionBias) spec.outputBias = true;
    spec.multipliers = graniteMultipliers(c);
    return spec;
  },
  hfNaming: {
    ...base,
    layer: (index, tensor) => sharedNames[tensor]?.(index) ?? base.layer(index, tensor),
    experts: { stacked: true, name: expertName },
  },
  hfStore: (store, spec) => fusedHalves(store, spec.layers.length),
};

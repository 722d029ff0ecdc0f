// Turns a ModelSpec and a checkpoint into the native graph: one node per op, weights read and packed node by node,
// so a checkpoint's tensors are never all in JS memory at once.
import { native } from '../addon/native';
import type { GraphNode, NativeModelGraph } from '../addon/native-surface';
import { DType } from '../dtype';
import { callNative, DynamoeError, fromNativeError } from '../errors';
import { LayerTensor } from './naming';
import { llama3RopeTable, yarnRopeTable } from './rope-scaling';
import { attentionSlots, MlaSpec, MoELayerSpec, moeLayers, ModelSpec, routedSlots } from './spec';
import { WeightArray, WeightReader } from './weight-reader';

// Activation buffers (floats per token in parentheses).
const X = 0; // residual stream (hidden)
const H = 1; // normed input of attention / MLP (hidden)
const Q = 2; // queries (heads x headDim)
const K = 3; // keys (kvHeads x headDim)
const V = 4; // values (kvHeads x headDim)
const ATTN = 5; // attention output (heads x headDim)
const OUT = 6; // projection or MLP output added to the residual (hidden)
// MLA models use the attention buffers this way: Q the heads' no-RoPE query parts (heads x nopeDim), K their RoPE
// parts (heads x ropeDim), V the latent (kvLoraRank), ATTN the heads' values (heads x valueDim), and two more:
const K_ROPE = 7; // the RoPE key part shared by all heads (ropeDim)
const Q_LATENT = 8; // the query's low-rank projection (qLoraRank)
// LongCat-Flash's shortcut-connected layers keep the MoE block's output here until the layer's end (hidden).
const MOE_OUT = 9;

/** Floats per token of each activation buffer. */
function bufferWidths(spec: ModelSpec): number[] {
  const { hidden, heads, kvHeads, headDim } = spec;
  if (!spec.mla) return [hidden, hidden, heads * headDim, kvHeads * headDim, kvHeads * headDim, heads * headDim, hidden];
  const { qLoraRank, kvLoraRank, nopeDim, ropeDim, valueDim } = spec.mla;
  const widths = [hidden, hidden, heads * nopeDim, heads * ropeDim, kvLoraRank, heads * valueDim, hidden, ropeDim, qLoraRank ?? 1];
  return spec.shortcutMoe ? [...widths, hidden] : widths;
}

/** Floats per position of a layer's cached keys and values: an MLA layer caches its latent row only. */
export function kvRowWidths(spec: ModelSpec): { key: number; value: number } {
  if (spec.mla) return { key: spec.mla.kvLoraRank + spec.mla.ropeDim, value: 0 };
  return { key: spec.kvHeads * spec.headDim, value: spec.kvHeads * spec.headDim };
}

/** Reports build progress: nodes packed so far out of the total. */
export type ProgressCallback = (done: number, total: number) => void;

/** One graph node, made when called: its weights are read from the checkpoint only then. */
type NodeMaker = () => Promise<GraphNode>;

/** The model's nodes in execution order (the whole graph; weights not read yet). */
function graphNodes(spec: ModelSpec, weights: WeightReader, dtype: DType): NodeMaker[] {
  const { hidden, heads, kvHeads, headDim, vocab } = spec;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const names = weights.naming;
  const { multipliers } = spec;
  if (multipliers && spec.mla) {
    throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', 'Granite multipliers with MLA attention are not supported');
  }
  const nodes: NodeMaker[] = [];
  const node = (make: NodeMaker) => nodes.push(make);
  const fixed = (value: GraphNode) => node(async () => value);
  // `scale` multiplies the norm's weight (LongCat-Flash's MLA LoRA scales).
  const norm = (input: number, output: number, width: number, groupSize: number, weight: string, scale = 1) =>
    node(async () => {
      const values = await weights.vector(weight, groupSize);
      if (scale !== 1) for (let j = 0; j < values.length; j++) values[j] *= scale;
      return { op: 'rms_norm', input, output, width, groupSize, epsilon: spec.rmsNormEpsilon, weight: values };
    });
  const linear = (input: number, output: number, inFeatures: number, outFeatures: number, weight: string, bias?: string) =>
    node(async () => ({
      op: 'linear', input, output, inFeatures, outFeatures,
      weight: await weights.matrix(weight, outFeatures, inFeatures),
      ...(bias ? { bias: await weights.vector(bias, outFeatures) } : {}),
    }));
  // A scaled RoPE's table over the rotated dimensions (YaRN's `dim`), computed once for every layer.
  const rotaryDim = spec.rotaryDim ?? headDim;
  let ropeTable: Promise<{ inverseFrequencies: Float64Array; scale: number } | undefined> | undefined;
  const scaledRope = async () => {
    if (spec.ropeScaling) return yarnRopeTable(spec.ropeScaling, rotaryDim, spec.ropeTheta);
    if (spec.llama3Rope) return { inverseFrequencies: llama3RopeTable(spec.llama3Rope, rotaryDim, spec.ropeTheta), scale: 1 };
    if (!spec.ropeFactorsTensor) return undefined;
    const factors = await weights.vector(spec.ropeFactorsTensor, rotaryDim / 2);
    const inverseFrequencies = Float64Array.from(factors, (factor, i) => spec.ropeTheta ** ((-2 * i) / rotaryDim) / factor);
    return { inverseFrequencies, scale: 1 };
  };
  const rope = (buffer: number, count: number) =>
    node(async () => {
      const table = await (ropeTable ??= scaledRope());
      return {
        op: 'rope', buffer, heads: count, headDim, rotaryDim, theta: spec.ropeTheta, style: spec.ropeStyle,
        ...(table ? { inverseFrequencies: table.inverseFrequencies, scale: table.scale } : {}),
      };
    });
  // Llama 4's q/k norm: RMSNorm of each head without weights.
  const unitNorm = (buffer: number, width: number) =>
    fixed({ op: 'rms_norm', input: buffer, output: buffer, width, groupSize: headDim, epsilon: spec.rmsNormEpsilon, weight: new Float32Array(headDim).fill(1) });

  // Two linear nodes from one matrix split by rows (see WeightReader.splitRows), the matrix read once.
  const splitLinear = (input: number, outputs: [number, number], inFeatures: number, rows: number, weight: string, period: number, cut: number) => {
    let parts: Promise<[WeightArray, WeightArray]> | undefined;
    const read = () => (parts ??= weights.splitRows(weight, rows, inFeatures, period, cut));
    const periods = rows / period;
    node(async () => ({ op: 'linear', input, output: outputs[0], inFeatures, outFeatures: periods * cut, weight: (await read())[0] }));
    node(async () => {
      const second = (await read())[1];
      parts = undefined;
      return { op: 'linear', input, output: outputs[1], inFeatures, outFeatures: periods * (period - cut), weight: second };
    });
  };
  // One layer's grouped-query attention, from the normed input H to its output projection in OUT.
  const standardAttention = (i: number) => {
    const name = (t: LayerTensor) => names.layer(i, t);
    const qkvBias = (t: LayerTensor) => (spec.attentionBias ? name(t) : undefined);
    linear(H, Q, hidden, qWidth, name('q'), qkvBias('q_bias'));
    linear(H, K, hidden, kvWidth, name('k'), qkvBias('k_bias'));
    linear(H, V, hidden, kvWidth, name('v'), qkvBias('v_bias'));
    const qkNorm = () => {
      if (spec.qkNorm === 'none') return;
      const perHead = spec.qkNorm === 'per-head';
      norm(Q, Q, qWidth, perHead ? headDim : qWidth, name('q_norm'));
      norm(K, K, kvWidth, perHead ? headDim : kvWidth, name('k_norm'));
    };
    if (!spec.qkNormAfterRope) qkNorm();
    const rotated = spec.ropeLayers?.[i] ?? true;
    if (rotated) {
      rope(Q, heads);
      rope(K, kvHeads);
    }
    if (spec.qkNormAfterRope) qkNorm();
    if (spec.qkUnitNorm && rotated) {
      unitNorm(Q, qWidth);
      unitNorm(K, kvWidth);
    }
    const window = spec.attentionWindows?.[i] ?? 0;
    const chunk = spec.attentionChunks?.[i] ?? 0;
    const temperature = spec.attentionTemperature?.layers[i] ? spec.attentionTemperature : undefined;
    node(async () => ({
      op: 'attention', query: Q, key: K, value: V, output: ATTN, heads, kvHeads, headDim, slot: i,
      ...(window > 0 ? { window } : {}),
      ...(chunk > 0 ? { chunk } : {}),
      ...(temperature ? { temperatureFloor: temperature.floor, temperatureScale: temperature.scale } : {}),
      ...(spec.attentionSinks ? { sinks: await weights.vector(name('sinks'), heads) } : {}),
      ...(multipliers?.attention ? { scale: multipliers.attention } : {}),
    }));
    linear(ATTN, OUT, qWidth, hidden, name('o'), spec.outputBias ? name('o_bias') : undefined);
  };
  // MLA rotates only each head's RoPE part: a scaled RoPE's table is over those dimensions.
  const mlaRopeTable = spec.mla && spec.ropeScaling ? yarnRopeTable(spec.ropeScaling, spec.mla.ropeDim, spec.ropeTheta) : undefined;
  const mlaRope = (buffer: number, count: number, ropeDim: number) =>
    fixed({
      op: 'rope', buffer, heads: count, headDim: ropeDim, theta: spec.ropeTheta, style: spec.ropeStyle,
      ...(mlaRopeTable ? { inverseFrequencies: mlaRopeTable.inverseFrequencies, scale: mlaRopeTable.scale } : {}),
    });
  // One multi-head latent attention, from the normed input H to its output projection in OUT, caching in `slot`.
  const mlaAttention = (name: (t: LayerTensor) => string, slot: number, mla: MlaSpec) => {
    const { qLoraRank, kvLoraRank, nopeDim, ropeDim, valueDim, loraScales } = mla;
    const queryHead = nopeDim + ropeDim;
    if (loraScales && !qLoraRank) {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', 'MLA LoRA scales need a low-rank query (q_lora_rank)');
    }
    if (qLoraRank) {
      linear(H, Q_LATENT, hidden, qLoraRank, name('q_a'));
      // q_b is linear: scaling its input by the query's LoRA scale scales the whole query.
      norm(Q_LATENT, Q_LATENT, qLoraRank, qLoraRank, name('q_a_norm'), loraScales?.query);
      splitLinear(Q_LATENT, [Q, K], qLoraRank, heads * queryHead, name('q_b'), queryHead, nopeDim);
    } else {
      splitLinear(H, [Q, K], hidden, heads * queryHead, name('q'), queryHead, nopeDim);
    }
    splitLinear(H, [V, K_ROPE], hidden, kvLoraRank + ropeDim, name('kv_a'), kvLoraRank + ropeDim, kvLoraRank);
    norm(V, V, kvLoraRank, kvLoraRank, name('kv_a_norm'), loraScales?.latent);
    mlaRope(K, heads, ropeDim);
    mlaRope(K_ROPE, 1, ropeDim);
    node(async () => ({
      op: 'mla_attention', queryNope: Q, queryRope: K, latent: V, keyRope: K_ROPE, output: ATTN, heads, nopeDim,
      ropeDim, kvLoraRank, valueDim, slot,
      // DeepSeek's YaRN multiplies the softmax scale by mscale(factor, mscale_all_dim)^2.
      scale: (spec.ropeScaling?.softmaxFactor ?? 1) / Math.sqrt(queryHead),
      ...(await weights.mlaUpProjections({ kvUp: name('kv_b'), kUp: name('k_b'), vUp: name('v_b') }, heads, nopeDim, valueDim, kvLoraRank)),
    }));
    linear(ATTN, OUT, heads * valueDim, hidden, name('o'));
  };

  const residual = () =>
    fixed({ op: 'add', a: X, b: OUT, output: X, width: hidden, ...(multipliers ? { scale: multipliers.residual } : {}) });
  // LongCat-Flash's shortcut-connected layers (ShortcutMoeSpec): per layer, attention slots 2i and 2i + 1, MoE slot i.
  function shortcutLayers(denseFfn: number): void {
    const mla = spec.mla;
    const sublayer = names.sublayer;
    if (!mla || !sublayer) {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', 'shortcut-connected MoE layers need MLA attention and sublayer tensor names');
    }
    spec.layers.forEach((layer, i) => {
      if (layer.kind !== 'moe') throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `shortcut-connected layer ${i} has no MoE block`);
      const sub = (j: number) => (t: LayerTensor) => sublayer(i, j, t);
      norm(X, H, hidden, hidden, sub(0)('attn_norm'));
      mlaAttention(sub(0), 2 * i, mla);
      fixed({ op: 'add', a: X, b: OUT, output: X, width: hidden });
      // The MoE block and the first dense MLP read the same normed input.
      norm(X, H, hidden, hidden, sub(0)('mlp_norm'));
      moeBlock(i, layer, i, H, MOE_OUT);
      denseMlp(sub(0), denseFfn, H, OUT);
      fixed({ op: 'add', a: X, b: OUT, output: X, width: hidden });
      norm(X, H, hidden, hidden, sub(1)('attn_norm'));
      mlaAttention(sub(1), 2 * i + 1, mla);
      fixed({ op: 'add', a: X, b: OUT, output: X, width: hidden });
      norm(X, H, hidden, hidden, sub(1)('mlp_norm'));
      denseMlp(sub(1), denseFfn, H, OUT);
      // HF adds residual + mlp1 first, then the MoE output.
      fixed({ op: 'add', a: X, b: OUT, output: X, width: hidden });
      fixed({ op: 'add', a: X, b: MOE_OUT, output: X, width: hidden });
    });
  }
  // A dense SwiGLU MLP from `input` to `output`, its tensors named by `name`.
  const denseMlp = (name: (t: LayerTensor) => string, ffn: number, input: number, output: number) =>
    node(async () => ({
      op: 'mlp', input, output, hidden, ffn,
      gate: await weights.matrix(name('mlp_gate'), ffn, hidden),
      up: await weights.matrix(name('mlp_up'), ffn, hidden),
      down: await weights.matrix(name('mlp_down'), hidden, ffn),
    }));
  // Layer i's MoE block (MoE slot `slot`) from `input` to `output`.
  const moeBlock = (i: number, layer: MoELayerSpec, slot: number, input: number, output: number) => {
    const name = (t: LayerTensor) => names.layer(i, t);
    const { experts, ffn, shared, router, zeroExperts } = layer;
    const slots = routedSlots(layer);
    const expertBiases = async () =>
      layer.expertBiases
        ? {
            gateBias: await weights.expertBiases(i, 'gate', experts, ffn),
            upBias: await weights.expertBiases(i, 'up', experts, ffn),
            downBias: await weights.expertBiases(i, 'down', experts, hidden),
          }
        : {};
    node(async () => ({
      op: 'moe', input, output, slot, hidden, ffn, experts, dtype,
      router: await weights.f32Matrix(name('router'), slots, hidden),
      ...(router
        ? {
            routerRule: {
              scoring: router.scoring,
              ...(router.groups
                ? { groups: router.groups.count, keptGroups: router.groups.keep, groupScore: router.groups.score }
                : {}),
              normalize: router.normalize ?? false,
              scale: router.scale ?? 1,
              ...(router.selectionBias
                ? { selectionBias: await weights.vector(name('router_selection_bias'), slots) }
                : {}),
            },
          }
        : {}),
      ...(zeroExperts ? { zeroExperts } : {}),
      ...(layer.routerBias ? { routerBias: await weights.vector(name('router_bias'), slots) } : {}),
      ...(await expertBiases()),
      ...(layer.activation ? { activation: layer.activation } : {}),
      ...(layer.weightOnInput ? { weightOnInput: true } : {}),
      gate: await weights.experts(i, 'gate', experts, ffn, hidden),
      up: await weights.experts(i, 'up', experts, ffn, hidden),
      down: await weights.experts(i, 'down', experts, hidden, ffn),
      ...(shared
        ? {
            shared: {
              ffn: shared.ffn,
              gate: await weights.matrix(name('shared_gate'), shared.ffn, hidden),
              up: await weights.matrix(name('shared_up'), shared.ffn, hidden),
              down: await weights.matrix(name('shared_down'), hidden, shared.ffn),
              ...(shared.gated ? { gateWeight: await weights.vector(name('shared_gate_weight'), hidden) } : {}),
            },
          }
        : {}),
    }));
  };

  node(async () => ({
    op: 'embedding', hidden, output: X, weight: await weights.matrix(names.embed, vocab, hidden),
    ...(multipliers ? { scale: multipliers.embedding } : {}),
  }));
  if (spec.shortcutMoe) {
    shortcutLayers(spec.shortcutMoe.denseFfn);
  } else {
    let moeSlot = 0;
    spec.layers.forEach((layer, i) => {
      const name = (t: LayerTensor) => names.layer(i, t);
      norm(X, H, hidden, hidden, name('attn_norm'));
      if (spec.mla) mlaAttention(name, i, spec.mla);
      else standardAttention(i);
      residual();
      norm(X, H, hidden, hidden, name('mlp_norm'));
      if (layer.kind === 'dense') denseMlp(name, layer.ffn, H, OUT);
      else moeBlock(i, layer, moeSlot++, H, OUT);
      residual();
    });
  }
  norm(X, H, hidden, hidden, names.finalNorm);
  const logitScale = multipliers ? { scale: 1 / multipliers.logitsDivisor } : {};
  node(async () =>
    spec.tiedEmbeddings
      ? { op: 'logits', input: H, hidden, tied: true, ...logitScale }
      : { op: 'logits', input: H, hidden, weight: await weights.matrix(names.lmHead, vocab, hidden), ...logitScale },
  );
  return nodes;
}

export async function buildModelGraph(
  spec: ModelSpec,
  weights: WeightReader,
  dtype: DType,
  kvPoolTokens: number,
  onProgress?: ProgressCallback,
  device: 'cpu' | 'cuda' = 'cpu',
): Promise<NativeModelGraph> {
  const kv = kvRowWidths(spec);
  const graph = callNative(
    () =>
      new (native().ModelGraph)({
        bufferWidths: bufferWidths(spec),
        vocab: spec.vocab,
        kvWidths: Array.from({ length: attentionSlots(spec) }, () => kv.key),
        kvValueWidths: Array.from({ length: attentionSlots(spec) }, () => kv.value),
        moeExperts: moeLayers(spec).map((l) => routedSlots(l.moe)),
        dtype,
        kvPoolTokens,
        device,
      }),
  );
  const nodes = graphNodes(spec, weights, dtype);
  try {
    for (let done = 0; done < nodes.length; done++) {
      // One node's weights at a time: read, packed natively, then dropped by JS.
      const node = await nodes[done]();
      try {
        await graph.addNode(node);
      } catch (error) {
        fromNativeError(error);
      }
      onProgress?.(done + 1, nodes.length);
    }
  } catch (error) {
    graph.dispose();
    throw error;
  }
  return graph;
}

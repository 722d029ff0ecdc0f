// Turns a ModelSpec and a checkpoint into the native graph: one node per op, weights read and packed node by node,
// so a checkpoint's tensors are never all in JS memory at once.
import { DType } from '../dtype';
import { callNative, fromNativeError } from '../errors';
import { native, NativeModelGraph } from '../native';
import { moeLayers, ModelSpec } from './spec';
import { WeightReader } from './weight-reader';

// Activation buffers (floats per token in parentheses).
const X = 0; // residual stream (hidden)
const H = 1; // normed input of attention / MLP (hidden)
const Q = 2; // queries (heads x headDim)
const K = 3; // keys (kvHeads x headDim)
const V = 4; // values (kvHeads x headDim)
const ATTN = 5; // attention output (heads x headDim)
const OUT = 6; // projection or MLP output added to the residual (hidden)

/** Reports build progress: nodes packed so far out of the total. */
export type ProgressCallback = (done: number, total: number) => void;

function nodeCount(spec: ModelSpec): number {
  const qkNorm = spec.qkNorm === 'none' ? 0 : 2;
  return 1 + spec.layers.length * (12 + qkNorm) + 2;
}

export async function buildModelGraph(
  spec: ModelSpec,
  weights: WeightReader,
  dtype: DType,
  onProgress?: ProgressCallback,
): Promise<NativeModelGraph> {
  const { hidden, heads, kvHeads, headDim, vocab } = spec;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const graph = callNative(
    () =>
      new (native().ModelGraph)({
        bufferWidths: [hidden, hidden, qWidth, kvWidth, kvWidth, qWidth, hidden],
        vocab,
        kvWidths: spec.layers.map(() => kvWidth),
        moeExperts: moeLayers(spec).map((l) => l.moe.experts),
        dtype,
      }),
  );
  const total = nodeCount(spec);
  let done = 0;
  const add = async (node: object) => {
    try {
      await graph.addNode(node);
    } catch (error) {
      fromNativeError(error);
    }
    onProgress?.(++done, total);
  };
  const names = weights.naming;
  try {
    await add({ op: 'embedding', hidden, output: X, weight: await weights.matrix(names.embed, vocab, hidden) });
    let moeSlot = 0;
    for (let i = 0; i < spec.layers.length; i++) {
      const name = (t: Parameters<typeof names.layer>[1]) => names.layer(i, t);
      const norm = async (input: number, output: number, width: number, groupSize: number, weight: string) =>
        add({ op: 'rms_norm', input, output, width, groupSize, epsilon: spec.rmsNormEpsilon, weight: await weights.vector(weight, groupSize) });
      const linear = async (input: number, output: number, inFeatures: number, outFeatures: number, weight: string, bias?: string) =>
        add({
          op: 'linear', input, output, inFeatures, outFeatures,
          weight: await weights.matrix(weight, outFeatures, inFeatures),
          ...(bias && spec.attentionBias ? { bias: await weights.vector(bias, outFeatures) } : {}),
        });

      await norm(X, H, hidden, hidden, name('attn_norm'));
      await linear(H, Q, hidden, qWidth, name('q'), name('q_bias'));
      await linear(H, K, hidden, kvWidth, name('k'), name('k_bias'));
      await linear(H, V, hidden, kvWidth, name('v'), name('v_bias'));
      if (spec.qkNorm !== 'none') {
        const perHead = spec.qkNorm === 'per-head';
        await norm(Q, Q, qWidth, perHead ? headDim : qWidth, name('q_norm'));
        await norm(K, K, kvWidth, perHead ? headDim : kvWidth, name('k_norm'));
      }
      await add({ op: 'rope', buffer: Q, heads, headDim, theta: spec.ropeTheta, style: spec.ropeStyle });
      await add({ op: 'rope', buffer: K, heads: kvHeads, headDim, theta: spec.ropeTheta, style: spec.ropeStyle });
      await add({ op: 'attention', query: Q, key: K, value: V, output: ATTN, heads, kvHeads, headDim, slot: i });
      await linear(ATTN, OUT, qWidth, hidden, name('o'));
      await add({ op: 'add', a: X, b: OUT, output: X, width: hidden });
      await norm(X, H, hidden, hidden, name('mlp_norm'));

      const layer = spec.layers[i];
      if (layer.kind === 'dense') {
        const { ffn } = layer;
        await add({
          op: 'mlp', input: H, output: OUT, hidden, ffn,
          gate: await weights.matrix(name('mlp_gate'), ffn, hidden),
          up: await weights.matrix(name('mlp_up'), ffn, hidden),
          down: await weights.matrix(name('mlp_down'), hidden, ffn),
        });
      } else {
        const { experts, ffn, shared } = layer;
        await add({
          op: 'moe', input: H, output: OUT, slot: moeSlot++, hidden, ffn, experts, dtype,
          router: await weights.f32Matrix(name('router'), experts, hidden),
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
        });
      }
      await add({ op: 'add', a: X, b: OUT, output: X, width: hidden });
    }
    const finalNorm = await weights.vector(names.finalNorm, hidden);
    await add({ op: 'rms_norm', input: X, output: H, width: hidden, groupSize: hidden, epsilon: spec.rmsNormEpsilon, weight: finalNorm });
    await add(
      spec.tiedEmbeddings
        ? { op: 'logits', input: H, hidden, tied: true }
        : { op: 'logits', input: H, hidden, weight: await weights.matrix(names.lmHead, vocab, hidden) },
    );
  } catch (error) {
    graph.dispose();
    throw error;
  }
  return graph;
}

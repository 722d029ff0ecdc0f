// A Mixtral-style model around given MoE layer weights, for the benchmarks that run the same GGUF file in dynamoe
// and llama.cpp: one decoder layer per MoE layer, random attention of 128-wide heads, the tiny test model's
// tokenizer and vocabulary (269 tokens), top-2 routing.
import { MoELayerWeights } from '../lib';
import { syntheticLayerWeights } from '../lib/layer/synthetic-layer';
import { SeededRandom } from '../lib/seeded-random';
import { FileDtype, makeTinyModel, TinyModel, writeGgufCheckpoint } from '../test/model-fixtures';

const HEAD_DIM = 128;

/** Expert e's [keepRows][keepCols] corner of an [experts][rows][cols] weight. */
function expertSlices(data: MoELayerWeights['gate'], experts: number, rows: number, cols: number, keepRows: number, keepCols: number) {
  if (!(data instanceof Float32Array)) throw new Error('the GGUF models are written from f32 source weights');
  return Array.from({ length: experts }, (_, e) => {
    const out = new Float32Array(keepRows * keepCols);
    for (let r = 0; r < keepRows; r++) {
      const from = (e * rows + r) * cols;
      out.set(data.subarray(from, from + keepCols), r * keepCols);
    }
    return out;
  });
}

/**
 * The model: a layer per entry of `layers` (all of one hidden size and expert count), experts cut to their first
 * `ffn` rows / columns (a smaller `ffn` gives the same model with tiny experts), `kvHeads` key/value heads.
 */
export function mixtralModel(layers: MoELayerWeights[], ffn: number, kvHeads?: number): TinyModel {
  const { hidden, experts } = layers[0];
  const template = makeTinyModel('mixtral', 1, { allMoe: true });
  const random = new SeededRandom(5);
  const heads = hidden / HEAD_DIM;
  const kv = kvHeads ?? heads;
  const kvWidth = kv * HEAD_DIM;
  const layer = (weights: MoELayerWeights) => ({
    ...template.layers[0],
    attnNorm: new Float32Array(hidden).fill(1),
    mlpNorm: new Float32Array(hidden).fill(1),
    q: random.normals(hidden * hidden, 1 / Math.sqrt(hidden)),
    k: random.normals(kvWidth * hidden, 1 / Math.sqrt(hidden)),
    v: random.normals(kvWidth * hidden, 1 / Math.sqrt(hidden)),
    o: random.normals(hidden * hidden, 1 / Math.sqrt(hidden)),
    ffn: {
      kind: 'moe' as const,
      experts,
      ffn,
      policy: { kind: 'top-k' as const, k: 2, normalize: true },
      router: weights.router,
      gate: expertSlices(weights.gate, experts, weights.ffn, hidden, ffn, hidden),
      up: expertSlices(weights.up, experts, weights.ffn, hidden, ffn, hidden),
      down: expertSlices(weights.down, experts, hidden, weights.ffn, hidden, ffn),
    },
  });
  return {
    ...template,
    hidden,
    heads,
    kvHeads: kv,
    headDim: HEAD_DIM,
    embed: random.normals(template.vocab * hidden, 1),
    finalNorm: new Float32Array(hidden).fill(1),
    lmHead: random.normals(template.vocab * hidden, 1 / Math.sqrt(hidden)),
    layers: layers.map(layer),
  };
}

/** The whole-model benchmarks' model: 4 MoE layers, hidden 1024 (8 query heads), 2 key/value heads, 8 experts of ffn 2816. */
export const BENCH_MODEL = { layers: 4, hidden: 1024, ffn: 2816, experts: 8, kvHeads: 2 };

/** Writes {@link BENCH_MODEL} (seeded synthetic weights, the same every run) as a GGUF file in `dtype`. */
export async function writeBenchModelGguf(file: string, dtype: FileDtype): Promise<void> {
  const { layers, hidden, ffn, experts, kvHeads } = BENCH_MODEL;
  const weights = Array.from({ length: layers }, (_, l) =>
    syntheticLayerWeights({ hidden, ffn, experts, dtype: 'f32', routerLogitStd: 2 }, 100 + l),
  );
  await writeGgufCheckpoint(file, mixtralModel(weights, ffn, kvHeads), dtype);
}

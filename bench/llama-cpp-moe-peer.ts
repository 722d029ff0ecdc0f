// llama.cpp peer for the MoE-layer benchmark (node-llama-cpp's CPU build from bench/peers). llama.cpp runs whole
// models, so the bench writes two one-layer GGUF models ("llama" architecture, Mixtral-style top-k MoE): one with
// the layer's own expert weights and one identical but for tiny experts. The MoE layer's share of a run is the
// time of the first minus the time of the second (attention, norms, embedding and head are the same in both).
// Every token asks for (empty-filtered) logits: llama.cpp computes the last layer's feed-forward only for the
// tokens whose outputs are asked for.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MoELayerWeights } from '../lib';
import { SeededRandom } from '../lib/synthetic';
import { FileDtype, makeTinyModel, TinyModel, writeGgufCheckpoint } from '../test/model-fixtures';
import { importPeer } from './peer-loader';

// The parts of node-llama-cpp's API used here.
interface LlamaSequence {
  controlledEvaluate(input: Array<[number, { generateNext: { logits: true } }]>): Promise<unknown>;
  clearHistory(): Promise<void>;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(options: { contextSize: number; batchSize: number; threads: number }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface Llama {
  loadModel(options: { modelPath: string; useMmap: boolean }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(options: { gpu: false; build: 'never'; logLevel?: string }): Promise<Llama>;
  LlamaLogLevel: Record<string, string>;
}

const HEAD_DIM = 128;
const TINY_FFN = 32;
// Marks a token as an output, so its whole last layer runs (the logits come back too: the same cost in both models).
const OUTPUT = { generateNext: { logits: true as const } };

export interface LlamaCppMoe {
  /** Runs `tokens` tokens through the model with the real experts, from an empty context. */
  runFull(tokens: number): Promise<void>;
  /** The same through the model with tiny experts. */
  runTiny(tokens: number): Promise<void>;
  release(): Promise<void>;
}

// One decoder layer around the given MoE weights: random attention of HEAD_DIM-wide heads, the tiny model's
// tokenizer and vocabulary. Experts keep their first `ffn` rows / columns.
function oneLayerModel(weights: MoELayerWeights, ffn: number): TinyModel {
  const { hidden, experts } = weights;
  const template = makeTinyModel('mixtral', 1, { allMoe: true });
  const random = new SeededRandom(5);
  const heads = hidden / HEAD_DIM;
  const expertSlices = (data: MoELayerWeights['gate'], rows: number, cols: number, keepRows: number, keepCols: number) => {
    if (!(data instanceof Float32Array)) throw new Error('the llama.cpp peer takes f32 source weights');
    return Array.from({ length: experts }, (_, e) => {
      const out = new Float32Array(keepRows * keepCols);
      for (let r = 0; r < keepRows; r++) {
        const from = (e * rows + r) * cols;
        out.set(data.subarray(from, from + keepCols), r * keepCols);
      }
      return out;
    });
  };
  const layer = (layerFfn: number) => ({
    ...template.layers[0],
    attnNorm: new Float32Array(hidden).fill(1),
    mlpNorm: new Float32Array(hidden).fill(1),
    q: random.normals(hidden * hidden, 1 / Math.sqrt(hidden)),
    k: random.normals(hidden * hidden, 1 / Math.sqrt(hidden)),
    v: random.normals(hidden * hidden, 1 / Math.sqrt(hidden)),
    o: random.normals(hidden * hidden, 1 / Math.sqrt(hidden)),
    ffn: {
      kind: 'moe' as const,
      experts,
      ffn: layerFfn,
      policy: { kind: 'top-k' as const, k: 2, normalize: true },
      router: weights.router,
      gate: expertSlices(weights.gate, weights.ffn, hidden, layerFfn, hidden),
      up: expertSlices(weights.up, weights.ffn, hidden, layerFfn, hidden),
      down: expertSlices(weights.down, hidden, weights.ffn, hidden, layerFfn),
    },
  });
  return {
    ...template,
    hidden,
    heads,
    kvHeads: heads,
    headDim: HEAD_DIM,
    embed: random.normals(template.vocab * hidden, 1),
    finalNorm: new Float32Array(hidden).fill(1),
    lmHead: random.normals(template.vocab * hidden, 1 / Math.sqrt(hidden)),
    layers: [layer(ffn)],
  };
}

/**
 * Writes the two GGUF files for `weights` in `dtype` and loads them into llama.cpp with `threads` threads, for runs
 * of up to `maxTokens` tokens; or says why it cannot (the peer is not installed).
 */
export async function createLlamaCppMoe(
  weights: MoELayerWeights,
  dtype: FileDtype,
  threads: number,
  maxTokens: number,
): Promise<LlamaCppMoe | { missing: string }> {
  const peer = await importPeer<NodeLlamaCpp>('node-llama-cpp');
  if ('missing' in peer) return peer;
  const llama = await peer.module.getLlama({ gpu: false, build: 'never', logLevel: peer.module.LlamaLogLevel.error });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-llama-moe-'));
  try {
    const load = async (ffn: number, name: string) => {
      const file = path.join(dir, `${name}.gguf`);
      await writeGgufCheckpoint(file, oneLayerModel(weights, ffn), dtype);
      // useMmap false: this VM pages out cold file-backed pages, which would stall the first runs (FACTS.md).
      const model = await llama.loadModel({ modelPath: file, useMmap: false });
      fs.rmSync(file);
      const context = await model.createContext({ contextSize: 2 * maxTokens, batchSize: maxTokens, threads });
      const sequence = context.getSequence();
      let runs = 0;
      return {
        async run(tokens: number) {
          await sequence.clearHistory();
          runs++;
          // Token ids 3.. (past the special tokens), cycled through the tiny vocabulary; outputs for every token.
          await sequence.controlledEvaluate(Array.from({ length: tokens }, (_, i) => [3 + ((i * 37 + runs * 11) % 250), OUTPUT]));
        },
        async release() {
          await context.dispose();
          await model.dispose();
        },
      };
    };
    const full = await load(weights.ffn, 'full');
    const tiny = await load(TINY_FFN, 'tiny');
    return {
      runFull: (tokens) => full.run(tokens),
      runTiny: (tokens) => tiny.run(tokens),
      async release() {
        await full.release();
        await tiny.release();
        await llama.dispose();
      },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

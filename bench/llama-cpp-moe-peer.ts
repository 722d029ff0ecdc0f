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
import { FileDtype, writeGgufCheckpoint } from '../test/model-fixtures';
import { mixtralModel } from './mixtral-model';
import { NodeLlamaCpp } from './node-llama-cpp-api';
import { importPeer } from './peer-loader';

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
      await writeGgufCheckpoint(file, mixtralModel([weights], ffn), dtype);
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

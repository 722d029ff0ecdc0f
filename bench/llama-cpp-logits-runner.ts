// What every llama.cpp logits comparison shares: node-llama-cpp's CPU runtime opened once (or why it is missing),
// the logits of every position of a token list from a GGUF file, and the greedy next token of each row.
import { NodeLlamaCpp } from './node-llama-cpp-api';
import { importPeer } from './peer-loader';

export interface LlamaCppLogits {
  /** Logits [tokens][vocab] of `tokens` as a fresh sequence of the GGUF file's model. */
  logitsOf(file: string, tokens: readonly number[], vocab: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** llama.cpp's runtime from bench/peers, or the reason it is not there. */
export async function openLlamaCpp(): Promise<LlamaCppLogits | { missing: string }> {
  const peer = await importPeer<NodeLlamaCpp>('node-llama-cpp');
  if ('missing' in peer) return { missing: peer.missing };
  const { getLlama, LlamaLogLevel } = peer.module;
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  return {
    async logitsOf(file, tokens, vocab) {
      const model = await llama.loadModel({ modelPath: file, useMmap: false });
      const context = await model.createContext({ contextSize: 64, batchSize: 64 });
      const results = await context.getSequence().controlledEvaluate(tokens.map((t) => [t, { generateNext: { logits: true } }]));
      const logits = new Float32Array(tokens.length * vocab);
      // node-llama-cpp returns each position's logits as a Map from token id to logit.
      results.forEach((r, i) => {
        for (const [id, value] of r!.next!.logits!) logits[i * vocab + id] = value;
      });
      await context.dispose();
      await model.dispose();
      return logits;
    },
    dispose: () => llama.dispose(),
  };
}

/** The greedy next token of each row of [rows][vocab] logits. */
export function argmaxRows(logits: ArrayLike<number>, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / vocab; r++) {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (logits[r * vocab + i] > logits[r * vocab + best]) best = i;
    out.push(best);
  }
  return out;
}

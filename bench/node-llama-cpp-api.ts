// The parts of node-llama-cpp's API the benchmarks use (its CPU build, installed under bench/peers by
// `npm run bench:peers`; loaded with importPeer, so these types stand in for its own).
export type EvaluateItem = number | [number, { generateNext: { logits: true } }];

export interface LlamaSequence {
  controlledEvaluate(input: EvaluateItem[]): Promise<Array<{ next?: { logits?: Map<number, number> } } | undefined>>;
  clearHistory(): Promise<void>;
}

export interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}

export interface LlamaModel {
  createContext(options: { contextSize: number; batchSize?: number; threads?: number }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}

export interface Llama {
  loadModel(options: { modelPath: string; useMmap: boolean }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}

export interface NodeLlamaCpp {
  getLlama(options: { gpu: false; build: 'never'; logLevel?: string }): Promise<Llama>;
  LlamaLogLevel: Record<string, string>;
}

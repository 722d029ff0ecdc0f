// The parts of node-llama-cpp's API the benchmarks use (its CPU build, and its CUDA build in the GPU model bench;
// installed under bench/peers by `npm run bench:peers`; loaded with importPeer, so these types stand in for its own).
export type EvaluateItem = number | [number, { generateNext: { logits: true } }];

export interface LlamaSequence {
  /** usedOutputTokens: tokens sampled on this sequence so far (an end-of-generation token included). */
  readonly tokenMeter: { readonly usedOutputTokens: number };
  controlledEvaluate(input: EvaluateItem[]): Promise<Array<{ next?: { logits?: Map<number, number> } } | undefined>>;
  clearHistory(): Promise<void>;
}

export interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}

export interface LlamaModel {
  /** `contextSize` is per sequence; the sequences of one context are evaluated together in llama.cpp's batches. */
  createContext(options: {
    contextSize: number;
    batchSize?: number;
    threads?: number;
    sequences?: number;
    flashAttention?: boolean;
  }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}

/** Text completion on one context sequence (greedy at temperature 0); a token prompt gets BOS put before it. */
export interface LlamaCompletion {
  generateCompletionWithMeta(
    input: number[],
    options: { maxTokens: number; temperature: number; repeatPenalty: false; onTextChunk?: (text: string) => void },
  ): Promise<{ response: string; metadata: { stopReason: string } }>;
  dispose(): void;
}

export interface Llama {
  /** gpuLayers: layers offloaded to the GPU of a GPU build ('max': all). */
  loadModel(options: { modelPath: string; useMmap: boolean; gpuLayers?: number | 'max' }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}

export interface NodeLlamaCpp {
  /** gpu 'cuda': the CUDA prebuilt (@node-llama-cpp/linux-x64-cuda); it throws when that cannot load. */
  getLlama(options: { gpu: false | 'cuda'; build: 'never'; logLevel?: string }): Promise<Llama>;
  LlamaLogLevel: Record<string, string>;
  LlamaCompletion: new (options: { contextSequence: LlamaSequence }) => LlamaCompletion;
}

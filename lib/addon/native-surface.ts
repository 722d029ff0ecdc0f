// The typed surface of the native addon: every function and class dynamoe.node exports, what each takes and returns.
// It imports only leaf types, so the loader and every caller can depend on it without an import cycle.
import type { DType } from '../dtype';
import type { RoutingPolicy } from '../policy/routing-policy';
import type { QuantizedMatrix } from '../formats/quant-types';
import type { RouterRule } from '../policy/router-rule';

/** Weight data as the addon reads it: f32 values, or 16-bit patterns of the layer's (or graph's) dtype. */
/** A weight matrix: f32 values, 16-bit patterns of the layer's dtype, or GGUF quantized blocks. */
export type NativeWeights = Float32Array | Uint16Array | QuantizedMatrix;

/** What the native route() resolves to. */
export interface NativeRoutingResult {
  kMax: number;
  ids: Int32Array;
  weights: Float32Array;
  counts: Int32Array;
  expertLoad: Int32Array;
}

/**
 * The two router losses of one batch, with what they are made of. T = tokens, E = experts,
 * P = softmax(logits) per token (double), S_t = the experts the policy selects for token t.
 */
export interface RouterLosses {
  /** L_d = mean_t H_t, H_t = -sum_i P_ti log P_ti (0 log 0 = 0). The paper weights it 1e-4. */
  dynamicLoss: number;
  /**
   * L_b = E * sum_i f_i Q_i; equals expertsPerToken when Q is uniform (so 1 for balanced top-1).
   * The paper weights it 1e-2.
   */
  loadBalanceLoss: number;
  /** mean_t |S_t|. */
  expertsPerToken: number;
  /** [E] f_i: the fraction of tokens whose selected set contains expert i. */
  fraction: Float64Array;
  /** [E] Q_i: mean over tokens of P_ti (full softmax, not only the selected experts). */
  meanProbability: Float64Array;
  /** [T] |S_t|: experts selected per token (equal to route()'s counts). */
  counts: Int32Array;
  /** [T * E] dL_d/dz_tj = -(1/T) P_tj (log P_tj + H_t); only with `gradients: true`. */
  dynamicLossGradient?: Float32Array;
  /** [T * E] dL_b/dz_tj = (E/T) P_tj (f_j - sum_i f_i P_ti), f held constant; only with `gradients: true`. */
  loadBalanceLossGradient?: Float32Array;
}

/** An always-on shared expert as the addon reads it (MoELayer options and `moe` graph nodes). */
export interface NativeSharedExpert {
  ffn: number;
  /** [ffn][hidden] */
  gate: NativeWeights;
  /** [ffn][hidden] */
  up: NativeWeights;
  /** [hidden][ffn] */
  down: NativeWeights;
  /** [hidden]: scales the shared output by sigmoid(gateWeight . x). */
  gateWeight?: Float32Array;
}

/** Zero-computation experts (LongCat-Flash): 'zero' adds nothing, 'identity' adds weight * x. */
export interface ZeroExperts {
  count: number;
  kind: 'zero' | 'identity';
}

/** The options a native MoE layer is packed from: sizes, dtype, and per-expert weight arrays. */
export interface NativeMoeLayerOptions {
  hidden: number;
  ffn: number;
  experts: number;
  dtype: DType;
  /** Where the layer's weights live (default 'cpu'). */
  device?: 'cpu' | 'cuda';
  /** [experts + zero experts][hidden], always f32. */
  router: Float32Array;
  /** The family's router rule; absent: the plain softmax router. */
  routerRule?: RouterRule;
  /** Routed slots that do no FFN compute, after the FFN experts' ids. */
  zeroExperts?: ZeroExperts;
  /** One [ffn][hidden] array per expert. */
  gate: NativeWeights[];
  /** One [ffn][hidden] array per expert. */
  up: NativeWeights[];
  /** One [hidden][ffn] array per expert. */
  down: NativeWeights[];
  shared?: NativeSharedExpert;
  /** [experts] added to the router logits before routing (CPU only). */
  routerBias?: Float32Array;
  /** One [ffn] gate bias per expert (CPU only). */
  gateBias?: Float32Array[];
  /** One [ffn] up bias per expert (CPU only). */
  upBias?: Float32Array[];
  /** One [hidden] down bias per expert (CPU only). */
  downBias?: Float32Array[];
  /** The experts' activation; default SwiGLU (CPU only for 'swiglu-oai'). */
  activation?: { kind: 'swiglu' } | { kind: 'swiglu-oai'; limit?: number; alpha?: number };
  /** Llama 4: each routed row's weight scales the expert's input instead of its output (no biases, no zero experts). */
  weightOnInput?: boolean;
}

export interface NativeForwardResult {
  output: Float32Array;
  routing: NativeRoutingResult;
  work: { gateUpRows: Int32Array; downRows: Int32Array };
}

/** Kernel time of each stage of a forward on the GPU, in microseconds (mean over `runs`). */
export interface StageTimes {
  routeUs: number;
  planUs: number;
  gemm1Us: number;
  gemm2Us: number;
  finalizeUs: number;
  totalUs: number;
  runs: number;
}

export interface NativeMoeLayer {
  forward(x: Float32Array, options: { tokens: number; policy: RoutingPolicy }): Promise<NativeForwardResult>;
  profile(x: Float32Array, options: { tokens: number; policy: RoutingPolicy; runs?: number }): Promise<StageTimes>;
  readonly device: 'cpu' | 'cuda';
  /** One step over many sequences (each segment a different session); one result per segment. */
  step(segments: NativeStepSegment[]): Promise<NativeStepResult[]>;
  readonly kvPool: NativeKvPool;
  dispose(): void;
  readonly weightBytes: number;
  readonly disposed: boolean;
}

/** Per-MoE-layer routing statistics of one forward step (sums over its tokens). */
export interface NativeMoeStepStats {
  /** [tokens] routed slots each token used. */
  counts: Int32Array;
  /** [tokens] FFN experts each token used (zero-computation experts left out). */
  ffnCounts: Int32Array;
  expertLoad: Int32Array;
  probabilitySum: Float64Array;
  entropySum: Float64Array;
}

/** One sequence's rows of a multi-sequence step. */
export interface NativeStepSegment {
  session: NativeKvSession;
  tokens: Int32Array;
  policies: RoutingPolicy[];
  /** Logits of the segment's last row only (generation). */
  lastRowLogits: boolean;
  stats: boolean;
  /** With stats: per MoE layer, running sums the step adds its tokens to (and returns as its stats' sums). */
  sums?: RouterSums[];
  /** Scoring: one next-token id or -1 per token; the result has logProbs instead of logits. */
  targets?: Int32Array;
  /**
   * Generation (with lastRowLogits, without targets): the result has `token`, the last row's next id chosen on the
   * model's device (greedy, or sampled with the caller's uniform draw), instead of its logits.
   */
  choice?: NativeTokenChoice;
  /**
   * With `choice`: also the chosen id's log-probability and the `logprobs` (0 to 20) most likely ids' (the result's
   * `logprob` and `topLogprobs`): the log-softmax of the row over [0, choice.limit), in float64. Such a step hands
   * the row's logits back from the device and chooses on the host (the same id).
   */
  logprobs?: number;
}

/**
 * How a row's next token is chosen, the same on every backend (native/core/token_choice.h states it exactly): among
 * ids [0, limit); temperature 0 (the default) is greedy (the first of equal maxima); else top-k, then top-p, then
 * the token where `uniform` (the caller's seeded draw in [0, 1)) falls in the kept tokens' cumulative weights.
 */
export interface NativeTokenChoice {
  limit: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  uniform?: number;
}

/** Running router sums of one MoE layer: each expert's probabilities, and the entropies, over the tokens so far. */
export interface RouterSums {
  probabilitySum: Float64Array;
  entropySum: Float64Array;
}

/** A segment's results: logits ([tokens or 1][vocab]) or, when scoring, log-probabilities ([tokens]). */
export interface NativeStepResult {
  logits?: Float32Array;
  /** With `choice`: the chosen id. */
  token?: number;
  /** With `logprobs`: the chosen id's log-probability, and the most likely ids' (best first, ties to the lower id). */
  logprob?: number;
  topLogprobs?: { ids: Int32Array; logprobs: Float64Array };
  logProbs?: Float64Array;
  stats?: NativeMoeStepStats[];
}

/** The KV pool of a model graph. */
export interface NativeKvPool {
  blockTokens: number;
  blocks: number;
  freeBlocks: number;
  blockBytes: number;
}

export interface NativeKvSession {
  readonly length: number;
  readonly capacity: number;
  reset(): void;
  dispose(): void;
}

/** Sizes a model graph's nodes are checked against. */
export interface NativeGraphLayout {
  /** Floats per token of each activation buffer; nodes name buffers by index into this list. */
  bufferWidths: number[];
  vocab: number;
  /** Floats per token of each KV cache slot's keys (one slot per attention layer). */
  kvWidths: number[];
  /** Floats per token of each slot's values (default: the kvWidths); 0 keeps keys only (an MLA layer's latent). */
  kvValueWidths?: number[];
  /** Experts of each MoE slot. */
  moeExperts: number[];
  dtype: DType;
  /** Positions of every attention layer the model's KV pool holds (rounded up to whole blocks). */
  kvPoolTokens: number;
  /** The backend that holds the weights and runs the steps (default 'cpu'). */
  device?: 'cpu' | 'cuda';
}

/** Looks up token rows of the [vocab][hidden] table into buffer `output`. */
export interface EmbeddingNode {
  op: 'embedding';
  hidden: number;
  output: number;
  /** [vocab][hidden] */
  weight: NativeWeights;
  /** Each looked-up row times this (Granite's embedding_multiplier); default 1. */
  scale?: number;
}

/**
 * The LM head: logits of buffer `input`, by its own [vocab][hidden] weight or the embedding table (`tied`), times
 * `scale` (Granite: 1 / logits_scaling; default 1).
 */
export type LogitsNode =
  | { op: 'logits'; input: number; hidden: number; tied: true; scale?: number }
  | { op: 'logits'; input: number; hidden: number; tied?: false; /** [vocab][hidden] */ weight: NativeWeights; scale?: number };

/** `output = input W^T (+ bias)`, between two different buffers. */
export interface LinearNode {
  op: 'linear';
  input: number;
  output: number;
  inFeatures: number;
  outFeatures: number;
  /** [outFeatures][inFeatures] */
  weight: NativeWeights;
  /** [outFeatures] */
  bias?: Float32Array;
}

/** RMSNorm over each group of `groupSize` floats of a `width`-float row (a whole row, or each head). */
export interface RmsNormNode {
  op: 'rms_norm';
  input: number;
  output: number;
  width: number;
  groupSize: number;
  /** [groupSize] */
  weight: Float32Array;
  /** Default 1e-6. */
  epsilon?: number;
}

/** Rotary position embedding of buffer `buffer` in place: halves of each head rotate together, or adjacent pairs. */
export interface RopeNode {
  op: 'rope';
  buffer: number;
  heads: number;
  headDim: number;
  /** Leading dimensions of each head that rotate (default headDim). */
  rotaryDim?: number;
  /** Default 10000. */
  theta?: number;
  style: 'halves' | 'pairs';
  /** A scaled RoPE's inverse frequency of each rotated pair ([headDim / 2], replacing theta's). */
  inverseFrequencies?: Float64Array;
  /** Factor on cos and sin (YaRN's attention factor); default 1. */
  scale?: number;
}

/** Causal attention over the sequence's KV cache slot `slot` (grouped-query when kvHeads < heads). */
export interface AttentionNode {
  op: 'attention';
  query: number;
  key: number;
  value: number;
  output: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  slot: number;
  /** Sliding window: position i sees i - window < j <= i; absent or 0 for every earlier position. */
  window?: number;
  /** Chunked attention (Llama 4): position i sees j <= i with floor(j / chunk) == floor(i / chunk); not with window. */
  chunk?: number;
  /** Attention temperature (Llama 4): position i's scores times 1 + temperatureScale * log(1 + floor((i + 1) / temperatureFloor)). */
  temperatureFloor?: number;
  temperatureScale?: number;
  /** [heads] learned sink logits that join each softmax denominator (gpt-oss). */
  sinks?: Float32Array;
  /** The softmax scale of q . k; default 1 / sqrt(headDim) (Granite's attention_multiplier replaces it). */
  scale?: number;
}

/**
 * Multi-head latent attention (DeepSeek-V2/V3) over cache slot `slot`, whose rows are [latent | keyRope]
 * (kvLoraRank + ropeDim floats): queryNope [heads][nopeDim] and queryRope [heads][ropeDim] (roped) attend the
 * latent (normed) and keyRope (roped) of every position so far; output [heads][valueDim].
 */
export interface MlaAttentionNode {
  op: 'mla_attention';
  queryNope: number;
  queryRope: number;
  latent: number;
  keyRope: number;
  output: number;
  heads: number;
  nopeDim: number;
  ropeDim: number;
  kvLoraRank: number;
  valueDim: number;
  slot: number;
  /** Of the scores; default 1 / sqrt(nopeDim + ropeDim). */
  scale?: number;
  /** [heads * kvLoraRank][nopeDim]: each head's W_uk transposed. */
  keyUp: NativeWeights;
  /** [heads * valueDim][kvLoraRank]: each head's W_uv. */
  valueUp: NativeWeights;
}

/** `output = a + scale * b`, elementwise over `width` floats per token. */
export interface AddNode {
  op: 'add';
  a: number;
  b: number;
  output: number;
  width: number;
  /** Of b (Granite's residual_multiplier); default 1. */
  scale?: number;
}

/** A dense SwiGLU MLP: `down(silu(gate x) * up x)`. */
export interface MlpNode {
  op: 'mlp';
  input: number;
  output: number;
  hidden: number;
  ffn: number;
  /** [ffn][hidden] */
  gate: NativeWeights;
  /** [ffn][hidden] */
  up: NativeWeights;
  /** [hidden][ffn] */
  down: NativeWeights;
}

/** An MoE block read like MoELayer options; `slot` indexes the layout's moeExperts and the step statistics. */
export interface MoeNode extends Omit<NativeMoeLayerOptions, 'device'> {
  op: 'moe';
  input: number;
  output: number;
  slot: number;
}

/** One op of a model graph, as ModelGraph.addNode reads it (native/graph_node_reader.cpp); buffers are indices. */
export type GraphNode =
  | EmbeddingNode
  | LogitsNode
  | LinearNode
  | RmsNormNode
  | RopeNode
  | AttentionNode
  | AddNode
  | MlpNode
  | MoeNode
  | MlaAttentionNode;

export interface NativeModelGraph {
  /** Packs one node's weights on a worker thread and appends the op. */
  addNode(node: GraphNode): Promise<void>;
  createSession(capacity: number): NativeKvSession;
  forward(
    session: NativeKvSession | null,
    tokens: Int32Array,
    options: { policies: RoutingPolicy[]; lastRowLogits: boolean; stats: boolean },
  ): Promise<{ logits: Float32Array; stats?: NativeMoeStepStats[] }>;
  /** Scoring: log P(targets[t]) at each position (NaN where targets[t] is -1) instead of logits. */
  forward(
    session: NativeKvSession | null,
    tokens: Int32Array,
    options: { policies: RoutingPolicy[]; lastRowLogits: false; stats: boolean; targets: Int32Array },
  ): Promise<{ logProbs: Float64Array; stats?: NativeMoeStepStats[] }>;
  /** Generation: the last row's chosen id instead of its logits. */
  forward(
    session: NativeKvSession | null,
    tokens: Int32Array,
    options: { policies: RoutingPolicy[]; lastRowLogits: boolean; stats: boolean; choice: NativeTokenChoice },
  ): Promise<{ token: number; logits?: undefined; stats?: NativeMoeStepStats[] }>;
  /** One step over many sequences (each segment a different session); one result per segment. */
  step(segments: NativeStepSegment[]): Promise<NativeStepResult[]>;
  readonly kvPool: NativeKvPool;
  dispose(): void;
  readonly weightBytes: number;
  readonly disposed: boolean;
}

/** The CPU kernel families; 'avx512bf16' is chosen only by setCpuIsa (see there). */
export type CpuIsa = 'scalar' | 'avx2' | 'avx512' | 'avx512bf16';

/**
 * How quantized weights multiply: 'q8' (the default) quantizes each activation row to 8-bit blocks and takes integer
 * dot products for Q8_0, Q4_0, MXFP4, Q4_K, Q5_K and Q6_K weights; 'f32' keeps f32 activations and exact f32 dot products
 * of the dequantized weights for every quantized type. See setQuantActivations.
 */
export type QuantActivations = 'q8' | 'f32';

export interface NativeCpuInfo {
  isa: CpuIsa;
  supportedIsas: CpuIsa[];
  features: { avx2: boolean; avx512: boolean; avx512bf16: boolean; avx512vnni: boolean; avxvnni: boolean };
  threads: number;
  quantActivations: QuantActivations;
}

/** Measured limits of this machine for the active kernel family. */
export interface Roofline {
  isa: string;
  threads: number;
  /** Peak fp32 FMA throughput over all pool threads. */
  fmaGflops: number;
  /** Streaming read bandwidth over all pool threads. */
  readGBps: number;
  /** Peak bf16 dot-product throughput (AVX512_BF16) over all pool threads; 0 where the CPU has none. */
  bf16DotGflops: number;
}

/** The GPU the CUDA backend runs on (device 0). */
export interface GpuInfo {
  name: string;
  /** e.g. '9.0' for Hopper. */
  computeCapability: string;
  multiprocessors: number;
  memoryBytes: number;
}

/** What the native backendInfo() returns (the public BackendInfo adds the CPU facts and the binary). */
export interface NativeBackendInfo {
  /** 'cuda' when this binary has CUDA kernels and a usable GPU and driver. */
  backend: 'cpu' | 'cuda';
  cudaBuilt: boolean;
  cudaError?: string;
  cudaErrorMessage?: string;
  cudaRuntimeVersion?: number;
  cudaDriverVersion?: number;
  gpu?: GpuInfo;
  cudaArchitectures: string[];
  /** Whether whole models can run on the CUDA backend; absent (as in builds that predate it) means false. */
  cudaWholeModels?: boolean;
  /** Device 0's free memory when the call was made (a usable GPU only). */
  cudaFreeMemoryBytes?: number;
  cudaTotalMemoryBytes?: number;
}

/** Everything dynamoe.node exports. */
export interface NativeAddon {
  route(
    scores: Float32Array,
    sizes: { tokens: number; experts: number },
    policy: RoutingPolicy,
    input: 'logits' | 'probabilities',
    device?: 'cpu' | 'cuda',
    routerRule?: RouterRule,
  ): Promise<NativeRoutingResult>;
  routerLosses(
    logits: Float32Array,
    options: { tokens: number; experts: number; gradients: boolean },
    policy: RoutingPolicy,
  ): Promise<RouterLosses>;
  MoeLayer: {
    new (options: NativeMoeLayerOptions): NativeMoeLayer;
    /** Packs on a worker thread. */
    pack(options: NativeMoeLayerOptions): Promise<NativeMoeLayer>;
  };
  ModelGraph: new (layout: NativeGraphLayout) => NativeModelGraph;
  setThreads(threads: number): void;
  getThreads(): number;
  cpuInfo(): NativeCpuInfo;
  setCpuIsa(isa: string): void;
  setQuantActivations(mode: string): void;
  measureRoofline(): Promise<Roofline>;
  backendInfo(): NativeBackendInfo;
  /** GGUF quantized rows of `type` to f32 (at most 2^22 values: router and norm weights, tests). */
  dequantize(type: string, data: Uint8Array, rows: number, cols: number): Float32Array;
  /** f32 (or `dtype` bit patterns) [rows][cols] to GGUF blocks of `type` (q8_0, q4_0, q4_k, q6_k), off the event loop. */
  quantize(type: string, data: Float32Array | Uint16Array, rows: number, cols: number, dtype?: DType): Promise<Uint8Array>;
  /**
   * input [m][k] times the quantized weights [n][k] transposed, as `device`'s models multiply their quantized
   * matrices (CPU: the GEMM driver; CUDA: bf16 activations, the GEMV up to 16 rows, tensor cores beyond), on the JS
   * thread: at most 2^26 multiply-adds (tests).
   */
  quantMatmul(type: string, weights: Uint8Array, n: number, k: number, input: Float32Array, m: number, device?: 'cpu' | 'cuda'): Float32Array;
  /** Each row's token ([rows][vocab] logits, one choice per row), by that backend's kernels (tests and tools). */
  chooseTokens(logits: Float32Array, vocab: number, choices: NativeTokenChoice[], device?: 'cpu' | 'cuda'): Int32Array;
}

// Loads the compiled addon and describes its surface in TypeScript (internal: not exported from the package).
import * as path from 'path';
import { noBinaryError } from './binary-diagnosis';
import {
  BinaryKind,
  BinarySource,
  chooseBinary,
  cpuCandidate,
  cudaCandidates,
  isRequestedDevice,
  packageRoot,
  RequestedDevice,
  SkippedBinary,
  tryLoad,
} from './binary-loader';
import { DynamoeError } from './errors';
import type { BackendInfo } from './backend';
import type { RouterLosses } from './router-losses';

/** What the native route() resolves to. */
export interface NativeRoutingResult {
  kMax: number;
  ids: Int32Array;
  weights: Float32Array;
  counts: Int32Array;
  expertLoad: Int32Array;
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
  forward(x: Float32Array, options: { tokens: number; policy: object }): Promise<NativeForwardResult>;
  profile(x: Float32Array, options: { tokens: number; policy: object; runs?: number }): Promise<StageTimes>;
  readonly device: 'cpu' | 'cuda';
  dispose(): void;
  readonly weightBytes: number;
  readonly disposed: boolean;
}

/** Per-MoE-layer routing statistics of one forward step (sums over its tokens). */
export interface NativeMoeStepStats {
  counts: Int32Array;
  expertLoad: Int32Array;
  probabilitySum: Float64Array;
  entropySum: Float64Array;
}

export interface NativeKvSession {
  readonly length: number;
  readonly capacity: number;
  reset(): void;
  dispose(): void;
}

/** Sizes a model graph's nodes are checked against. */
export interface NativeGraphLayout {
  bufferWidths: number[];
  vocab: number;
  kvWidths: number[];
  moeExperts: number[];
  dtype: string;
}

export interface NativeModelGraph {
  /** Packs one node's weights on a worker thread and appends the op. */
  addNode(node: object): Promise<void>;
  createSession(capacity: number): NativeKvSession;
  forward(
    session: NativeKvSession | null,
    tokens: Int32Array,
    options: { policies: object[]; lastRowLogits: boolean; stats: boolean },
  ): Promise<{ logits: Float32Array; stats?: NativeMoeStepStats[] }>;
  /** Scoring: log P(targets[t]) at each position (NaN where targets[t] is -1) instead of logits. */
  forward(
    session: NativeKvSession | null,
    tokens: Int32Array,
    options: { policies: object[]; lastRowLogits: false; stats: boolean; targets: Int32Array },
  ): Promise<{ logProbs: Float64Array; stats?: NativeMoeStepStats[] }>;
  dispose(): void;
  readonly weightBytes: number;
  readonly disposed: boolean;
}

/** The CPU kernel families; 'avx512bf16' is chosen only by setCpuIsa (see there). */
export type CpuIsa = 'scalar' | 'avx2' | 'avx512' | 'avx512bf16';

export interface NativeCpuInfo {
  isa: CpuIsa;
  supportedIsas: CpuIsa[];
  features: { avx2: boolean; avx512: boolean; avx512bf16: boolean };
  threads: number;
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

export interface NativeAddon {
  route(
    scores: Float32Array,
    sizes: { tokens: number; experts: number },
    policy: object,
    input: 'logits' | 'probabilities',
    device?: 'cpu' | 'cuda',
  ): Promise<NativeRoutingResult>;
  routerLosses(
    logits: Float32Array,
    options: { tokens: number; experts: number; gradients: boolean },
    policy: object,
  ): Promise<RouterLosses>;
  MoeLayer: {
    new (options: object): NativeMoeLayer;
    /** Packs on a worker thread. */
    pack(options: object): Promise<NativeMoeLayer>;
  };
  ModelGraph: new (layout: NativeGraphLayout) => NativeModelGraph;
  setThreads(threads: number): void;
  getThreads(): number;
  cpuInfo(): NativeCpuInfo;
  setCpuIsa(isa: string): void;
  measureRoofline(): Promise<Roofline>;
  backendInfo(): Omit<BackendInfo, 'cpu'>;
}

/** The binary a process uses, what asked for it, and the binaries passed over on the way. */
export interface LoadedBinary {
  addon: NativeAddon;
  path: string;
  kind: BinaryKind;
  source: BinarySource;
  requested: RequestedDevice;
  /** What made the request: `loadBackend()`, `DYNAMOE_DEVICE=...`, or the default. */
  requestedBy: string;
  skipped: SkippedBinary[];
}

export interface DeviceRequest {
  device: RequestedDevice;
  by: string;
}

/** The request made by the environment: `DYNAMOE_DEVICE`, else 'auto'. */
export function environmentRequest(): DeviceRequest {
  const value = process.env.DYNAMOE_DEVICE;
  if (value === undefined || value === '') return { device: 'auto', by: "the default, 'auto'" };
  if (isRequestedDevice(value)) return { device: value, by: `DYNAMOE_DEVICE=${value}` };
  throw new DynamoeError('ERR_DYNAMOE_VALUE', `DYNAMOE_DEVICE must be cpu, cuda or auto, got '${value}'`);
}

// DYNAMOE_ADDON names one .node file to load instead (the sanitizer build in CI, or a custom build).
function loadOverride(file: string, request: DeviceRequest): LoadedBinary {
  const outcome = tryLoad(path.resolve(file));
  if (!outcome.addon) {
    throw new DynamoeError(
      'ERR_DYNAMOE_BINDING',
      `could not load the addon named by DYNAMOE_ADDON (${file}): ${outcome.error}. ` +
        'Fix: point DYNAMOE_ADDON at a built dynamoe .node file, or unset it to use the installed binary.',
    );
  }
  const kind = outcome.addon.backendInfo().cudaBuilt ? 'cuda' : 'cpu';
  return { addon: outcome.addon, path: path.resolve(file), kind, source: 'DYNAMOE_ADDON', requested: request.device, requestedBy: request.by, skipped: [] };
}

function load(request: DeviceRequest): LoadedBinary {
  const override = process.env.DYNAMOE_ADDON;
  if (override) return loadOverride(override, request);
  const root = packageRoot();
  const choice = chooseBinary(request.device, cudaCandidates(root), cpuCandidate(root));
  if (!choice.chosen) throw noBinaryError(request.device, request.by, choice);
  const { addon, path: file, kind, source } = choice.chosen;
  return { addon, path: file, kind, source, requested: request.device, requestedBy: request.by, skipped: choice.skipped };
}

let loaded: LoadedBinary | undefined;

/** The binary in use, loaded on first use for `request` (default: the environment's). */
export function loadedBinary(request?: DeviceRequest): LoadedBinary {
  loaded ??= load(request ?? environmentRequest());
  return loaded;
}

/** Whether a binary has been loaded yet (a process keeps the first one it loads). */
export function isBinaryLoaded(): boolean {
  return loaded !== undefined;
}

/** The loaded addon (loaded on first use). */
export function native(): NativeAddon {
  return loadedBinary().addon;
}

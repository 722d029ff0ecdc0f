// MoELayer: one Mixture-of-Experts block with SwiGLU experts, run by the native CPU or CUDA kernels.
import { native } from '../addon/native';
import type {
  NativeMoeLayer,
  NativeMoeLayerOptions,
  NativeSharedExpert,
  StageTimes,
  ZeroExperts,
} from '../addon/native-surface';
import { resolveDevice } from '../backend/device-placement';
import { Device, parseDevice } from '../device';
import { DType, parseDType } from '../dtype';
import { callNative, DynamoeError, fromNativeError } from '../errors';
import { checkPolicyUnderRule, checkRouterRule, RouterRule } from '../policy/router-rule';
import { checkPolicy, RoutingPolicy } from '../policy/routing-policy';
import { describe, MAX_EXPERTS, requireFloat32Array, requireObject, requireSize } from '../validate';
import { RoutingResult } from './route';

/** Weight data: f32 values, or (for f16/bf16 layers) 16-bit patterns. */
export type WeightData = Float32Array | Uint16Array;

/** An always-on shared expert (Qwen2-MoE, DeepSeek): every token goes through it with weight 1 or a sigmoid gate. */
export interface SharedExpertWeights {
  /** Intermediate size of the shared expert. */
  ffn: number;
  /** [ffn][hidden] */
  gate: WeightData;
  /** [ffn][hidden] */
  up: WeightData;
  /** [hidden][ffn] */
  down: WeightData;
  /** [hidden]: when given, the shared output is scaled by sigmoid(gateWeight . x) (Qwen2-MoE). */
  gateWeight?: Float32Array;
}

/** Weights of an MoE layer in PyTorch Linear layout (out_features x in_features). */
export interface MoELayerWeights {
  hidden: number;
  /** Intermediate size of each routed expert. */
  ffn: number;
  experts: number;
  /** [experts + zero experts][hidden] router weights, always f32 (router math runs in fp32). */
  router: Float32Array;
  /** A model family's router rule (sigmoid scores, selection bias, groups, weight rule); absent: plain softmax. */
  routerRule?: RouterRule;
  /** Routed slots after the FFN experts' ids that cost no GEMM: 'zero' adds nothing, 'identity' adds weight * x. */
  zeroExperts?: ZeroExperts;
  /** [experts][ffn][hidden], contiguous or as one [ffn][hidden] array per expert. */
  gate: WeightData | WeightData[];
  /** [experts][ffn][hidden], contiguous or per expert. */
  up: WeightData | WeightData[];
  /** [experts][hidden][ffn], contiguous or per expert. */
  down: WeightData | WeightData[];
  /** Element type the expert weights are stored and multiplied in (accumulation is fp32). */
  dtype: DType;
  shared?: SharedExpertWeights;
}

/** Options of {@link MoELayer.fromWeights} and {@link MoELayer.load}. */
export interface MoELayerOptions {
  /**
   * Where the weights live and the kernels run (default 'cpu'). 'cuda' uploads the weights to the GPU once (they are
   * not kept on the host) and needs the CUDA build and a GPU; 'auto' is 'cuda' when the CUDA backend is usable
   * ({@link backendInfo}().backend), else 'cpu'.
   */
  device?: Device;
}

/** Options of {@link MoELayer.profile}. */
export interface ProfileOptions extends ForwardOptions {
  /** Forwards to time after one warm-up forward (default 10). */
  runs?: number;
}

/** Options of {@link MoELayer.forward}. */
export interface ForwardOptions {
  tokens: number;
  policy: RoutingPolicy;
}

/** What one forward did, counted by the kernels: expert time follows these rows. */
export interface ForwardWork {
  /** [experts] rows multiplied by each expert's gate/up GEMM. */
  gateUpRows: Int32Array;
  /** [experts] rows multiplied by each expert's down GEMM. */
  downRows: Int32Array;
}

/** Result of {@link MoELayer.forward}. */
export interface MoEForwardResult {
  /** [tokens * hidden] the MoE block output (routed experts + shared expert; no residual). */
  output: Float32Array;
  routing: RoutingResult;
  work: ForwardWork;
}

// Per-expert views of a weight tensor (subarrays: no copies).
function perExpert(value: unknown, experts: number, length: number, what: string): WeightData[] {
  if (Array.isArray(value)) {
    if (value.length !== experts) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${what} must list ${experts} experts, got ${value.length}`);
    }
    return value as WeightData[];
  }
  if (!(value instanceof Float32Array || value instanceof Uint16Array)) {
    throw new DynamoeError(
      'ERR_DYNAMOE_TYPE',
      `${what} must be a Float32Array, a Uint16Array or an array of them, got ${describe(value)}`,
    );
  }
  if (value.length !== experts * length) {
    throw new DynamoeError(
      'ERR_DYNAMOE_SHAPE',
      `${what} must have experts * ${length} = ${experts * length} elements, got ${value.length}`,
    );
  }
  return Array.from({ length: experts }, (_, e) => value.subarray(e * length, (e + 1) * length));
}

function checkZeroExperts(value: unknown): ZeroExperts | undefined {
  if (value === undefined) return undefined;
  const zero = requireObject(value, 'zeroExperts');
  requireSize(zero.count, 'zeroExperts.count', MAX_EXPERTS);
  if (zero.kind !== 'zero' && zero.kind !== 'identity') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `zeroExperts.kind must be 'zero' or 'identity', got ${describe(zero.kind)}`);
  }
  return { count: zero.count as number, kind: zero.kind };
}

// Checks the weights and options and builds the options the native layer reads.
function nativeOptions(weights: MoELayerWeights, layerOptions: MoELayerOptions | undefined): NativeMoeLayerOptions {
  const option = layerOptions === undefined ? undefined : requireObject(layerOptions, 'options').device;
  const device = resolveDevice(parseDevice(option ?? 'cpu', 'device'), 'layer');
  const w = requireObject(weights, 'weights');
  const hidden = requireSize(w.hidden, 'hidden', 1 << 20);
  const ffn = requireSize(w.ffn, 'ffn', 1 << 20);
  const experts = requireSize(w.experts, 'experts', MAX_EXPERTS);
  const dtype = parseDType(w.dtype, 'dtype');
  const zeroExperts = checkZeroExperts(w.zeroExperts);
  const slots = experts + (zeroExperts?.count ?? 0);
  const router = requireFloat32Array(w.router, slots * hidden, 'router');
  const routerRule = checkRouterRule(w.routerRule, slots);
  const options: NativeMoeLayerOptions = {
    hidden,
    ffn,
    experts,
    dtype,
    router,
    gate: perExpert(w.gate, experts, ffn * hidden, 'gate'),
    up: perExpert(w.up, experts, ffn * hidden, 'up'),
    down: perExpert(w.down, experts, hidden * ffn, 'down'),
    device,
    ...(routerRule ? { routerRule } : {}),
    ...(zeroExperts ? { zeroExperts } : {}),
  };
  if (w.shared !== undefined) {
    const shared = requireObject(w.shared, 'shared');
    requireSize(shared.ffn, 'shared.ffn', 1 << 20);
    options.shared = shared as unknown as NativeSharedExpert; // its arrays are checked natively
  }
  return options;
}

/**
 * A Mixture-of-Experts layer: router -> policy (top-k / top-p / threshold) -> SwiGLU experts
 * `down(silu(gate x) * up x)` weighted by the routing weights -> deterministic per-token sum.
 * Weights are packed once into native memory; call {@link MoELayer.dispose} to free them early.
 */
export class MoELayer {
  /** Model width. */
  readonly hidden: number;
  /** Intermediate size of each routed expert. */
  readonly ffn: number;
  /** Number of routed FFN experts. */
  readonly experts: number;
  /** Zero-computation experts after them (router ids experts..experts+zeroExperts-1); policies count both. */
  readonly zeroExperts: number;
  /** Expert weight element type. */
  readonly dtype: DType;
  /** Whether the layer has an always-on shared expert. */
  readonly hasSharedExpert: boolean;
  /** Where the weights live and the kernels run. */
  readonly device: 'cpu' | 'cuda';
  readonly #native: NativeMoeLayer;
  readonly #routerRule: RouterRule | undefined;

  private constructor(weights: NativeMoeLayerOptions, handle: NativeMoeLayer) {
    this.hidden = weights.hidden;
    this.ffn = weights.ffn;
    this.experts = weights.experts;
    this.zeroExperts = weights.zeroExperts?.count ?? 0;
    this.#routerRule = weights.routerRule;
    this.dtype = weights.dtype;
    this.hasSharedExpert = weights.shared !== undefined;
    this.device = handle.device;
    this.#native = handle;
  }

  /**
   * Packs the weights into the layout the kernels read (converting Float32Array to `dtype`), on the calling
   * thread. The arrays passed in are read, never modified or kept. Throws a DynamoeError on bad shapes, types or
   * dtypes, ERR_DYNAMOE_DEVICE when `device: 'cuda'` has no usable GPU (the message says why), and
   * ERR_DYNAMOE_OUT_OF_MEMORY when the GPU cannot hold the weights. In a server, prefer {@link MoELayer.load}, which
   * packs off the event loop.
   */
  static fromWeights(weights: MoELayerWeights, options?: MoELayerOptions): MoELayer {
    const nativeLayerOptions = nativeOptions(weights, options);
    return new MoELayer(nativeLayerOptions, callNative(() => new (native().MoeLayer)(nativeLayerOptions)));
  }

  /**
   * Like {@link MoELayer.fromWeights}, but packs on a worker thread and resolves when the layer is ready.
   * The worker reads the weight arrays in place: do not modify, transfer or detach them until the promise settles.
   */
  static async load(weights: MoELayerWeights, options?: MoELayerOptions): Promise<MoELayer> {
    const nativeLayerOptions = nativeOptions(weights, options);
    try {
      return new MoELayer(nativeLayerOptions, await native().MoeLayer.pack(nativeLayerOptions));
    } catch (error) {
      return fromNativeError(error);
    }
  }

  /** Bytes of native memory the packed weights take. */
  get weightBytes(): number {
    return callNative(() => this.#native.weightBytes);
  }

  /** Whether {@link MoELayer.dispose} was called. */
  get disposed(): boolean {
    return this.#native.disposed;
  }

  /**
   * Runs the layer on `tokens` rows of `x` off the event loop.
   * @param x [tokens * hidden] activations (the MoE block input); copied, never modified.
   */
  async forward(x: Float32Array, options: ForwardOptions): Promise<MoEForwardResult> {
    const { tokens, policy } = this.#checkForward(x, options);
    try {
      return await this.#native.forward(x, { tokens, policy });
    } catch (error) {
      return fromNativeError(error);
    }
  }

  /**
   * Times each stage of the forward on the GPU (CUDA events; host copies excluded): `runs` forwards after one
   * warm-up, mean microseconds per stage. CUDA layers only (a CPU layer rejects with ERR_DYNAMOE_UNSUPPORTED).
   * @param x [tokens * hidden] activations; copied, never modified.
   */
  async profile(x: Float32Array, options: ProfileOptions): Promise<StageTimes> {
    const { tokens, policy } = this.#checkForward(x, options);
    const runs = options.runs === undefined ? 10 : requireSize(options.runs, 'runs', 10000);
    try {
      return await this.#native.profile(x, { tokens, policy, runs });
    } catch (error) {
      return fromNativeError(error);
    }
  }

  #checkForward(x: Float32Array, options: ForwardOptions): { tokens: number; policy: RoutingPolicy } {
    if (this.#native.disposed) {
      throw new DynamoeError('ERR_DYNAMOE_DISPOSED', 'this MoELayer was disposed; create a new one with MoELayer.fromWeights');
    }
    const opts = requireObject(options, 'options');
    const tokens = requireSize(opts.tokens, 'tokens');
    requireFloat32Array(x, tokens * this.hidden, 'x');
    const slots = this.experts + this.zeroExperts;
    const policy = checkPolicy(opts.policy, slots);
    checkPolicyUnderRule(policy, this.#routerRule, slots);
    return { tokens, policy };
  }

  /** Frees the native weights now (a running forward keeps them until it ends). Safe to call twice. */
  dispose(): void {
    this.#native.dispose();
  }
}

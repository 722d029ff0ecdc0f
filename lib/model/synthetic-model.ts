// A small Mixtral-style MoE model made from seeded random weights at run time: what `npm start` (the demo) and the
// tests run when no checkpoint is at hand. Weights are generated tensor by tensor as the graph builder reads them.
import { resolveDevice } from '../backend/device-placement';
import { Device, parseDevice } from '../device';
import { DType } from '../dtype';
import { DynamoeError } from '../errors';
import { TensorData, TensorInfo, TensorStore } from '../formats/tensor-store';
import { PolicyOption } from '../policy/per-layer';
import { SeededRandom } from '../seeded-random';
import { byteLevelAlphabet } from '../tokenizer/byte-level-alphabet';
import { tokenizerFromGgufMetadata, Tokenizer } from '../tokenizer/tokenizer';
import { mixtral } from './architectures/mixtral';
import { ProgressCallback } from './build-graph';
import { modelFromCheckpoint } from './load-model';
import { SchedulerOptions } from './scheduler-limits';
import { WritableQuantType } from '../formats/quant-types';
import { Model } from './model';
import { ModelSpec } from './spec';

/** Options of {@link createSyntheticModel}. */
export interface SyntheticModelOptions extends SchedulerOptions {
  /** Weight seed: the same seed gives the same weights (and logits) on every machine (default 42). */
  seed?: number;
  /** Decoder layers, all MoE (default 4). */
  layers?: number;
  /** Model width (default 256). */
  hidden?: number;
  /** Attention heads (default 8); hidden must be a multiple of it. */
  heads?: number;
  /** Key/value heads (default 4); heads must be a multiple of it. */
  kvHeads?: number;
  /** Routed experts per layer (default 16). */
  experts?: number;
  /** Expert intermediate size (default 512). */
  ffn?: number;
  /** Identity zero-computation experts per layer, routed beside the FFN experts (default 0; LongCat-Flash style). */
  zeroExperts?: number;
  /**
   * Element type the weights are packed in (default f32 on the CPU, bf16 on CUDA), or a quantized type for the
   * experts (as loadModel).
   */
  dtype?: DType | WritableQuantType;
  /** Where the model runs, as loadModel's `device` (default 'auto'). */
  device?: Device;
  /** Default routing policy (default: top-k 2, renormalised, as Mixtral). */
  policy?: PolicyOption;
  /** Called as weights are packed: nodes done out of the total. */
  onProgress?: ProgressCallback;
}

/** Defaults of {@link createSyntheticModel}. */
export const SYNTHETIC_DEFAULTS = { seed: 42, layers: 4, hidden: 256, heads: 8, kvHeads: 4, experts: 16, ffn: 512 };

/** Token ids of the synthetic byte-level tokenizer: bytes are 0-255, then the three control tokens. */
export const SYNTHETIC_TOKENS = { bos: 256, eos: 257, pad: 258, vocab: 259 };

/** Context length of the synthetic model. */
const MAX_CONTEXT = 2048;

// Router logit std for unit-RMS inputs, lowest to highest layer: flatter routers below use more experts under
// top-p, as the seed paper observes in trained models.
const ROUTER_STD_BOTTOM = 1.4;
const ROUTER_STD_TOP = 3.5;

const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}";

/** The synthetic model's tokenizer: byte-level (one token per byte, no merges) plus BOS, EOS and PAD. */
export function syntheticTokenizer(): Tokenizer {
  const tokens = [...byteLevelAlphabet(), '<|bos|>', '<|eos|>', '<|pad|>'];
  const metadata = new Map<string, unknown>([
    ['tokenizer.ggml.model', 'gpt2'],
    ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.token_type', tokens.map((_, id) => (id < 256 ? 1 : 3))],
    ['tokenizer.ggml.merges', []],
    ['tokenizer.ggml.bos_token_id', SYNTHETIC_TOKENS.bos],
    ['tokenizer.ggml.eos_token_id', SYNTHETIC_TOKENS.eos],
    ['tokenizer.ggml.padding_token_id', SYNTHETIC_TOKENS.pad],
    ['tokenizer.ggml.add_bos_token', true],
    ['tokenizer.chat_template', CHAT_TEMPLATE],
  ]);
  return tokenizerFromGgufMetadata(metadata, 'synthetic tokenizer');
}

/** A tensor the store makes on demand. */
interface SyntheticTensor {
  shape: number[];
  make(random: SeededRandom): Float32Array;
}

// FNV-1a of the name mixed with the seed: each tensor's values depend on the seed and its name, not on read order.
function tensorSeed(seed: number, name: string): number {
  let hash = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/** A {@link TensorStore} whose f32 tensors are generated from a seed when read, so only the ones in use are held. */
class SyntheticTensorStore implements TensorStore {
  readonly format = 'memory' as const;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private closed = false;

  constructor(
    private readonly seed: number,
    private readonly makers: ReadonlyMap<string, SyntheticTensor>,
  ) {
    const infos = new Map<string, TensorInfo>();
    for (const [name, { shape }] of makers) {
      const byteLength = shape.reduce((a, b) => a * b, 1) * 4;
      infos.set(name, { name, dtype: 'f32', shape, file: 'synthetic', byteOffset: 0, byteLength });
    }
    this.tensors = infos;
  }

  async read(name: string): Promise<TensorData> {
    if (this.closed) throw new DynamoeError('ERR_DYNAMOE_DISPOSED', `synthetic store was closed; cannot read '${name}'`);
    const maker = this.makers.get(name);
    if (!maker) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `no tensor '${name}' in the synthetic model`);
    return { name, dtype: 'f32', shape: [...maker.shape], data: maker.make(new SeededRandom(tensorSeed(this.seed, name))) };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** The spec of the synthetic model (Mixtral-style: every layer MoE, top-2 renormalised). */
function syntheticSpec(o: typeof SYNTHETIC_DEFAULTS, zeroExperts: number): ModelSpec {
  return {
    architecture: 'mixtral',
    vocab: SYNTHETIC_TOKENS.vocab,
    hidden: o.hidden,
    heads: o.heads,
    kvHeads: o.kvHeads,
    headDim: o.hidden / o.heads,
    ropeTheta: 10000,
    ropeStyle: 'halves',
    rmsNormEpsilon: 1e-5,
    qkNorm: 'none',
    attentionBias: false,
    tiedEmbeddings: false,
    maxContext: MAX_CONTEXT,
    layers: Array.from({ length: o.layers }, () => ({
      kind: 'moe' as const,
      experts: o.experts,
      ffn: o.ffn,
      policy: { kind: 'top-k' as const, k: Math.min(2, o.experts), normalize: true },
      ...(zeroExperts > 0 ? { zeroExperts: { count: zeroExperts, kind: 'identity' as const } } : {}),
    })),
  };
}

/** Every tensor of the model, by its Mixtral Hugging Face name. */
function syntheticTensors(spec: ModelSpec, ffn: number, experts: number, zeroExperts: number): Map<string, SyntheticTensor> {
  const { hidden: H, vocab, heads, kvHeads, headDim } = spec;
  const naming = mixtral.hfNaming;
  const expertName = naming.experts;
  if (expertName.stacked) throw new DynamoeError('ERR_DYNAMOE_INTERNAL', 'mixtral names experts one by one');
  const out = new Map<string, SyntheticTensor>();
  const matrix = (name: string, rows: number, cols: number, std = 1 / Math.sqrt(cols)) =>
    out.set(name, { shape: [rows, cols], make: (r) => r.normals(rows * cols, std) });
  const norm = (name: string) =>
    out.set(name, { shape: [H], make: (r) => r.normals(H, 0.05).map((v) => 1 + v) });

  matrix(naming.embed, vocab, H, 1);
  norm(naming.finalNorm);
  out.set(naming.lmHead, {
    shape: [vocab, H],
    make: (r) => {
      const w = r.normals(vocab * H, 1 / Math.sqrt(H));
      w.fill(0, SYNTHETIC_TOKENS.bos * H); // control tokens get zero logits: greedy decoding never picks them
      return w;
    },
  });
  const layers = spec.layers.length;
  for (let l = 0; l < layers; l++) {
    const name = (t: Parameters<typeof naming.layer>[1]) => naming.layer(l, t);
    norm(name('attn_norm'));
    norm(name('mlp_norm'));
    matrix(name('q'), heads * headDim, H);
    matrix(name('k'), kvHeads * headDim, H);
    matrix(name('v'), kvHeads * headDim, H);
    matrix(name('o'), H, heads * headDim);
    const routerStd = ROUTER_STD_BOTTOM + ((ROUTER_STD_TOP - ROUTER_STD_BOTTOM) * l) / Math.max(1, layers - 1);
    matrix(name('router'), experts + zeroExperts, H, routerStd / Math.sqrt(H));
    for (let e = 0; e < experts; e++) {
      matrix(expertName.name(l, 'gate', e), ffn, H);
      matrix(expertName.name(l, 'up', e), ffn, H);
      matrix(expertName.name(l, 'down', e), H, ffn);
    }
  }
  return out;
}

/**
 * Builds a small Mixtral-style MoE model (by default 4 layers, hidden 256, 8 heads / 4 KV heads, 16 experts of
 * ffn 512, a 259-token byte-level vocabulary) from seeded random weights generated as they are packed. Its text is
 * gibberish, but its routing is not uniform: routers are flatter in lower layers, so top-p routing uses more experts
 * there. Deterministic for a seed. Dispose the model when done.
 */
export async function createSyntheticModel(options: SyntheticModelOptions = {}): Promise<Model> {
  const o = { ...SYNTHETIC_DEFAULTS };
  for (const key of Object.keys(SYNTHETIC_DEFAULTS) as Array<keyof typeof SYNTHETIC_DEFAULTS>) {
    const value = options[key];
    if (value !== undefined) o[key] = key === 'seed' ? Number(value) : positiveInteger(value, key);
  }
  if (!Number.isInteger(o.seed)) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `seed must be an integer, got ${String(options.seed)}`);
  }
  if (o.hidden % o.heads !== 0 || (o.hidden / o.heads) % 2 !== 0) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `hidden (${o.hidden}) must be heads (${o.heads}) times an even head size`);
  }
  if (o.heads % o.kvHeads !== 0) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `heads (${o.heads}) must be a multiple of kvHeads (${o.kvHeads})`);
  }
  const zeroExperts = options.zeroExperts ?? 0;
  if (!Number.isInteger(zeroExperts) || zeroExperts < 0) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `zeroExperts must be a non-negative integer, got ${String(zeroExperts)}`);
  }
  const device = resolveDevice(parseDevice(options.device ?? 'auto', 'device', { shown: String }), 'model');
  const spec = syntheticSpec(o, zeroExperts);
  const store = new SyntheticTensorStore(o.seed, syntheticTensors(spec, o.ffn, o.experts, zeroExperts));
  const source = `synthetic:seed=${o.seed}`;
  try {
    return await modelFromCheckpoint({ store, spec, naming: mixtral.hfNaming, tokenizer: syntheticTokenizer() }, source, {
      // The synthetic tensors are f32: the CPU keeps them so, CUDA uploads bf16 (modelFromCheckpoint's default).
      dtype: options.dtype,
      device,
      policy: options.policy,
      onProgress: options.onProgress,
      maxSequences: options.maxSequences,
      tokensPerStep: options.tokensPerStep,
      kvPoolTokens: options.kvPoolTokens,
      maxQueue: options.maxQueue,
    });
  } finally {
    await store.close();
  }
}

// Reads a model's tensors from a checkpoint, checks their shapes against the spec, and converts them to what the
// native graph takes (f32, or the model's 16-bit type as bit patterns; quantized matrices as their blocks).
import { native } from '../addon/native';
import { DType, fromBf16, fromF16 } from '../dtype';
import { callNative, DynamoeError, fromNativeError } from '../errors';
import {
  firstNonFiniteBlock,
  isQuantType,
  QUANT_BLOCKS,
  QuantizedMatrix,
  quantBytes,
  WritableQuantType,
} from '../formats/quant-types';
import { TensorData, TensorStore } from '../formats/tensor-store';
import { CheckpointNaming, ExpertMatrix } from './naming';

export type WeightArray = Float32Array | Uint16Array | QuantizedMatrix;

// f32 values of a tensor (quantized ones dequantized natively: only vectors and routers take this path).
function widen(tensor: TensorData): Float32Array {
  if (isQuantType(tensor.dtype)) {
    const cols = tensor.shape[tensor.shape.length - 1];
    const rows = tensor.shape.slice(0, -1).reduce((a, b) => a * b, 1);
    return callNative(() => native().dequantize(tensor.dtype as string, tensor.data as Uint8Array, rows, cols));
  }
  if (tensor.dtype === 'f32') return tensor.data as Float32Array;
  return tensor.dtype === 'bf16' ? fromBf16(tensor.data as Uint16Array) : fromF16(tensor.data as Uint16Array);
}

// A matrix as the native graph takes it: quantized blocks as they are, f32 and the model's dtype as they are,
// another 16-bit type widened to f32.
function asWeights(tensor: TensorData, dtype: DType, source: string): WeightArray {
  if (isQuantType(tensor.dtype)) {
    const data = tensor.data as Uint8Array;
    const bad = firstNonFiniteBlock(tensor.dtype, data);
    if (bad >= 0) {
      throw new DynamoeError(
        'ERR_DYNAMOE_FORMAT',
        `${source}: tensor '${tensor.name}' (${tensor.dtype}) has a non-finite scale in block ${bad}`,
      );
    }
    return { quant: tensor.dtype, data };
  }
  return tensor.dtype === 'f32' || tensor.dtype === dtype ? (tensor.data as Float32Array | Uint16Array) : widen(tensor);
}

export class WeightReader {
  constructor(
    private readonly store: TensorStore,
    readonly naming: CheckpointNaming,
    private readonly dtype: DType,
    private readonly source: string,
    /** When set, the experts' float matrices are quantized to it as they are read (whole blocks only). */
    private readonly quantizeExperts?: WritableQuantType,
  ) {}

  has(name: string): boolean {
    return this.store.tensors.has(name);
  }

  /** A [rows][cols] matrix in the model's dtype (16-bit data of another 16-bit type is widened to f32). */
  async matrix(name: string, rows: number, cols: number): Promise<WeightArray> {
    return asWeights(await this.read(name, [rows, cols]), this.dtype, this.source);
  }

  /** A vector (norm weight, bias, gate) of `length` values, always f32. */
  async vector(name: string, length: number): Promise<Float32Array> {
    return widen(await this.read(name, [length]));
  }

  /** A matrix always in f32 (the router: routing math runs in fp32). */
  async f32Matrix(name: string, rows: number, cols: number): Promise<Float32Array> {
    return widen(await this.read(name, [rows, cols]));
  }

  /**
   * A [rows][cols] matrix split by rows: in each run of `period` rows the first `cut` go to the first matrix, the
   * rest to the second (MLA's per-head [nope | rope] queries, its [latent | rope] kv_a). Quantized rows stay as stored.
   */
  async splitRows(name: string, rows: number, cols: number, period: number, cut: number): Promise<[WeightArray, WeightArray]> {
    if (rows % period !== 0 || cut <= 0 || cut >= period) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${this.source}: tensor '${name}' cannot be split ${cut}/${period - cut} by rows`);
    }
    const weights = await this.matrix(name, rows, cols);
    const quant = 'quant' in weights ? weights.quant : undefined;
    const data = 'quant' in weights ? weights.data : weights;
    const rowLength = quant ? quantBytes(quant, 1, cols) : cols;
    // By element size: typed arrays from the addon's realm fail `instanceof` in another one (jest, vm).
    const make = (n: number) =>
      data.BYTES_PER_ELEMENT === 1 ? new Uint8Array(n) : data.BYTES_PER_ELEMENT === 2 ? new Uint16Array(n) : new Float32Array(n);
    const periods = rows / period;
    const first = make(periods * cut * rowLength);
    const second = make(periods * (period - cut) * rowLength);
    for (let p = 0; p < periods; p++) {
      const at = p * period * rowLength;
      first.set(data.subarray(at, at + cut * rowLength), p * cut * rowLength);
      second.set(data.subarray(at + cut * rowLength, at + period * rowLength), p * (period - cut) * rowLength);
    }
    const wrap = (part: Uint8Array | Uint16Array | Float32Array): WeightArray =>
      (quant ? { quant, data: part as Uint8Array } : (part as Float32Array | Uint16Array));
    return [wrap(first), wrap(second)];
  }

  /**
   * MLA's per-head up-projections of the latent: keyUp [heads][kvLoraRank][nopeDim] (W_uk transposed) and valueUp
   * [heads][valueDim][kvLoraRank] (W_uv), from split `kUp`/`vUp` tensors (llama.cpp's attn_k_b/attn_v_b) when the
   * checkpoint has them, else from the whole `kvUp` ([heads * (nopeDim + valueDim)][kvLoraRank], kv_b_proj).
   */
  async mlaUpProjections(
    names: { kvUp: string; kUp: string; vUp: string },
    heads: number,
    nopeDim: number,
    valueDim: number,
    kvLoraRank: number,
  ): Promise<{ keyUp: WeightArray; valueUp: WeightArray }> {
    if (this.has(names.kUp) || this.has(names.vUp)) {
      const keyUp = asWeights(await this.read(names.kUp, [heads, kvLoraRank, nopeDim]), this.dtype, this.source);
      const valueUp = asWeights(await this.read(names.vUp, [heads, valueDim, kvLoraRank]), this.dtype, this.source);
      return { keyUp, valueUp };
    }
    // W_uk is transposed per head, so the whole matrix is read as f32 (dequantized when the file has it quantized).
    const kv = widen(await this.read(names.kvUp, [heads * (nopeDim + valueDim), kvLoraRank]));
    const keyUp = new Float32Array(heads * kvLoraRank * nopeDim);
    const valueUp = new Float32Array(heads * valueDim * kvLoraRank);
    for (let h = 0; h < heads; h++) {
      const head = h * (nopeDim + valueDim) * kvLoraRank;
      for (let i = 0; i < nopeDim; i++) {
        for (let r = 0; r < kvLoraRank; r++) keyUp[(h * kvLoraRank + r) * nopeDim + i] = kv[head + i * kvLoraRank + r];
      }
      valueUp.set(kv.subarray(head + nopeDim * kvLoraRank, head + (nopeDim + valueDim) * kvLoraRank), h * valueDim * kvLoraRank);
    }
    return { keyUp, valueUp };
  }

  /** Every expert's [rows][cols] matrix, from per-expert tensors or one stacked tensor. */
  async experts(layer: number, matrix: ExpertMatrix, experts: number, rows: number, cols: number): Promise<WeightArray[]> {
    const out = await this.expertsAsStored(layer, matrix, experts, rows, cols);
    const target = this.quantizeExperts;
    if (!target || cols % QUANT_BLOCKS[target].elements !== 0) return out;
    const quantized: WeightArray[] = [];
    for (const weights of out) {
      if ('quant' in weights) {
        quantized.push(weights); // already quantized in the file
        continue;
      }
      // By element size: typed arrays from the addon's realm fail `instanceof` in another one (jest, vm).
      const dtype = weights.BYTES_PER_ELEMENT === 4 ? 'f32' : this.dtype;
      try {
        quantized.push({ quant: target, data: await native().quantize(target, weights, rows, cols, dtype) });
      } catch (error) {
        fromNativeError(error);
      }
    }
    return quantized;
  }

  /** Every expert's bias of `length` values (f32), from the layer's stacked [experts][length] bias tensor. */
  async expertBiases(layer: number, matrix: ExpertMatrix, experts: number, length: number): Promise<Float32Array[]> {
    const name = this.naming.expertBias?.(layer, matrix);
    if (name === undefined) {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${this.source}: this checkpoint format names no expert biases`);
    }
    const values = widen(await this.read(name, [experts, length]));
    return Array.from({ length: experts }, (_, e) => values.subarray(e * length, (e + 1) * length));
  }

  private async expertsAsStored(
    layer: number,
    matrix: ExpertMatrix,
    experts: number,
    rows: number,
    cols: number,
  ): Promise<WeightArray[]> {
    const naming = this.naming.experts;
    if (!naming.stacked) {
      const out: WeightArray[] = [];
      for (let e = 0; e < experts; e++) out.push(await this.matrix(naming.name(layer, matrix, e), rows, cols));
      return out;
    }
    const stacked = await this.read(naming.name(layer, matrix), [experts, rows, cols]);
    if (isQuantType(stacked.dtype)) {
      const quant = stacked.dtype;
      const bytes = quantBytes(quant, rows, cols);
      const blocks = (asWeights(stacked, this.dtype, this.source) as QuantizedMatrix).data;
      return Array.from({ length: experts }, (_, e) => ({ quant, data: blocks.subarray(e * bytes, (e + 1) * bytes) }));
    }
    const data = asWeights(stacked, this.dtype, this.source) as Float32Array | Uint16Array;
    const size = rows * cols;
    return Array.from({ length: experts }, (_, e) => data.subarray(e * size, (e + 1) * size));
  }

  // Shapes must match exactly, except that vectors may carry leading 1s ([1, H] gates).
  private async read(name: string, shape: number[]): Promise<TensorData> {
    const info = this.store.tensors.get(name);
    if (!info) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${this.source}: tensor '${name}' is missing`);
    }
    const found = info.shape.length > shape.length && info.shape.slice(0, -shape.length).every((d) => d === 1)
      ? info.shape.slice(-shape.length)
      : info.shape;
    if (found.length !== shape.length || found.some((d, i) => d !== shape[i])) {
      throw new DynamoeError(
        'ERR_DYNAMOE_FORMAT',
        `${this.source}: tensor '${name}' has shape [${info.shape.join(', ')}], the model config says [${shape.join(', ')}]`,
      );
    }
    return this.store.read(name);
  }
}

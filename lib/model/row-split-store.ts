// A checkpoint whose fused tensors are presented as their parts: consecutive row ranges of a matrix (the rows of
// each trailing [rows][cols] slice when the tensor is stacked) or of a vector. Families that fuse q/k/v
// (`query_key_value`, GGUF `attn_qkv`) or gate/up (Granite's `input_linear`) are read through the names the
// other families use, so the loader has one path. Quantized rows split whole: a row is a whole number of blocks.
import { DynamoeError } from '../errors';
import { isQuantType, quantBytes } from '../formats/quant-types';
import { TensorData, TensorInfo, TensorStore } from '../formats/tensor-store';
import { FusedReadCache } from './fused-read-cache';

/** One fused tensor and the names and row counts of its parts, in the order they are stored. */
export interface RowSplit {
  fused: string;
  parts: ReadonlyArray<{ name: string; rows: number }>;
}

interface PartSource {
  fused: string;
  firstRow: number;
  rows: number;
}

// Bytes of `rows` rows of a tensor's trailing dimension.
function rowBytes(info: Pick<TensorInfo, 'dtype' | 'shape'>, rows: number): number {
  const cols = info.shape.length > 1 ? info.shape[info.shape.length - 1] : 1;
  if (isQuantType(info.dtype)) return quantBytes(info.dtype, rows, cols);
  return rows * cols * (info.dtype === 'f32' ? 4 : 2);
}

export class RowSplitStore implements TensorStore {
  readonly format: TensorStore['format'];
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private readonly sources = new Map<string, PartSource>();
  private readonly fusedReads: FusedReadCache;

  /** Splits that do not fit their tensor (absent, or rows that do not add up) leave it under its fused name. */
  constructor(private readonly base: TensorStore, splits: readonly RowSplit[]) {
    this.format = base.format;
    this.fusedReads = new FusedReadCache((name) => base.read(name));
    const tensors = new Map(base.tensors);
    for (const { fused, parts } of splits) {
      const info = tensors.get(fused);
      if (!info || info.shape.length === 0) continue;
      const rowAxis = info.shape.length === 1 ? 0 : info.shape.length - 2;
      const total = parts.reduce((sum, part) => sum + part.rows, 0);
      if (total !== info.shape[rowAxis] || parts.some((part) => !(part.rows > 0))) continue;
      const slices = info.shape.slice(0, rowAxis).reduce((n, d) => n * d, 1);
      tensors.delete(fused);
      let firstRow = 0;
      for (const part of parts) {
        const shape = [...info.shape];
        shape[rowAxis] = part.rows;
        tensors.set(part.name, { ...info, name: part.name, shape, byteLength: slices * rowBytes(info, part.rows) });
        this.sources.set(part.name, { fused, firstRow, rows: part.rows });
        this.fusedReads.addPart(fused);
        firstRow += part.rows;
      }
    }
    this.tensors = tensors;
    const bytes = base.readBytes?.bind(base);
    if (bytes) {
      this.readBytes = (name) => {
        if (this.sources.has(name)) throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `'${name}' is part of a fused tensor`);
        return bytes(name);
      };
    }
  }

  readBytes?(name: string): Promise<Uint8Array>;

  async read(name: string): Promise<TensorData> {
    const source = this.sources.get(name);
    if (!source) return this.base.read(name);
    const fused = await this.fusedReads.take(source.fused);
    return { name, dtype: fused.dtype, shape: [...(this.tensors.get(name) as TensorInfo).shape], data: slicePart(fused, source) };
  }

  close(): Promise<void> {
    this.fusedReads.clear();
    return this.base.close();
  }
}

// The part's rows of every slice of the fused tensor, copied into new memory.
function slicePart(fused: TensorData, source: PartSource): TensorData['data'] {
  const rowAxis = fused.shape.length === 1 ? 0 : fused.shape.length - 2;
  const rows = fused.shape[rowAxis];
  const slices = fused.shape.slice(0, rowAxis).reduce((n, d) => n * d, 1);
  // Element or byte units per row, as the data array counts them.
  const unit = isQuantType(fused.dtype)
    ? rowBytes(fused, 1)
    : fused.shape.length > 1 ? fused.shape[fused.shape.length - 1] : 1;
  if (fused.data.length !== slices * rows * unit) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `tensor '${source.fused}' holds ${fused.data.length} values, not its shape's`);
  }
  const part = source.rows * unit;
  const out = fused.data instanceof Float32Array
    ? new Float32Array(slices * part)
    : fused.data instanceof Uint16Array ? new Uint16Array(slices * part) : new Uint8Array(slices * part);
  for (let s = 0; s < slices; s++) {
    const from = (s * rows + source.firstRow) * unit;
    out.set(fused.data.subarray(from, from + part), s * part);
  }
  return out;
}

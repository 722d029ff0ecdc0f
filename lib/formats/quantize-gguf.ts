// `dynamoe quantize`: a GGUF of f32/f16/bf16 weights rewritten with its matrices quantized, metadata unchanged, so
// llama.cpp and dynamoe both load it. Norms, biases and routers stay as they are (routing math runs in fp32).
import { native } from '../addon/native';
import { fromBf16, fromF16 } from '../dtype';
import { DynamoeError, fromNativeError } from '../errors';
import { GgufTypedValue, GgufValue, openGguf, writeGguf } from './gguf';
import { isQuantType, QUANT_BLOCKS, WritableQuantType } from './quant-types';
import { TensorData, TensorInput } from './tensor-store';

/** What `dynamoe quantize --type` takes: one type for every matrix, or llama.cpp's Q4_K_M mix. */
export type QuantizeTarget = WritableQuantType | 'q4_k_m';
export const QUANTIZE_TARGETS: readonly QuantizeTarget[] = ['q8_0', 'q4_0', 'q4_k', 'q6_k', 'q4_k_m'];

/** What {@link quantizeGguf} did. */
export interface QuantizeReport {
  tensors: number;
  quantized: Partial<Record<WritableQuantType, number>>;
  kept: number;
  bytesIn: number;
  bytesOut: number;
}

// The type a matrix gets: Q4_K_M keeps the output head, value projections and down projections at 6 bits, as
// llama.cpp's mix does for most of them; a row that is not whole k-quant blocks falls back to q8_0.
function typeFor(name: string, cols: number, target: QuantizeTarget): WritableQuantType | undefined {
  let type: WritableQuantType =
    target !== 'q4_k_m' ? target : /(^output\.weight$|attn_v|ffn_down)/.test(name) ? 'q6_k' : 'q4_k';
  if (cols % QUANT_BLOCKS[type].elements !== 0) type = 'q8_0';
  return cols % QUANT_BLOCKS[type].elements === 0 ? type : undefined;
}

function floats(tensor: TensorData): Float32Array {
  if (tensor.dtype === 'f32') return tensor.data as Float32Array;
  return tensor.dtype === 'bf16' ? fromBf16(tensor.data as Uint16Array) : fromF16(tensor.data as Uint16Array);
}

// A metadata value as the writer takes it back: its type from the file (arrays must be flat).
function typedValue(key: string, value: GgufValue, type: string, itemType: string | undefined): GgufTypedValue {
  if (type !== 'array') return { type, value } as GgufTypedValue;
  if (itemType === undefined || itemType === 'array') {
    throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `metadata '${key}' is an array of arrays, which quantize does not rewrite`);
  }
  return { type: 'array', itemType, value: value as (number | bigint | boolean | string)[] } as GgufTypedValue;
}

/**
 * Writes `output`: `input`'s metadata and tensors, each tensor as `transform` gives it back (read one at a time;
 * what `transform` returns is held until the file is written).
 */
export async function rewriteGguf(
  input: string,
  output: string,
  transform: (tensor: TensorData) => Promise<TensorInput>,
): Promise<void> {
  const file = await openGguf(input);
  try {
    const metadata: [string, GgufTypedValue][] = [];
    for (const [key, value] of file.metadata) {
      if (key === 'general.alignment') continue; // the writer sets it from `alignment`
      metadata.push([key, typedValue(key, value, file.metadataTypes.get(key) as string, file.metadataItemTypes.get(key))]);
    }
    const tensors: TensorInput[] = [];
    for (const name of file.tensors.keys()) tensors.push(await transform(await file.read(name)));
    await writeGguf(output, { metadata, tensors, alignment: file.alignment });
  } finally {
    await file.close();
  }
}

/** Writes `output`: `input` with every 2-D or larger weight matrix quantized (not the routers). */
export async function quantizeGguf(input: string, output: string, target: QuantizeTarget): Promise<QuantizeReport> {
  const report: QuantizeReport = { tensors: 0, quantized: {}, kept: 0, bytesIn: 0, bytesOut: 0 };
  await rewriteGguf(input, output, async (tensor) => {
    const { name } = tensor;
    report.tensors++;
    report.bytesIn += tensor.data.byteLength;
    const cols = tensor.shape[tensor.shape.length - 1];
    const rows = tensor.shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const type = tensor.shape.length > 1 && !isQuantType(tensor.dtype) && !name.includes('ffn_gate_inp')
      ? typeFor(name, cols, target)
      : undefined;
    if (type === undefined) {
      report.kept++;
      report.bytesOut += tensor.data.byteLength;
      return { name, dtype: tensor.dtype, shape: tensor.shape, data: tensor.data };
    }
    let data: Uint8Array;
    try {
      data = await native().quantize(type, floats(tensor), rows, cols);
    } catch (error) {
      fromNativeError(error);
    }
    report.quantized[type] = (report.quantized[type] ?? 0) + 1;
    report.bytesOut += data.byteLength;
    return { name, dtype: type, shape: tensor.shape, data };
  });
  return report;
}

// gpt-oss's Hugging Face experts as the stacked tensors the weight reader takes: each layer's fused
// `mlp.experts.gate_up_proj` [E][H][2F] (x @ W layout, gate and up interleaved in the last dimension) becomes
// `mlp.experts.gate_up_proj[gate]` and `[up]` [E][F][H]; `down_proj` [E][F][H] is presented transposed, [E][H][F];
// the biases likewise ([E][F] gate and up halves, [E][H] down as stored). MXFP4 experts (`*_blocks` + `*_scales`)
// become GGUF MXFP4 blocks under the same names, still 4.25 bits a weight.
import { DynamoeError } from '../../errors';
import { TensorData, TensorInfo, TensorStore } from '../../formats/tensor-store';

type Values = Float32Array | Uint16Array;
type Part = 'gate' | 'up' | 'down';

/** Where one stacked tensor the reader asks for comes from. */
interface Source {
  fused: string;
  part: Part;
  bias: boolean;
}

/** Where one MXFP4 expert matrix comes from: the checkpoint's blocks and scales, and which rows. */
interface Mxfp4Source {
  blocks: string;
  scales: string;
  part: Part;
  experts: number;
  rows: number;
  groups: number;
}

const EXPERTS = (layer: number) => `model.layers.${layer}.mlp.experts`;

/**
 * The stacked name of a layer's expert matrix (`bias` false) or bias: the checkpoint's own name, with `[gate]` or
 * `[up]` for a half of the fused gate_up tensors, so errors name the tensor as the checkpoint spells it.
 */
export function gptOssExpertName(layer: number, part: Part, bias: boolean): string {
  const fused = part === 'down' ? 'down_proj' : 'gate_up_proj';
  return `${EXPERTS(layer)}.${fused}${bias ? '_bias' : ''}${part === 'down' ? '' : `[${part}]`}`;
}

// An array of the same kind as `data` (by element size: arrays made in another realm fail `instanceof`).
function like(data: Values, length: number): Values {
  return data.BYTES_PER_ELEMENT === 4 ? new Float32Array(length) : new Uint16Array(length);
}

// out[e][r][c] = in[e][c * step + offset][r]: a transpose of each expert's [cols][rows * step] slice, every step-th
// column from `offset` (step 2 picks gate or up out of the interleaved pairs).
function transposePick(data: Values, experts: number, inRows: number, inCols: number, step: number, offset: number): Values {
  const outRows = inCols / step;
  const out = like(data, experts * outRows * inRows);
  for (let e = 0; e < experts; e++) {
    const from = e * inRows * inCols;
    const to = e * outRows * inRows;
    for (let r = 0; r < outRows; r++) {
      const column = r * step + offset;
      for (let c = 0; c < inRows; c++) out[to + r * inRows + c] = data[from + c * inCols + column];
    }
  }
  return out;
}

// out[e][f] = in[e][f * 2 + offset]: gate (offset 0) or up (1) of interleaved biases.
function pickBias(data: Values, experts: number, width: number, offset: number): Values {
  const half = width / 2;
  const out = like(data, experts * half);
  for (let e = 0; e < experts; e++) {
    for (let f = 0; f < half; f++) out[e * half + f] = data[e * width + f * 2 + offset];
  }
  return out;
}

class GptOssExpertStore implements TensorStore {
  readonly format: TensorStore['format'];
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private readonly sources = new Map<string, Source>();
  private readonly mxfp4 = new Map<string, Mxfp4Source>();
  // The fused gate_up tensor last read: its gate and up halves are asked for one after the other.
  private cached?: { name: string; data: Promise<TensorData> };

  constructor(private readonly base: TensorStore, layers: number) {
    this.format = base.format;
    const tensors = new Map(base.tensors);
    for (let layer = 0; layer < layers; layer++) {
      const at = EXPERTS(layer);
      if (base.tensors.has(`${at}.gate_up_proj_blocks`) || base.tensors.has(`${at}.down_proj_blocks`)) {
        this.addMxfp4(tensors, layer, 'gate_up_proj', ['gate', 'up']);
        this.addMxfp4(tensors, layer, 'down_proj', ['down']);
      }
      this.add(tensors, layer, 'gate_up_proj', ['gate', 'up'], false, (s) => {
        if (s.length !== 3 || s[2] % 2 !== 0) return undefined;
        return [s[0], s[2] / 2, s[1]];
      });
      this.add(tensors, layer, 'down_proj', ['down'], false, (s) => (s.length === 3 ? [s[0], s[2], s[1]] : undefined));
      this.add(tensors, layer, 'gate_up_proj_bias', ['gate', 'up'], true, (s) =>
        s.length === 2 && s[1] % 2 === 0 ? [s[0], s[1] / 2] : undefined,
      );
      this.add(tensors, layer, 'down_proj_bias', ['down'], true, (s) => (s.length === 2 ? s : undefined));
    }
    this.tensors = tensors;
  }

  // Replaces the fused tensor `name` of `layer` in `tensors` by the parts it holds, of the shape `shapeOf` gives
  // (undefined: a shape it cannot hold, which the reader's shape check then reports under the fused name).
  private add(
    tensors: Map<string, TensorInfo>,
    layer: number,
    name: string,
    parts: Part[],
    bias: boolean,
    shapeOf: (shape: number[]) => number[] | undefined,
  ): void {
    const fused = `${EXPERTS(layer)}.${name}`;
    const info = tensors.get(fused);
    if (!info) return;
    const shape = shapeOf(info.shape);
    if (!shape) return;
    tensors.delete(fused);
    for (const part of parts) {
      const partName = gptOssExpertName(layer, part, bias);
      tensors.set(partName, { ...info, name: partName, shape, byteLength: info.byteLength / parts.length });
      this.sources.set(partName, { fused, part, bias });
    }
  }

  // The released checkpoints' MXFP4 experts: `<name>_blocks` U8 [E][rows][cols/32][16] (two E2M1 codes a byte, the
  // even element in the low nibble) and `<name>_scales` U8 [E][rows][cols/32] (E8M0). Presented as GGUF MXFP4
  // blocks of the Linear-layout rows (gate_up's rows interleave gate and up), which the kernels run as they are.
  private addMxfp4(tensors: Map<string, TensorInfo>, layer: number, name: string, parts: Part[]): void {
    const at = `${EXPERTS(layer)}.${name}`;
    const blocks = tensors.get(`${at}_blocks`);
    const scales = tensors.get(`${at}_scales`);
    const bad = (why: string): never => {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `tensor '${at}_blocks' / '${at}_scales': ${why}`);
    };
    if (!blocks || !scales) bad('MXFP4 experts need both tensors');
    const [b, s] = [blocks as TensorInfo, scales as TensorInfo];
    if (b.dtype !== 'U8' || s.dtype !== 'U8') bad(`expected U8 tensors, got ${b.dtype} and ${s.dtype}`);
    const [experts, rows, groups, bytes] = b.shape;
    if (b.shape.length !== 4 || bytes !== 16 || s.shape.join() !== [experts, rows, groups].join() || rows % parts.length) {
      bad(`shapes [${b.shape.join(', ')}] and [${s.shape.join(', ')}] are not [E][rows][cols/32][16] and [E][rows][cols/32]`);
    }
    tensors.delete(`${at}_blocks`);
    tensors.delete(`${at}_scales`);
    const partRows = rows / parts.length;
    for (const part of parts) {
      const partName = gptOssExpertName(layer, part, false);
      const shape = [experts, partRows, groups * 32];
      tensors.set(partName, { ...b, name: partName, dtype: 'mxfp4', shape, byteLength: experts * partRows * groups * 17 });
      this.mxfp4.set(partName, { blocks: b.name, scales: s.name, part, experts, rows, groups });
    }
  }

  private async readMxfp4(name: string, source: Mxfp4Source): Promise<TensorData> {
    if (!this.base.readBytes) throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `cannot read the bytes of '${source.blocks}'`);
    const [codes, scales] = await Promise.all([this.base.readBytes(source.blocks), this.base.readBytes(source.scales)]);
    const { experts, rows, groups, part } = source;
    // gate_up's even rows are gate, odd rows up (HF's gate_up_proj[..., ::2] / [..., 1::2]); down takes them all.
    const step = part === 'down' ? 1 : 2;
    const offset = part === 'up' ? 1 : 0;
    const partRows = rows / step;
    const out = new Uint8Array(experts * partRows * groups * 17);
    let to = 0;
    for (let e = 0; e < experts; e++) {
      for (let r = 0; r < partRows; r++) {
        const row = e * rows + r * step + offset;
        for (let g = 0; g < groups; g++) {
          const block = (row * groups + g) * 16;
          out[to] = scales[row * groups + g];
          // GGUF's MXFP4 byte j holds elements j (low nibble) and j + 16 (high); HF's byte k holds 2k and 2k + 1.
          for (let j = 0; j < 16; j++) {
            const low = (codes[block + (j >> 1)] >> ((j & 1) * 4)) & 15;
            const high = (codes[block + ((j + 16) >> 1)] >> (((j + 16) & 1) * 4)) & 15;
            out[to + 1 + j] = low | (high << 4);
          }
          to += 17;
        }
      }
    }
    return { name, dtype: 'mxfp4', shape: [...(this.tensors.get(name) as TensorInfo).shape], data: out };
  }

  async read(name: string): Promise<TensorData> {
    const mxfp4 = this.mxfp4.get(name);
    if (mxfp4) return this.readMxfp4(name, mxfp4);
    const source = this.sources.get(name);
    if (!source) return this.base.read(name);
    const info = this.tensors.get(name) as TensorInfo;
    let fused: TensorData;
    if (source.part === 'down') {
      fused = await this.base.read(source.fused);
    } else {
      if (this.cached?.name !== source.fused) this.cached = { name: source.fused, data: this.base.read(source.fused) };
      fused = await this.cached.data;
      if (source.part === 'up') this.cached = undefined; // gate is read first; up is the last use
    }
    const values = fused.data as Values;
    const [experts] = fused.shape;
    let data: Values;
    if (source.bias) {
      data = source.part === 'down' ? values : pickBias(values, experts, fused.shape[1], source.part === 'gate' ? 0 : 1);
    } else if (source.part === 'down') {
      data = transposePick(values, experts, fused.shape[1], fused.shape[2], 1, 0);
    } else {
      data = transposePick(values, experts, fused.shape[1], fused.shape[2], 2, source.part === 'gate' ? 0 : 1);
    }
    return { name, dtype: fused.dtype, shape: [...info.shape], data };
  }

  close(): Promise<void> {
    this.cached = undefined;
    return this.base.close();
  }
}

/** gpt-oss's safetensors with the experts split and transposed into stacked Linear-layout tensors. */
export function gptOssHfStore(store: TensorStore, layers: number): TensorStore {
  return new GptOssExpertStore(store, layers);
}

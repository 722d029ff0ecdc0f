// Experts stored as transformers' fused 3-D parameters (Qwen3-VL-MoE, Llama 4): `gate_up_proj` [E][H][2F], applied
// as x @ W (gate the first F columns, up the last F), and `down_proj` [E][F][H]. Presented as the stacked
// [E][F][H] gate / up and [E][H][F] down matrices every other family's experts are read as (GGUF's layout).
import { DynamoeError } from '../errors';
import { TensorData, TensorInfo, TensorStore } from '../formats/tensor-store';
import { FusedReadCache } from './fused-read-cache';
import { ExpertMatrix } from './naming';
import { ModelSpec } from './spec';

/** One layer's fused expert parameters and the names their stacked matrices go by. */
export interface FusedExperts {
  gateUp: string;
  down: string;
  names: { gate: string; up: string; down: string };
}

/** The stacked name a fused matrix is read under: `<experts>.gate_up_proj[gate|up]`, `<experts>.down_proj[transposed]`. */
export function fusedExpertName(experts: (layer: number) => string, layer: number, matrix: ExpertMatrix): string {
  return matrix === 'down' ? `${experts(layer)}.down_proj[transposed]` : `${experts(layer)}.gate_up_proj[${matrix}]`;
}

/** The fused parameters of every MoE layer of `spec`, whose experts module is `experts(layer)`. */
export function fusedExpertLayers(experts: (layer: number) => string, spec: ModelSpec): FusedExperts[] {
  return spec.layers.flatMap((layer, i) =>
    layer.kind === 'moe'
      ? [{
          gateUp: `${experts(i)}.gate_up_proj`, down: `${experts(i)}.down_proj`,
          names: { gate: fusedExpertName(experts, i, 'gate'), up: fusedExpertName(experts, i, 'up'), down: fusedExpertName(experts, i, 'down') },
        }]
      : []);
}

interface Source {
  fused: string;
  /** First column of the fused matrix's [H][columns] slices this matrix takes, and how many. */
  firstColumn: number;
  columns: number;
}

export class FusedExpertsStore implements TensorStore {
  readonly format: TensorStore['format'];
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private readonly sources = new Map<string, Source>();
  // gate_up_proj is asked for twice in a row (gate, then up): read once.
  private readonly fusedReads: FusedReadCache;

  /** Layers whose tensors are absent or not 3-D keep their names; the reader then reports what is missing. */
  constructor(private readonly base: TensorStore, layers: readonly FusedExperts[]) {
    this.format = base.format;
    this.fusedReads = new FusedReadCache((name) => base.read(name));
    const tensors = new Map(base.tensors);
    const present = (name: string) => {
      const info = tensors.get(name);
      return info && info.shape.length === 3 ? info : undefined;
    };
    for (const { gateUp, down, names } of layers) {
      const fused = present(gateUp);
      const downInfo = present(down);
      if (!fused || !downInfo || fused.shape[2] % 2 !== 0) continue;
      const [experts, hidden, twoF] = fused.shape;
      const ffn = twoF / 2;
      tensors.delete(gateUp);
      tensors.delete(down);
      const add = (name: string, info: TensorInfo, shape: number[], source: Source) => {
        tensors.set(name, { ...info, name, shape, byteLength: info.byteLength * (source.columns / info.shape[2]) });
        this.sources.set(name, source);
        this.fusedReads.addPart(source.fused);
      };
      add(names.gate, fused, [experts, ffn, hidden], { fused: gateUp, firstColumn: 0, columns: ffn });
      add(names.up, fused, [experts, ffn, hidden], { fused: gateUp, firstColumn: ffn, columns: ffn });
      add(names.down, downInfo, [downInfo.shape[0], downInfo.shape[2], downInfo.shape[1]], { fused: down, firstColumn: 0, columns: downInfo.shape[2] });
    }
    this.tensors = tensors;
  }

  async read(name: string): Promise<TensorData> {
    const source = this.sources.get(name);
    if (!source) return this.base.read(name);
    const fused = await this.fusedReads.take(source.fused);
    return { name, dtype: fused.dtype, shape: [...(this.tensors.get(name) as TensorInfo).shape], data: transposedColumns(fused, source) };
  }

  close(): Promise<void> {
    this.fusedReads.clear();
    return this.base.close();
  }
}

// out[e][c][r] = fused[e][r][firstColumn + c]: each expert's column block, transposed.
function transposedColumns(fused: TensorData, source: Source): TensorData['data'] {
  const [experts, rows, width] = fused.shape;
  const values = fused.data;
  if (values instanceof Uint8Array || values.length !== experts * rows * width) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `tensor '${source.fused}' must hold ${experts * rows * width} f32, f16 or bf16 values`);
  }
  const { firstColumn, columns } = source;
  const out = values instanceof Float32Array ? new Float32Array(experts * columns * rows) : new Uint16Array(experts * columns * rows);
  for (let e = 0; e < experts; e++) {
    const from = e * rows * width + firstColumn;
    const to = e * columns * rows;
    for (let r = 0; r < rows; r++) {
      const row = from + r * width;
      for (let c = 0; c < columns; c++) out[to + c * rows + r] = values[row + c];
    }
  }
  return out;
}

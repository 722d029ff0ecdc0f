// What a `device` option resolves to, on fake backends: 'auto' is the CUDA backend when it is usable for the object
// (a layer: backendInfo().backend is 'cuda'; a model: also cudaWholeModels, a missing field counting as false), and
// the one Device / DType parser words its errors as each entry point always has.
import type { LoadedBinary } from '../lib/addon/native';
import type { NativeBackendInfo } from '../lib/addon/native-surface';
import { resolveDevice } from '../lib/backend/device-placement';
import { parseDevice } from '../lib/device';
import { parseDType } from '../lib/dtype';
import { expectThrow } from './helpers';

let info: NativeBackendInfo | undefined;
const binary = (): LoadedBinary => ({
  addon: { backendInfo: () => info! } as LoadedBinary['addon'],
  path: '/fake/dynamoe.node',
  kind: 'cuda',
  source: 'compiled',
  requested: 'auto',
  requestedBy: "the default, 'auto'",
  skipped: [],
});
jest.mock('../lib/addon/native', () => ({
  native: () => {
    if (info === undefined) throw new Error('the addon was loaded');
    return binary().addon;
  },
  loadedBinary: () => binary(),
}));

const CUDA: NativeBackendInfo = { backend: 'cuda', cudaBuilt: true, cudaArchitectures: ['sm_90'] };
const NO_GPU: NativeBackendInfo = {
  backend: 'cpu',
  cudaBuilt: true,
  cudaError: 'cudaErrorNoDevice',
  cudaErrorMessage: 'no CUDA-capable device is detected',
  cudaArchitectures: ['sm_90'],
};
const NO_CUDA_MODELS =
  "this CUDA binary runs single MoE layers and routing only, not whole models; rebuild it (npm run build:cuda) " +
  "or use 'cpu' or 'auto'";

/** A pattern matching exactly `text`. */
const exactly = (text: string) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

afterEach(() => {
  info = undefined;
});

describe('resolveDevice', () => {
  it("'cpu' is the CPU for layers and models without loading the addon", () => {
    expect(resolveDevice('cpu', 'layer')).toBe('cpu');
    expect(resolveDevice('cpu', 'model')).toBe('cpu');
  });

  it("'auto' for a layer follows backendInfo().backend", () => {
    info = CUDA;
    expect(resolveDevice('auto', 'layer')).toBe('cuda');
    info = NO_GPU;
    expect(resolveDevice('auto', 'layer')).toBe('cpu');
    info = { ...NO_GPU, cudaWholeModels: true };
    expect(resolveDevice('auto', 'layer')).toBe('cpu');
  });

  it("'auto' for a model is CUDA only when the backend is usable and cudaWholeModels is true", () => {
    const cases: Array<[NativeBackendInfo, 'cpu' | 'cuda']> = [
      [CUDA, 'cpu'], // the field missing, as in every build that predates it
      [{ ...CUDA, cudaWholeModels: false }, 'cpu'],
      [{ ...CUDA, cudaWholeModels: true }, 'cuda'],
      [{ ...NO_GPU, cudaWholeModels: true }, 'cpu'],
      [NO_GPU, 'cpu'],
    ];
    for (const [backend, expected] of cases) {
      info = backend;
      expect(resolveDevice('auto', 'model')).toBe(expected);
    }
  });

  it("'cuda' for a model needs a usable GPU first, then a binary with cudaWholeModels", () => {
    for (const backend of [NO_GPU, { ...NO_GPU, cudaWholeModels: true }]) {
      info = backend;
      expectThrow(() => resolveDevice('cuda', 'model'), 'ERR_DYNAMOE_DEVICE', /^device 'cuda' is not available: cudaErrorNoDevice/);
    }
    // A CUDA binary from before whole models on CUDA (no cudaWholeModels field, or false).
    for (const backend of [CUDA, { ...CUDA, cudaWholeModels: false }]) {
      info = backend;
      expectThrow(() => resolveDevice('cuda', 'model'), 'ERR_DYNAMOE_UNSUPPORTED', exactly(NO_CUDA_MODELS));
    }
    info = { ...CUDA, cudaWholeModels: true };
    expect(resolveDevice('cuda', 'model')).toBe('cuda');
  });

  it("'cuda' for a layer needs a usable GPU, whatever cudaWholeModels says", () => {
    info = CUDA;
    expect(resolveDevice('cuda', 'layer')).toBe('cuda');
    info = { ...NO_GPU, cudaWholeModels: true };
    expectThrow(() => resolveDevice('cuda', 'layer'), 'ERR_DYNAMOE_DEVICE', /^device 'cuda' is not available: cudaErrorNoDevice/);
  });
});

describe('the Device and DType parsers', () => {
  it('accept exactly the names', () => {
    for (const device of ['cpu', 'cuda', 'auto'] as const) expect(parseDevice(device, 'device')).toBe(device);
    for (const dtype of ['f32', 'f16', 'bf16'] as const) expect(parseDType(dtype, 'dtype')).toBe(dtype);
  });

  it('word errors for options, text settings and values shown bare', () => {
    const cases: Array<[() => unknown, 'ERR_DYNAMOE_VALUE' | 'ERR_DYNAMOE_DTYPE', string]> = [
      [() => parseDevice('gpu', 'device'), 'ERR_DYNAMOE_VALUE', "device must be 'cpu', 'cuda' or 'auto', got 'gpu'"],
      [() => parseDevice({}, 'device'), 'ERR_DYNAMOE_VALUE', "device must be 'cpu', 'cuda' or 'auto', got an object"],
      [
        () => parseDevice('gpu', 'DYNAMOE_DEVICE', { bareNames: true }),
        'ERR_DYNAMOE_VALUE',
        "DYNAMOE_DEVICE must be cpu, cuda or auto, got 'gpu'",
      ],
      [() => parseDevice('tpu', 'device', { shown: String }), 'ERR_DYNAMOE_VALUE', "device must be 'cpu', 'cuda' or 'auto', got tpu"],
      [() => parseDType('F32', 'dtype'), 'ERR_DYNAMOE_DTYPE', "dtype must be 'f32', 'f16' or 'bf16', got 'F32'"],
      [() => parseDType('f64', '--dtype', { bareNames: true }), 'ERR_DYNAMOE_DTYPE', "--dtype must be f32, f16 or bf16, got 'f64'"],
    ];
    for (const [fn, code, message] of cases) expectThrow(fn, code, exactly(message));
  });
});

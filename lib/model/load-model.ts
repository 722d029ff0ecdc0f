// loadModel: a Hugging Face directory (config.json + safetensors + tokenizer.json) or a .gguf file -> Model.
import { promises as fs } from 'fs';
import * as path from 'path';
import { resolveDevice } from '../backend/device-placement';
import { Device, parseDevice } from '../device';
import { DType, DTYPES, isDType } from '../dtype';
import { DynamoeError } from '../errors';
import { requireName } from '../validate';
import { openGguf } from '../formats/gguf';
import { isQuantType, isWritableQuantType, WRITABLE_QUANT_TYPES, WritableQuantType } from '../formats/quant-types';
import { openSafetensors } from '../formats/safetensors';
import { TensorStore } from '../formats/tensor-store';
import { PolicyOption } from '../policy/per-layer';
import { loadTokenizerFromDirectory, tokenizerFromGgufMetadata, Tokenizer } from '../tokenizer/tokenizer';
import { architectureForHfConfig } from './architectures';
import { buildModelGraph, ProgressCallback } from './build-graph';
import { ConfigReader } from './config-reader';
import { splitGgufQkv } from './gguf-fused-qkv';
import { ggufModelSpec } from './gguf-spec';
import { Model } from './model';
import {
  gpuFreeMemory,
  kvCacheBytes,
  kvElementBytes,
  quantizedWeightBytes,
  requireGpuMemory,
  requireMemory,
  weightBytes,
} from './memory-need';
import { SchedulerOptions, schedulerLimits } from './scheduler-limits';
import { CheckpointNaming, ggufNamingFor } from './naming';
import { ModelSpec } from './spec';
import { WeightReader } from './weight-reader';

/** Options of {@link loadModel}; the scheduler's limits are {@link SchedulerOptions}. */
export interface LoadModelOptions extends SchedulerOptions {
  /**
   * Where the model runs (default 'auto'): 'auto' is the CUDA backend when the CUDA binary finds a usable GPU, else
   * the CPU; 'cuda' throws ERR_DYNAMOE_DEVICE saying why when it cannot run there. On CUDA the weights are uploaded
   * node by node to GPU memory, after the weights and the KV pool were checked against the GPU's free memory.
   */
  device?: Device;
  /**
   * Element type weights are packed in (default: the checkpoint's, except that on CUDA an f32 checkpoint is uploaded
   * as bf16 for the tensor cores unless 'f32' is asked; a quantized GGUF keeps each tensor's own type).
   * A quantized type ('q8_0', 'q4_0', 'q4_k', 'q6_k') quantizes the experts' matrices as they load; the other
   * tensors keep the checkpoint's type. Math accumulates in fp32.
   */
  dtype?: DType | WritableQuantType;
  /** Default routing policy (default: the one the model was trained with). */
  policy?: PolicyOption;
  /** Called as weights are packed: nodes done out of the total. */
  onProgress?: ProgressCallback;
}

/** A checkpoint ready to build: its tensors, what they describe, their names, and its tokenizer. */
export interface Checkpoint {
  store: TensorStore;
  spec: ModelSpec;
  naming: CheckpointNaming;
  tokenizer: Tokenizer;
}

async function openHfDirectory(dir: string): Promise<Checkpoint> {
  const configPath = path.join(dir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(configPath, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code) throw new DynamoeError('ERR_DYNAMOE_IO', `cannot read ${configPath}: ${(error as Error).message}`);
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${configPath} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${configPath} must hold a JSON object`);
  }
  const config = ConfigReader.fromJson(json as Record<string, unknown>, configPath);
  const architecture = architectureForHfConfig(config);
  const spec = architecture.fromHfConfig(config);
  const tokenizer = await loadTokenizerFromDirectory(dir);
  const files = await openSafetensors(dir);
  try {
    const store = architecture.hfStore ? architecture.hfStore(files, spec) : files;
    return { store, spec, naming: architecture.hfNaming, tokenizer };
  } catch (error) {
    await files.close();
    throw error;
  }
}

async function openGgufFile(file: string): Promise<Checkpoint> {
  const gguf = await openGguf(file);
  try {
    const meta = new ConfigReader(gguf.metadata, file);
    const store = splitGgufQkv(gguf, meta);
    const spec = ggufModelSpec(meta, store.tensors);
    const tokenizer = tokenizerFromGgufMetadata(gguf.metadata, file);
    return { store, spec, naming: ggufNamingFor(spec.architecture), tokenizer };
  } catch (error) {
    await gguf.close();
    throw error;
  }
}

function checkpointDtype(store: TensorStore, naming: CheckpointNaming, source: string): DType {
  const dtype = store.tensors.get(naming.embed)?.dtype;
  if (isDType(dtype)) return dtype;
  // A quantized file keeps its quantized tensors; its other matrices keep their own type (f32 when it has none).
  if (isQuantType(dtype)) {
    const other = [...store.tensors.values()].find((t) => t.shape.length > 1 && isDType(t.dtype))?.dtype;
    return isDType(other) ? other : 'f32';
  }
  throw new DynamoeError(
    'ERR_DYNAMOE_UNSUPPORTED',
    `${source}: tensor '${naming.embed}' has type ${String(dtype)}; dynamoe loads f32, f16, bf16 and GGUF's ` +
      'q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs and mxfp4 weights',
  );
}

/**
 * Loads an MoE checkpoint: a directory with config.json, *.safetensors (sharded with an index, or one file) and
 * tokenizer.json, or a .gguf file. Weights are packed for the CPU kernels as they are read.
 */
export async function loadModel(location: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof location !== 'string' || location === '') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', 'loadModel needs the path of a model directory or a .gguf file');
  }
  // loadModel's messages have always shown a rejected value bare (String), not quoted.
  const device = resolveDevice(parseDevice(options.device ?? 'auto', 'device', { shown: String }), 'model');
  if (options.dtype !== undefined) {
    requireName(options.dtype, [...DTYPES, ...WRITABLE_QUANT_TYPES], 'dtype', 'ERR_DYNAMOE_DTYPE', { shown: String });
  }
  let stat;
  try {
    stat = await fs.stat(location);
  } catch (error) {
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot open model ${location}: ${(error as Error).message}`);
  }
  const checkpoint = stat.isDirectory() ? await openHfDirectory(location) : await openGgufFile(location);
  try {
    return await modelFromCheckpoint(checkpoint, location, { ...options, device });
  } finally {
    await checkpoint.store.close();
  }
}

/**
 * Builds a Model from an open checkpoint (any TensorStore: files, or tensors made in memory such as the demo's).
 * The caller closes the store.
 */
export async function modelFromCheckpoint(
  checkpoint: Checkpoint,
  source: string,
  options: Omit<LoadModelOptions, 'device'> & { device?: 'cpu' | 'cuda' } = {},
): Promise<Model> {
  const device = options.device ?? 'cpu';
  const quantizeExperts = isWritableQuantType(options.dtype) ? options.dtype : undefined;
  const fileDtype = checkpointDtype(checkpoint.store, checkpoint.naming, source);
  // The GPU's tensor cores take 16-bit weights: an f32 checkpoint goes up as bf16 unless f32 is asked for.
  const dtype = (quantizeExperts ? undefined : (options.dtype as DType | undefined)) ??
    (device === 'cuda' && fileDtype === 'f32' ? 'bf16' : fileDtype);
  const bytes = quantizedWeightBytes(checkpoint.store, dtype) ?? weightBytes(checkpoint.spec, dtype, quantizeExperts);
  const what = `loading ${source} with ${quantizeExperts ?? dtype} weights`;
  let limitsWithPool;
  if (device === 'cuda') {
    const gpuFree = gpuFreeMemory();
    const kvElement = kvElementBytes('cuda', dtype);
    limitsWithPool = schedulerLimits(checkpoint.spec, bytes, options, 'cuda', gpuFree, kvElement);
    requireGpuMemory(bytes, kvCacheBytes(checkpoint.spec, limitsWithPool.kvPoolTokens, kvElement), gpuFree, what);
  } else {
    requireMemory(bytes, what);
    limitsWithPool = schedulerLimits(checkpoint.spec, bytes, options);
  }
  const { kvPoolTokens, ...limits } = limitsWithPool;
  const weights = new WeightReader(checkpoint.store, checkpoint.naming, dtype, source, quantizeExperts);
  const graph = await buildModelGraph(checkpoint.spec, weights, dtype, kvPoolTokens, options.onProgress, device);
  try {
    return new Model(graph, checkpoint.spec, checkpoint.tokenizer, dtype, source, options.policy, limits, device);
  } catch (error) {
    graph.dispose();
    throw error;
  }
}

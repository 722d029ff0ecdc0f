// Hugging Face safetensors: a reader that checks every header field against the real file before allocating, and
// writers for single files and sharded checkpoints (model-0000i-of-0000N.safetensors + model.safetensors.index.json).
//
// File layout: u64 little-endian header length N, N bytes of JSON
// `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { key: string } }`, then the data section;
// offsets are relative to the start of the data section.
import { mkdir, stat } from 'fs/promises';
import { isAbsolute, join, dirname } from 'path';
import { isDType } from '../dtype';
import { DynamoeError } from '../errors';
import {
  checkTensorInputs,
  closeAll,
  ELEMENT_BYTES,
  elementCount,
  FileCursor,
  FileTensorStore,
  formatError,
  ioError,
  isCount,
  openForRead,
  readFully,
  TensorDType,
  TensorInfo,
  TensorInput,
  TensorStore,
  writeAtomically,
  writeFully,
} from './tensor-store';
import type { FileHandle } from 'fs/promises';

/** An open safetensors checkpoint (one file, or the shards of an index). */
export interface SafetensorsStore extends TensorStore {
  readonly format: 'safetensors';
  /** `__metadata__` of the file; for a sharded checkpoint, of all shards (the first shard naming a key wins). */
  readonly metadata: ReadonlyMap<string, string>;
}

/** Largest JSON header (or index file) accepted: real ones are kilobytes to a few megabytes. */
const MAX_HEADER_BYTES = 100_000_000;
const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';

// Bits per element of every dtype the safetensors spec names; the sub-byte float formats pack densely.
const DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64, C64: 64,
};
const SUPPORTED: Readonly<Record<string, TensorDType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const FILE_DTYPE: Readonly<Record<TensorDType, string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

interface Shard {
  handle: FileHandle;
  tensors: Map<string, TensorInfo>;
  metadata: Map<string, string>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks one header entry and returns where its data lies in the file. */
function parseEntry(file: string, name: string, entry: unknown, dataStart: number, dataSize: number): TensorInfo {
  const where = `${file}: tensor '${name}'`;
  if (!isObject(entry)) {
    formatError(`${where}: expected an object { dtype, shape, data_offsets }, found ${JSON.stringify(entry)}`);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BITS, dtype)) {
    const known = Object.keys(DTYPE_BITS).join(', ');
    formatError(`${where}: unknown dtype ${JSON.stringify(dtype)} (expected one of ${known})`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    formatError(`${where}: shape must be an array of non-negative integers, found ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    formatError(`${where}: data_offsets must be [begin, end] non-negative integers, found ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as number[];
  if (begin > end) formatError(`${where}: data_offsets [${begin}, ${end}] begin after they end`);
  if (end > dataSize) {
    formatError(`${where}: data_offsets [${begin}, ${end}] end past the data section (${dataSize} bytes)`);
  }
  const count = elementCount(shape);
  const bits = DTYPE_BITS[dtype];
  if (count === null || (count * bits) % 8 !== 0 || (count * bits) / 8 !== end - begin) {
    formatError(
      `${where}: shape [${shape.join(', ')}] of ${dtype} needs ` +
        `${count === null ? 'too many' : (count * bits) / 8} bytes, ` +
        `data_offsets [${begin}, ${end}] give ${end - begin}`,
    );
  }
  const byteOffset = dataStart + begin;
  return { name, dtype: SUPPORTED[dtype] ?? dtype, shape: [...shape], file, byteOffset, byteLength: end - begin };
}

/** Opens one .safetensors file and checks its header; closes the file again if the header is bad. */
async function openShard(file: string): Promise<Shard> {
  const { handle, size } = await openForRead(file);
  try {
    const c: FileCursor = new FileCursor(handle, file, size); // declared type: lets c.fail() narrow like a throw
    if (size < 8) c.fail(`file is ${size} bytes, too short for the 8-byte header length`);
    await c.need(8, 'header length');
    const headerLength = c.u64();
    if (headerLength > BigInt(size - 8)) {
      c.fail(`header length ${headerLength} runs past the end of the file (${size} bytes)`);
    }
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      c.fail(`header length ${headerLength} is over the limit of ${MAX_HEADER_BYTES}`);
    }
    await c.need(Number(headerLength), 'JSON header');
    let header: unknown;
    try {
      header = JSON.parse(c.bytes(Number(headerLength)).toString('utf8'));
    } catch (error) {
      c.fail(`header is not valid JSON (${(error as Error).message})`);
    }
    if (!isObject(header)) {
      c.fail(`header must be a JSON object, found ${Array.isArray(header) ? 'an array' : typeof header}`);
    }
    const dataStart = c.pos;
    const tensors = new Map<string, TensorInfo>();
    const metadata = new Map<string, string>();
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (!isObject(entry)) c.fail('__metadata__ must be an object of strings');
        for (const [key, value] of Object.entries(entry)) {
          if (typeof value !== 'string') c.fail(`__metadata__ '${key}' must be a string, found ${JSON.stringify(value)}`);
          metadata.set(key, value);
        }
      } else {
        tensors.set(name, parseEntry(file, name, entry, dataStart, size - dataStart));
      }
    }
    return { handle, tensors, metadata };
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
}

/** Reads and parses a JSON file of at most MAX_HEADER_BYTES. */
async function readJson(file: string): Promise<unknown> {
  const { handle, size } = await openForRead(file);
  try {
    if (size > MAX_HEADER_BYTES) formatError(`${file}: ${size} bytes, over the ${MAX_HEADER_BYTES} limit for an index`);
    const bytes = new Uint8Array(size);
    await readFully(handle, file, bytes, 0);
    try {
      return JSON.parse(Buffer.from(bytes.buffer).toString('utf8'));
    } catch (error) {
      formatError(`${file}: not valid JSON (${(error as Error).message})`);
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** A shard name must stay inside the checkpoint's directory. */
function checkShardName(index: string, shard: unknown, name: string): string {
  if (typeof shard !== 'string' || shard.length === 0 || isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
    const found = JSON.stringify(shard);
    formatError(`${index}: weight_map['${name}'] must be a file name relative to the index, found ${found}`);
  }
  return shard;
}

async function openIndexed(index: string): Promise<SafetensorsStore> {
  const json = await readJson(index);
  const weightMap = isObject(json) ? json.weight_map : undefined;
  if (!isObject(weightMap)) formatError(`${index}: expected an object with a "weight_map" object`);
  const entries = Object.entries(weightMap).map(([name, shard]) => [name, checkShardName(index, shard, name)] as const);
  const shards = new Map<string, Shard>();
  try {
    for (const file of new Set(entries.map(([, shard]) => join(dirname(index), shard)))) {
      shards.set(file, await openShard(file)); // each shard once, in order of first mention
    }
  } catch (error) {
    await closeAll([...shards.values()].map((shard) => shard.handle));
    throw error;
  }
  const tensors = new Map<string, TensorInfo>();
  const metadata = new Map<string, string>();
  for (const shard of shards.values()) {
    for (const [key, value] of shard.metadata) if (!metadata.has(key)) metadata.set(key, value);
  }
  for (const [name, shardName] of entries) {
    const file = join(dirname(index), shardName);
    const info = (shards.get(file) as Shard).tensors.get(name);
    if (info === undefined) {
      await closeAll([...shards.values()].map((shard) => shard.handle));
      formatError(`${index}: weight_map puts tensor '${name}' in ${file}, which has no such tensor`);
    }
    tensors.set(name, info);
  }
  const handles = new Map([...shards].map(([file, shard]) => [file, shard.handle]));
  return Object.assign(new FileTensorStore('safetensors', tensors, handles), { metadata }) as SafetensorsStore;
}

/**
 * Opens a safetensors checkpoint and checks its header(s) against the file sizes.
 * @param path a `.safetensors` file, a `*.index.json` of a sharded checkpoint, or a directory holding
 *   `model.safetensors.index.json` or `model.safetensors`
 * @throws DynamoeError ERR_DYNAMOE_IO when a file cannot be opened or read, ERR_DYNAMOE_FORMAT when one is malformed
 */
export async function openSafetensors(path: string): Promise<SafetensorsStore> {
  let file = path;
  try {
    if ((await stat(path)).isDirectory()) {
      const exists = async (name: string) => stat(join(path, name)).then(() => true, () => false);
      if (await exists(INDEX_FILE)) file = join(path, INDEX_FILE);
      else if (await exists(SINGLE_FILE)) file = join(path, SINGLE_FILE);
      else {
        const message = `${path}: cannot open: the directory has neither ${INDEX_FILE} nor ${SINGLE_FILE}`;
        throw new DynamoeError('ERR_DYNAMOE_IO', message);
      }
    }
  } catch (error) {
    throw ioError(path, 'open', error);
  }
  if (file.endsWith('.json')) return openIndexed(file);
  const shard = await openShard(file);
  const store = new FileTensorStore('safetensors', shard.tensors, new Map([[file, shard.handle]]));
  return Object.assign(store, { metadata: shard.metadata }) as SafetensorsStore;
}

/**
 * Writes tensors to one safetensors file (replacing it atomically). Tensors are laid out by element size, largest
 * first, so every tensor's data is aligned to its element size in the file, as the reference writer does.
 * @param metadata optional `__metadata__` (string values only, as the format requires)
 * @throws DynamoeError ERR_DYNAMOE_TYPE / _DTYPE / _SHAPE / _VALUE for bad input, ERR_DYNAMOE_IO when writing fails
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorInput[],
  metadata?: Record<string, string>,
): Promise<void> {
  const views = checkTensorInputs(tensors, 'writeSafetensors');
  for (const { name, dtype } of tensors) {
    if (!isDType(dtype)) {
      throw new DynamoeError('ERR_DYNAMOE_DTYPE', `writeSafetensors: tensor '${name}' is ${dtype}; safetensors holds f32, f16 and bf16`);
    }
  }
  const size = (i: number) => ELEMENT_BYTES[tensors[i].dtype as TensorDType];
  const order = tensors.map((_, i) => i).sort((a, b) => size(b) - size(a) || a - b);
  // Built by hand, not from an object: a tensor named "__proto__" must stay an ordinary key.
  const fields: string[] = [];
  if (metadata !== undefined) {
    if (!isObject(metadata) || !Object.values(metadata).every((value) => typeof value === 'string')) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', 'writeSafetensors: metadata must be an object of string values');
    }
    fields.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const i of order) {
    const { name, dtype, shape } = tensors[i];
    if (name === '__metadata__') {
      throw new DynamoeError('ERR_DYNAMOE_VALUE', 'writeSafetensors: "__metadata__" is reserved');
    }
    const entry = { dtype: FILE_DTYPE[dtype as TensorDType], shape, data_offsets: [offset, offset + views[i].length] };
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
    offset += views[i].length;
  }
  // Spaces pad the header to a multiple of 8 so the data section starts 8-byte aligned.
  const json = Buffer.from(`{${fields.join(',')}}`, 'utf8');
  const header = Buffer.alloc(8 + Math.ceil(json.length / 8) * 8, 0x20);
  header.writeBigUInt64LE(BigInt(header.length - 8), 0);
  json.copy(header, 8);
  await writeAtomically(path, async (handle) => {
    await writeFully(handle, header);
    for (const i of order) await writeFully(handle, views[i]);
  });
}

/**
 * Writes `model.safetensors.index.json` into `dir`: `{ metadata: { total_size }, weight_map: { name: file } }`.
 * @param shards shard file name (relative to `dir`) -> names of the tensors it holds
 * @param totalSize bytes of tensor data in all shards (the `total_size` Hugging Face writes); omitted when not given
 * @returns the index file's path
 */
export async function writeSafetensorsIndex(
  dir: string,
  shards: Record<string, readonly string[]>,
  totalSize?: number,
): Promise<string> {
  const weightMap: [string, string][] = [];
  for (const [file, names] of Object.entries(shards)) {
    if (file.length === 0 || isAbsolute(file) || file.split(/[\\/]/).includes('..')) {
      const message = `writeSafetensorsIndex: shard ${JSON.stringify(file)} must be a relative file name`;
      throw new DynamoeError('ERR_DYNAMOE_VALUE', message);
    }
    for (const name of names) weightMap.push([name, file]);
  }
  const index = join(dir, INDEX_FILE);
  const body = weightMap.map(([name, file]) => `    ${JSON.stringify(name)}: ${JSON.stringify(file)}`).join(',\n');
  const meta = totalSize === undefined ? '{}' : JSON.stringify({ total_size: totalSize });
  const text = `{\n  "metadata": ${meta},\n  "weight_map": {\n${body}\n  }\n}\n`;
  await writeAtomically(index, (handle) => writeFully(handle, Buffer.from(text, 'utf8')));
  return index;
}

/**
 * Writes a sharded checkpoint into `dir` (created if needed): tensors in the given order, packed greedily into
 * `model-0000i-of-0000N.safetensors` files of at most `maxShardBytes` of data each (a tensor larger than that gets
 * a shard of its own), plus `model.safetensors.index.json`.
 * @returns the paths of the shard files, in order
 */
export async function writeSafetensorsSharded(
  dir: string,
  tensors: readonly TensorInput[],
  options: { maxShardBytes: number; metadata?: Record<string, string> },
): Promise<string[]> {
  const views = checkTensorInputs(tensors, 'writeSafetensorsSharded');
  const maxShardBytes = options?.maxShardBytes;
  if (!isCount(maxShardBytes) || maxShardBytes === 0) {
    const message = `writeSafetensorsSharded: maxShardBytes must be a positive integer, got ${maxShardBytes}`;
    throw new DynamoeError('ERR_DYNAMOE_VALUE', message);
  }
  const groups: TensorInput[][] = [];
  let used = Infinity;
  tensors.forEach((tensor, i) => {
    if (used + views[i].length > maxShardBytes || groups.length === 0) {
      groups.push([]);
      used = 0;
    }
    groups[groups.length - 1].push(tensor);
    used += views[i].length;
  });
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw ioError(dir, 'create the directory', error);
  }
  const digits = (n: number) => String(n).padStart(5, '0');
  const shards: Record<string, string[]> = {};
  const paths: string[] = [];
  for (const [i, group] of groups.entries()) {
    const name = `model-${digits(i + 1)}-of-${digits(groups.length)}.safetensors`;
    paths.push(join(dir, name));
    await writeSafetensors(paths[i], group, options.metadata);
    shards[name] = group.map((tensor) => tensor.name);
  }
  await writeSafetensorsIndex(dir, shards, views.reduce((sum, view) => sum + view.length, 0));
  return paths;
}

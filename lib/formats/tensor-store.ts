// What the safetensors and GGUF readers share: the tensor catalogue types, a store that reads tensors through open
// file handles, bounds-checked file reads (a chunked cursor for headers) and writes, and the checks on tensors
// handed to the writers.
import { endianness } from 'os';
import { FileHandle, open, rename, unlink } from 'fs/promises';
import { DType, isDType, parseDType } from '../dtype';
import { DynamoeError } from '../errors';
import { isQuantType, QUANT_BLOCKS, quantBytes, QuantType } from './quant-types';

/** Element types that {@link TensorStore.read} returns as values (quantized types come back as raw blocks). */
export type TensorDType = DType;

/** Where one tensor lives in a checkpoint file, as its header describes it (checked against the file's size). */
export interface TensorInfo {
  name: string;
  /** A supported type, or the name of an unsupported one as the format spells it ('Q4_K', 'I64', ...). */
  dtype: TensorDType | string;
  /** Row-major, outermost first (PyTorch order). */
  shape: number[];
  /** The file that holds the data. */
  file: string;
  /** Absolute offset of the first byte in `file`. */
  byteOffset: number;
  byteLength: number;
}

/** One tensor's data, in freshly allocated memory. */
export interface TensorData {
  name: string;
  dtype: TensorDType | QuantType;
  shape: number[];
  /** Float32Array for f32; Uint16Array of bit patterns for f16 and bf16; Uint8Array of blocks when quantized. */
  data: Float32Array | Uint16Array | Uint8Array;
}

/** An open checkpoint: its tensor catalogue, read on demand. */
export interface TensorStore {
  readonly format: 'safetensors' | 'gguf' | 'memory'; // 'memory': tensors made at run time (the demo)
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Reads one tensor into new memory. Rejects unsupported dtypes with ERR_DYNAMOE_UNSUPPORTED. */
  read(name: string): Promise<TensorData>;
  /** A tensor's bytes as stored, whatever its type (U8 blocks and scales that a model's own code decodes). */
  readBytes?(name: string): Promise<Uint8Array>;
  /** Closes the files; later reads reject with ERR_DYNAMOE_DISPOSED. Safe to call twice. */
  close(): Promise<void>;
}

/** A tensor handed to a writer (quantized types: GGUF only, as blocks of whole rows). */
export interface TensorInput {
  name: string;
  dtype: TensorDType | QuantType;
  /** Row-major, outermost first. */
  shape: number[];
  data: Float32Array | Uint16Array | Uint8Array;
}

/** Element size in bytes of each supported dtype. */
export const ELEMENT_BYTES: Readonly<Record<TensorDType, number>> = { f32: 4, f16: 2, bf16: 2 };

// fs calls are kept below 2 GiB each: read(2)/write(2) cap one call near there on Linux.
const IO_CHUNK = 1 << 30;

/** Throws ERR_DYNAMOE_FORMAT. */
export function formatError(message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_FORMAT', message);
}

/** Wraps an fs error as ERR_DYNAMOE_IO naming the file and what was being done. */
export function ioError(file: string, doing: string, error: unknown): DynamoeError {
  if (error instanceof DynamoeError) return error;
  // Checked by shape: fs errors come from Node's realm, which is not the caller's under vm contexts (jest).
  const hasMessage = typeof error === 'object' && error !== null && 'message' in error;
  const reason = hasMessage ? String((error as { message: unknown }).message) : String(error);
  return new DynamoeError('ERR_DYNAMOE_IO', `${file}: cannot ${doing}: ${reason}`);
}

/** Opens a file for reading and returns the handle and its size. */
export async function openForRead(file: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw ioError(file, 'open', error);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new DynamoeError('ERR_DYNAMOE_IO', `${file}: cannot read: not a regular file`);
    return { handle, size: stats.size };
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw ioError(file, 'stat', error);
  }
}

/** Fills `target` from `position` of the file; a short read (the file shrank since it was checked) is an IO error. */
export async function readFully(handle: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    let bytesRead: number;
    try {
      const length = Math.min(target.length - done, IO_CHUNK);
      ({ bytesRead } = await handle.read(target, done, length, position + done));
    } catch (error) {
      throw ioError(file, `read ${target.length} bytes at offset ${position}`, error);
    }
    if (bytesRead === 0) {
      throw new DynamoeError(
        'ERR_DYNAMOE_IO',
        `${file}: cannot read ${target.length} bytes at offset ${position}: ` +
          `the file ended after ${done} (truncated while open?)`,
      );
    }
    done += bytesRead;
  }
}

/** Writes all of `bytes` at the handle's current position. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.length - done, IO_CHUNK));
    if (bytesWritten === 0) throw new Error('the write made no progress');
    done += bytesWritten;
  }
}

let temporaryCounter = 0;

/**
 * Writes a file through `body` into a temporary sibling and renames it into place, so readers never see a
 * half-written checkpoint.
 */
export async function writeAtomically(file: string, body: (handle: FileHandle) => Promise<void>): Promise<void> {
  const temporary = `${file}.partial-${process.pid}-${(temporaryCounter++).toString(36)}`;
  let handle: FileHandle | undefined;
  try {
    handle = await open(temporary, 'w');
    await body(handle);
    await handle.close();
    handle = undefined;
    await rename(temporary, file);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await unlink(temporary).catch(() => undefined);
    if (error instanceof DynamoeError) throw error;
    throw ioError(file, 'write', error);
  }
}

/** Size of the chunks a {@link FileCursor} reads. */
export const CURSOR_CHUNK_BYTES = 1 << 20;

/**
 * Sequential little-endian reads over an open file with one chunk in memory (files can be many GB): every read is
 * checked against the bytes left in the file first, so a lying length fails before anything is allocated.
 */
export class FileCursor {
  private chunk: Buffer = Buffer.alloc(0);
  private chunkStart = 0;
  private chunkLength = 0;
  /** Absolute position of the next read. */
  pos = 0;

  constructor(private readonly handle: FileHandle, readonly file: string, readonly size: number) {}

  /** Throws ERR_DYNAMOE_FORMAT naming the file. */
  fail(message: string): never {
    formatError(`${this.file}: ${message}`);
  }

  /** Makes `n` bytes at the position available (reading a new chunk if needed), or fails naming `what`. */
  async need(n: number, what: string): Promise<void> {
    const left = this.size - this.pos;
    if (n > left) {
      this.fail(`${what} at offset ${this.pos} needs ${n} bytes, but the file (${this.size} bytes) has ${left} left`);
    }
    if (n <= this.available()) return;
    const length = Math.min(Math.max(n, CURSOR_CHUNK_BYTES), left);
    if (length > this.chunk.length) this.chunk = Buffer.allocUnsafeSlow(length);
    await readFully(this.handle, this.file, this.chunk.subarray(0, length), this.pos);
    this.chunkStart = this.pos;
    this.chunkLength = length;
  }

  /** Bytes at the position already in memory. */
  available(): number {
    const offset = this.pos - this.chunkStart;
    return offset >= 0 ? Math.max(0, this.chunkLength - offset) : 0;
  }

  /** The chunk that {@link take} offsets point into. */
  get buffer(): Buffer {
    return this.chunk;
  }

  /** Advances over `n` bytes made available by need() and returns their offset in {@link buffer}. */
  take(n: number): number {
    const offset = this.pos - this.chunkStart;
    this.pos += n;
    return offset;
  }

  u32(): number {
    return this.chunk.readUInt32LE(this.take(4));
  }

  u64(): bigint {
    return this.chunk.readBigUInt64LE(this.take(8));
  }

  /** The next `n` bytes (a view into the chunk, valid until the next need()). */
  bytes(n: number): Buffer {
    return this.chunk.subarray(this.take(n), this.pos - this.chunkStart);
  }

  async u32At(what: string): Promise<number> {
    await this.need(4, what);
    return this.u32();
  }

  /** A u64 count of items of at least `minBytes` each, checked against what is left of the file. */
  async count(what: string, minBytes: number): Promise<number> {
    await this.need(8, what);
    const n = this.u64();
    const left = this.size - this.pos;
    if (n * BigInt(minBytes) > BigInt(left)) {
      const most = Math.floor(left / minBytes);
      this.fail(`${what} at offset ${this.pos - 8} is ${n}, but the ${left} bytes left hold at most ${most}`);
    }
    return Number(n);
  }
}

/** Allocates zeroed memory, reporting failure as ERR_DYNAMOE_OUT_OF_MEMORY instead of a RangeError. */
export function allocate(bytes: number, what: string): ArrayBuffer {
  try {
    return new ArrayBuffer(bytes);
  } catch {
    throw new DynamoeError('ERR_DYNAMOE_OUT_OF_MEMORY', `cannot allocate ${bytes} bytes for ${what}`);
  }
}

/** Product of a shape's entries; null when it is not a safe integer. */
export function elementCount(shape: readonly number[]): number | null {
  let count = 1;
  for (const extent of shape) {
    count *= extent;
    if (!Number.isSafeInteger(count)) return null;
  }
  return count;
}

/** True for a non-negative safe integer. */
export function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Typed-array kind by tag: arrays made in another realm (vm contexts, jest) fail `instanceof`. */
function arrayTag(value: unknown): string {
  return Object.prototype.toString.call(value).slice(8, -1);
}

// Quantized data: a Uint8Array of whole blocks along the innermost dimension.
function checkQuantizedInput(label: string, type: QuantType, shape: number[], data: unknown): void {
  if (arrayTag(data) !== 'Uint8Array') {
    throw new DynamoeError('ERR_DYNAMOE_DTYPE', `${label}: ${type} data must be a Uint8Array of blocks, got ${arrayTag(data)}`);
  }
  const cols = shape[shape.length - 1] ?? 0;
  const { elements } = QUANT_BLOCKS[type];
  if (cols % elements !== 0) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${label}: rows of ${cols} values are not whole ${type} blocks of ${elements}`);
  }
  const rows = (elementCount(shape) ?? 0) / Math.max(cols, 1);
  const bytes = quantBytes(type, rows, cols);
  if ((data as Uint8Array).length !== bytes) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${label}: shape [${shape.join(', ')}] needs ${bytes} bytes of ${type}, data has ${(data as Uint8Array).length}`);
  }
}

/**
 * Checks tensors handed to a writer (unique non-empty names, dtype matching the array kind, shape matching the
 * length) and returns a byte view of each one's data.
 */
export function checkTensorInputs(tensors: readonly TensorInput[], writer: string): Uint8Array[] {
  if (!Array.isArray(tensors)) throw new DynamoeError('ERR_DYNAMOE_TYPE', `${writer}: tensors must be an array`);
  const names = new Set<string>();
  return tensors.map((tensor, index) => {
    const { name, dtype, shape, data } = tensor ?? ({} as TensorInput);
    const label = `${writer}: tensor ${index} (${JSON.stringify(name)})`;
    if (typeof name !== 'string' || name.length === 0) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', `${label}: name must be a non-empty string`);
    }
    if (names.has(name)) throw new DynamoeError('ERR_DYNAMOE_VALUE', `${label}: duplicate tensor name`);
    names.add(name);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${label}: shape must be an array of non-negative integers`);
    }
    if (isQuantType(dtype)) {
      checkQuantizedInput(label, dtype, shape, data);
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    parseDType(dtype, `${label}: dtype`, { bareNames: true, shown: String });
    const expected = dtype === 'f32' ? 'Float32Array' : 'Uint16Array';
    if (arrayTag(data) !== expected) {
      const message = `${label}: ${dtype} data must be a ${expected}, got ${arrayTag(data)}`;
      throw new DynamoeError('ERR_DYNAMOE_DTYPE', message);
    }
    if (elementCount(shape) !== data.length) {
      throw new DynamoeError(
        'ERR_DYNAMOE_SHAPE',
        `${label}: shape [${shape.join(', ')}] has ${elementCount(shape) ?? 'too many'} elements, ` +
          `data has ${data.length}`,
      );
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  });
}

/** A {@link TensorStore} over open file handles (one per file), shared by the safetensors and GGUF readers. */
export class FileTensorStore implements TensorStore {
  private closed = false;

  constructor(
    readonly format: 'safetensors' | 'gguf',
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    private readonly handles: ReadonlyMap<string, FileHandle>,
  ) {}

  async read(name: string): Promise<TensorData> {
    const info = this.info(name);
    if (!isDType(info.dtype) && !isQuantType(info.dtype)) {
      throw new DynamoeError(
        'ERR_DYNAMOE_UNSUPPORTED',
        `${info.file}: tensor '${name}' has type ${info.dtype}; dynamoe reads f32, f16, bf16 and the quantized ` +
          'types q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs and mxfp4',
      );
    }
    // Both formats store little-endian values; the bytes are handed out as they are.
    if (endianness() !== 'LE') {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', 'reading tensors needs a little-endian host');
    }
    const bytes = (await this.readBytes(name)).buffer as ArrayBuffer;
    const data = isQuantType(info.dtype)
      ? new Uint8Array(bytes)
      : info.dtype === 'f32'
        ? new Float32Array(bytes)
        : new Uint16Array(bytes);
    return { name, dtype: info.dtype, shape: [...info.shape], data };
  }

  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const bytes = allocate(info.byteLength, `tensor '${name}'`);
    await readFully(this.handles.get(info.file) as FileHandle, info.file, new Uint8Array(bytes), info.byteOffset);
    return new Uint8Array(bytes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await closeAll(this.handles.values());
  }

  // The catalogue entry of `name`, while the store is open.
  private info(name: string): TensorInfo {
    if (this.closed) {
      throw new DynamoeError('ERR_DYNAMOE_DISPOSED', `${this.format} store was closed; cannot read '${name}'`);
    }
    const info = this.tensors.get(name);
    if (info === undefined) {
      const files = [...this.handles.keys()];
      const shown =
        files.length > 4 ? `${files.slice(0, 4).join(', ')} and ${files.length - 4} more` : files.join(', ');
      formatError(`no tensor '${name}' in ${shown}`);
    }
    return info;
  }
}

/** Closes every handle, ignoring errors (used on close and when opening fails half-way). */
export async function closeAll(handles: Iterable<FileHandle>): Promise<void> {
  await Promise.all([...handles].map((handle) => handle.close().catch(() => undefined)));
}

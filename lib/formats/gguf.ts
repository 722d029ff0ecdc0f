// GGUF (v2, v3; little-endian): a reader that parses the header through a bounds-checked cursor over the file,
// read in chunks, so a lying count or length fails before anything is allocated, and a v3 writer that llama.cpp
// can read.
//
// Layout: "GGUF", u32 version, u64 tensor_count, u64 kv_count, kvs (string key, u32 type, value), tensor infos
// (string name, u32 n_dims, u64 ne[n_dims] fastest-varying first, u32 ggml_type, u64 offset into the data
// section), padding to `general.alignment` (default 32), the data section. Strings are u64 length + UTF-8.
import { DynamoeError } from '../errors';
import { GGML_QUANT_TYPES, GGML_TYPES, QuantType } from './quant-types';
import {
  checkTensorInputs,
  CURSOR_CHUNK_BYTES,
  elementCount,
  FileCursor,
  FileTensorStore,
  openForRead,
  TensorDType,
  TensorInfo,
  TensorInput,
  TensorStore,
  writeAtomically,
  writeFully,
} from './tensor-store';

/** A metadata value as read: integers that do not fit a double exactly (u64/i64) come back as bigint. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** GGUF metadata value types, by name. */
export type GgufValueType =
  | 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'array' | 'u64' | 'i64' | 'f64';

/** An array value for {@link writeGguf}; arrays of arrays give each inner array its own item type. */
export type GgufTypedArray =
  | { type: 'array'; itemType: Exclude<GgufValueType, 'array'>; value: readonly (number | bigint | boolean | string)[] }
  | { type: 'array'; itemType: 'array'; value: readonly GgufTypedArray[] };

/** A metadata value with its GGUF type, for {@link writeGguf}. */
export type GgufTypedValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: number | bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | GgufTypedArray;

/** An open GGUF file. */
export interface GgufFile extends TensorStore {
  readonly format: 'gguf';
  readonly version: number;
  /** Alignment of the data section and of every tensor in it (`general.alignment`, default 32). */
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** The type of each metadata value ('array' for arrays). */
  readonly metadataTypes: ReadonlyMap<string, GgufValueType>;
  /** The item type of each array value. */
  readonly metadataItemTypes: ReadonlyMap<string, GgufValueType>;
}

/** Options of {@link writeGguf}. */
export interface GgufWriteOptions {
  metadata?: ReadonlyArray<readonly [string, GgufTypedValue]>;
  tensors: readonly TensorInput[];
  /** Power of two; default 32. Written as `general.alignment` when not 32. */
  alignment?: number;
}

// Index = the type id in the file.
const VALUE_TYPES: readonly GgufValueType[] =
  ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];
const FIXED_BYTES: Partial<Record<GgufValueType, number>> =
  { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8 };
const INT_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGES = { u64: [0n, 2n ** 64n - 1n], i64: [-(2n ** 63n), 2n ** 63n - 1n] } as const;

const SUPPORTED: Readonly<Record<number, TensorDType | QuantType>> = { 0: 'f32', 1: 'f16', 30: 'bf16', ...GGML_QUANT_TYPES };
const WRITE_TYPE: Readonly<Record<TensorDType | QuantType, number>> = {
  f32: 0,
  f16: 1,
  bf16: 30,
  ...(Object.fromEntries(Object.entries(GGML_QUANT_TYPES).map(([id, type]) => [type, Number(id)])) as Record<QuantType, number>),
};

const MAX_DIMS = 4; // GGML_MAX_DIMS
const MAX_NAME_BYTES = 63; // GGML_MAX_NAME is 64 including the terminating NUL
const MAX_STRING_BYTES = 1 << 28; // below V8's longest string
const MAX_ARRAY_ITEMS = 1 << 28; // below V8's longest array
const MAX_ARRAY_DEPTH = 16; // nested arrays recurse: bound the stack
const MAX_ENTRIES = 1 << 24; // tensors or key/values: real files have thousands; bounds a lying count in a big file
const DEFAULT_ALIGNMENT = 32;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const alignUp = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;
const isPowerOfTwo = (n: number) => Number.isSafeInteger(n) && n > 0 && n <= 2 ** 31 && (n & (n - 1)) === 0;
const numberIfSafe = (n: bigint) => (n >= -MAX_SAFE && n <= MAX_SAFE ? Number(n) : n);

/** One fixed-size value at the cursor (its bytes made available by need()). */
function scalar(c: FileCursor, type: GgufValueType): number | bigint | boolean {
  const b = c.buffer;
  switch (type) {
    case 'u8': return b.readUInt8(c.take(1));
    case 'i8': return b.readInt8(c.take(1));
    case 'u16': return b.readUInt16LE(c.take(2));
    case 'i16': return b.readInt16LE(c.take(2));
    case 'u32': return b.readUInt32LE(c.take(4));
    case 'i32': return b.readInt32LE(c.take(4));
    case 'f32': return b.readFloatLE(c.take(4));
    case 'bool': return b.readUInt8(c.take(1)) !== 0;
    case 'u64': return numberIfSafe(b.readBigUInt64LE(c.take(8)));
    case 'i64': return numberIfSafe(b.readBigInt64LE(c.take(8)));
    default: return b.readDoubleLE(c.take(8));
  }
}

/** A GGUF string: u64 byte length, then UTF-8. */
async function readString(c: FileCursor, what: string): Promise<string> {
  const length = await c.count(`${what} length`, 1);
  if (length > MAX_STRING_BYTES) c.fail(`${what} is ${length} bytes long, over the limit of ${MAX_STRING_BYTES}`);
  await c.need(length, what);
  return c.bytes(length).toString('utf8');
}

/** A string already wholly in the cursor's chunk, read without awaiting; undefined when it is not. */
function stringInChunk(c: FileCursor): string | undefined {
  const available = c.available();
  if (available < 8) return undefined;
  const at = c.take(0); // the position's offset in the chunk
  const length = c.buffer.readUInt32LE(at);
  if (c.buffer.readUInt32LE(at + 4) !== 0 || length > available - 8) return undefined;
  c.take(8);
  return c.bytes(length).toString('utf8');
}

function valueType(c: FileCursor, id: number, where: string): GgufValueType {
  const type = VALUE_TYPES[id];
  if (type === undefined) c.fail(`${where} has value type ${id}, expected 0..12`);
  return type;
}

async function readValue(
  c: FileCursor,
  type: GgufValueType,
  where: string,
  depth: number,
  onItemType?: (itemType: GgufValueType) => void,
): Promise<GgufValue> {
  if (type === 'string') return readString(c, where);
  const fixed = FIXED_BYTES[type];
  if (fixed !== undefined) {
    await c.need(fixed, where);
    return scalar(c, type);
  }
  const itemType = valueType(c, await c.u32At(`${where} item type`), `${where} (array)`);
  onItemType?.(itemType);
  if (itemType === 'array' && depth >= MAX_ARRAY_DEPTH) c.fail(`${where} nests arrays deeper than ${MAX_ARRAY_DEPTH}`);
  const itemBytes = FIXED_BYTES[itemType];
  const n = await c.count(`${where} array length`, itemBytes ?? (itemType === 'string' ? 8 : 12));
  if (n > MAX_ARRAY_ITEMS) c.fail(`${where} has ${n} items, over the limit of ${MAX_ARRAY_ITEMS}`);
  const items: GgufValue[] = [];
  if (itemBytes !== undefined) {
    // Fixed-size items: one availability check per chunk, not per item.
    const perChunk = Math.floor(CURSOR_CHUNK_BYTES / itemBytes);
    for (let i = 0; i < n; ) {
      const end = Math.min(n, i + perChunk);
      await c.need((end - i) * itemBytes, where);
      for (; i < end; i++) items.push(scalar(c, itemType));
    }
  } else if (itemType === 'string') {
    // Tokenizer vocabularies hold 100k+ strings: skip the await for those already in the chunk.
    for (let i = 0; i < n; i++) items.push(stringInChunk(c) ?? (await readString(c, `${where}[${i}]`)));
  } else {
    for (let i = 0; i < n; i++) items.push(await readValue(c, itemType, `${where}[${i}]`, depth + 1));
  }
  return items;
}

type RawTensorInfo = Omit<TensorInfo, 'byteOffset'> & { offset: number };

async function readTensorInfo(c: FileCursor, index: number): Promise<RawTensorInfo> {
  const name = await readString(c, `tensor ${index} name`);
  const where = `tensor '${name}'`;
  const dims = await c.u32At(`${where} n_dims`);
  if (dims > MAX_DIMS) c.fail(`${where} has ${dims} dimensions, at most ${MAX_DIMS} expected`);
  await c.need(8 * dims + 12, `${where} dimensions, type and offset`);
  const ne: number[] = [];
  for (let d = 0; d < dims; d++) {
    const extent = c.u64();
    if (extent > MAX_SAFE) c.fail(`${where} dimension ${d} is ${extent}, too large`);
    ne.push(Number(extent));
  }
  const ggmlType = c.u32();
  const offset = c.u64();
  if (offset > MAX_SAFE) c.fail(`${where} data offset ${offset} is too large`);
  const traits = GGML_TYPES[ggmlType];
  if (traits === undefined) {
    const message = `${c.file}: ${where} has ggml type ${ggmlType}, which this reader does not know (so cannot size)`;
    throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', message);
  }
  const [typeName, blockSize, blockBytes] = traits;
  const count = elementCount(ne);
  if (count === null) c.fail(`${where} dimensions [${ne.join(', ')}] hold too many elements`);
  if (dims > 0 && ne[0] % blockSize !== 0) {
    c.fail(`${where} of type ${typeName} has ne[0] = ${ne[0]}, not a multiple of its block size ${blockSize}`);
  }
  const byteLength = (count / blockSize) * blockBytes;
  if (!Number.isSafeInteger(byteLength)) c.fail(`${where} is too large`);
  const shape = [...ne].reverse(); // ggml lists the fastest-varying dimension first
  return { name, dtype: SUPPORTED[ggmlType] ?? typeName, shape, file: c.file, byteLength, offset: Number(offset) };
}

/** Magic and version; throws for anything but little-endian v2/v3. */
async function readPreamble(c: FileCursor): Promise<number> {
  if (c.size === 0) c.fail('file is empty, expected a GGUF header');
  await c.need(8, 'GGUF magic and version');
  const magic = c.bytes(4);
  if (magic.toString('latin1') !== 'GGUF') {
    const found = `${JSON.stringify(magic.toString('latin1'))} (0x${magic.toString('hex')})`;
    c.fail(`not a GGUF file: magic is ${found}, expected "GGUF"`);
  }
  const version = c.u32();
  if (version === 2 || version === 3) return version;
  const swapped = (version & 0xffff) === 0 && [2, 3].includes(version >>> 24);
  const reason = swapped
    ? 'big-endian GGUF files are not supported'
    : `GGUF version ${version} is not supported (expected 2 or 3)`;
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.file}: ${reason}`);
}

/**
 * Opens a GGUF file (v2 or v3, little-endian), parses and checks its header and tensor infos without reading the
 * tensor data.
 * @throws DynamoeError ERR_DYNAMOE_IO (cannot open/read), ERR_DYNAMOE_FORMAT (malformed), ERR_DYNAMOE_UNSUPPORTED
 *   (other versions, big-endian files, ggml types this reader cannot size)
 */
export async function openGguf(path: string): Promise<GgufFile> {
  const { handle, size } = await openForRead(path);
  try {
    const c: FileCursor = new FileCursor(handle, path, size); // declared type: lets c.fail() narrow like a throw
    const version = await readPreamble(c);
    const tensorCount = await c.count('tensor count', 24); // name length, n_dims, type and offset: 24 bytes at least
    const kvCount = await c.count('metadata key/value count', 13); // key length, value type, 1-byte value
    if (Math.max(tensorCount, kvCount) > MAX_ENTRIES) {
      c.fail(`${tensorCount} tensors and ${kvCount} key/values: over the limit of ${MAX_ENTRIES} each`);
    }
    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, GgufValueType>();
    const metadataItemTypes = new Map<string, GgufValueType>();
    for (let i = 0; i < kvCount; i++) {
      const key = await readString(c, `metadata key ${i}`);
      if (metadata.has(key)) c.fail(`metadata key '${key}' appears twice`);
      const type = valueType(c, await c.u32At(`metadata '${key}' value type`), `metadata '${key}'`);
      metadata.set(key, await readValue(c, type, `metadata '${key}'`, 0, (item) => metadataItemTypes.set(key, item)));
      metadataTypes.set(key, type);
    }
    const alignment = (metadata.get('general.alignment') ?? DEFAULT_ALIGNMENT) as number;
    const alignmentType = metadataTypes.get('general.alignment') ?? 'u32';
    if (alignmentType !== 'u32' || !isPowerOfTwo(alignment)) {
      c.fail(`general.alignment must be a u32 power of two, found ${alignmentType} ${String(alignment)}`);
    }
    const infos: RawTensorInfo[] = [];
    for (let i = 0; i < tensorCount; i++) infos.push(await readTensorInfo(c, i));
    const dataOffset = alignUp(c.pos, alignment);
    const tensors = new Map<string, TensorInfo>();
    for (const { offset, ...info } of infos) {
      const where = `tensor '${info.name}'`;
      if (tensors.has(info.name)) c.fail(`${where} appears twice`);
      if (offset % alignment !== 0) {
        c.fail(`${where} data offset ${offset} is not a multiple of alignment ${alignment}`);
      }
      const byteOffset = dataOffset + offset;
      if (byteOffset + info.byteLength > size) {
        const range = `[offset ${byteOffset}, ${info.byteLength} bytes]`;
        c.fail(`${where} data ${range} ends past the end of the file (${size} bytes)`);
      }
      tensors.set(info.name, { ...info, byteOffset });
    }
    const store = new FileTensorStore('gguf', tensors, new Map([[path, handle]]));
    return Object.assign(store, { version, alignment, dataOffset, metadata, metadataTypes, metadataItemTypes }) as GgufFile;
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
}

/** Little-endian byte builder for the writer: one growing buffer. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  private length = 0;

  /** Makes room for `n` bytes and calls `write` with the buffer and their offset. */
  fixed(n: number, write: (b: Buffer, at: number) => void): void {
    if (this.length + n > this.buf.length) {
      const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    write(this.buf, this.length);
    this.length += n;
  }

  u32(v: number): void {
    this.fixed(4, (b, at) => b.writeUInt32LE(v, at));
  }

  u64(v: number | bigint): void {
    this.fixed(8, (b, at) => b.writeBigUInt64LE(BigInt(v), at));
  }

  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(n);
    this.fixed(n, (b, at) => b.write(s, at, 'utf8'));
  }

  /** The bytes so far, zero-padded to a multiple of `alignment`. */
  padded(alignment: number): Buffer {
    this.fixed(alignUp(this.length, alignment) - this.length, () => undefined); // the buffer starts zeroed
    return this.buf.subarray(0, this.length);
  }
}

type InputCode = 'ERR_DYNAMOE_TYPE' | 'ERR_DYNAMOE_VALUE';

function badValue(code: InputCode, where: string, expected: string, value: unknown): never {
  const shown = typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value);
  throw new DynamoeError(code, `writeGguf: ${where} must be ${expected}, got ${shown}`);
}

/** Encodes one value (without its type id) after checking it fits its type. */
function encodeValue(out: Bytes, type: GgufValueType, value: unknown, where: string): void {
  const range = INT_RANGES[type];
  if (range !== undefined) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < range[0] || value > range[1]) {
      const code = typeof value === 'number' ? 'ERR_DYNAMOE_VALUE' : 'ERR_DYNAMOE_TYPE';
      badValue(code, where, `an integer in [${range[0]}, ${range[1]}] (${type})`, value);
    }
    const size = FIXED_BYTES[type] as number;
    out.fixed(size, (b, at) => (type[0] === 'u' ? b.writeUIntLE(value, at, size) : b.writeIntLE(value, at, size)));
  } else if (type === 'u64' || type === 'i64') {
    const isInteger = typeof value === 'bigint' || (typeof value === 'number' && Number.isSafeInteger(value));
    const big = isInteger ? BigInt(value as number | bigint) : 0n;
    if (!isInteger || big < BIG_RANGES[type][0] || big > BIG_RANGES[type][1]) {
      const code = isInteger ? 'ERR_DYNAMOE_VALUE' : 'ERR_DYNAMOE_TYPE';
      badValue(code, where, `a bigint or safe integer in ${type}'s range`, value);
    }
    out.fixed(8, (b, at) => (type === 'u64' ? b.writeBigUInt64LE(big, at) : b.writeBigInt64LE(big, at)));
  } else if (type === 'f32' || type === 'f64') {
    if (typeof value !== 'number') badValue('ERR_DYNAMOE_TYPE', where, `a number (${type})`, value);
    if (type === 'f32') out.fixed(4, (b, at) => b.writeFloatLE(value, at));
    else out.fixed(8, (b, at) => b.writeDoubleLE(value, at));
  } else if (type === 'bool') {
    if (typeof value !== 'boolean') badValue('ERR_DYNAMOE_TYPE', where, 'a boolean', value);
    out.fixed(1, (b, at) => b.writeUInt8(value ? 1 : 0, at));
  } else if (type === 'string') {
    if (typeof value !== 'string') badValue('ERR_DYNAMOE_TYPE', where, 'a string', value);
    out.string(value);
  } else {
    const array = value as { type?: unknown; itemType?: unknown; value?: unknown };
    const itemType = VALUE_TYPES.find((t) => t === array?.itemType);
    if (array?.type !== 'array' || itemType === undefined || !Array.isArray(array.value)) {
      badValue('ERR_DYNAMOE_TYPE', where, "{ type: 'array', itemType, value: [...] }", value);
    }
    out.u32(VALUE_TYPES.indexOf(itemType));
    out.u64(array.value.length);
    array.value.forEach((item: unknown, i: number) => encodeValue(out, itemType, item, `${where}[${i}]`));
  }
}

/** The metadata to write: the caller's, plus `general.alignment` when the alignment is not the default. */
function metadataWithAlignment(options: GgufWriteOptions, alignment: number): (readonly [string, GgufTypedValue])[] {
  const { metadata = [] } = options;
  if (!Array.isArray(metadata)) badValue('ERR_DYNAMOE_TYPE', 'metadata', 'an array of [key, typed value]', metadata);
  const given = metadata.find(([key]) => key === 'general.alignment');
  if (given !== undefined && (given[1]?.type !== 'u32' || given[1].value !== alignment)) {
    const expected = `{ type: 'u32', value: ${alignment} } (the alignment option)`;
    badValue('ERR_DYNAMOE_VALUE', 'metadata general.alignment', expected, given[1]);
  }
  if (given !== undefined || alignment === DEFAULT_ALIGNMENT) return [...metadata];
  return [...metadata, ['general.alignment', { type: 'u32', value: alignment }]];
}

/**
 * Writes a GGUF v3 file (replacing it atomically) that llama.cpp can read: metadata with explicit value types, then
 * f32/f16/bf16 tensors (`shape` row-major; written as ggml ne, fastest first), each aligned to `alignment`.
 * @throws DynamoeError ERR_DYNAMOE_TYPE / _DTYPE / _SHAPE / _VALUE for bad input, ERR_DYNAMOE_IO when writing fails
 */
export async function writeGguf(path: string, options: GgufWriteOptions): Promise<void> {
  const { tensors, alignment = DEFAULT_ALIGNMENT } = options ?? ({} as GgufWriteOptions);
  const views = checkTensorInputs(tensors, 'writeGguf');
  if (!isPowerOfTwo(alignment)) badValue('ERR_DYNAMOE_VALUE', 'alignment', 'a power of two', alignment);
  const entries = metadataWithAlignment(options, alignment);
  const header = new Bytes();
  header.fixed(4, (b, at) => b.write('GGUF', at, 'latin1'));
  header.u32(3);
  header.u64(tensors.length);
  header.u64(entries.length);
  const keys = new Set<string>();
  for (const [key, typed] of entries) {
    if (typeof key !== 'string' || key.length === 0 || keys.has(key)) {
      badValue('ERR_DYNAMOE_VALUE', 'metadata key', 'a unique non-empty string', key);
    }
    keys.add(key);
    const type = VALUE_TYPES.find((t) => t === typed?.type);
    if (type === undefined) badValue('ERR_DYNAMOE_TYPE', `metadata '${key}'`, '{ type, value } of a GGUF type', typed);
    header.string(key);
    header.u32(VALUE_TYPES.indexOf(type));
    encodeValue(header, type, type === 'array' ? typed : typed.value, `metadata '${key}'`);
  }
  let offset = 0;
  tensors.forEach(({ name, dtype, shape }, i) => {
    if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
      badValue('ERR_DYNAMOE_VALUE', `tensor ${i} name`, `at most ${MAX_NAME_BYTES} bytes (llama.cpp's limit)`, name);
    }
    if (shape.length < 1 || shape.length > MAX_DIMS) {
      const message = `writeGguf: tensor '${name}' has ${shape.length} dimensions, expected 1..${MAX_DIMS}`;
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', message);
    }
    header.string(name);
    header.u32(shape.length);
    for (let d = shape.length - 1; d >= 0; d--) header.u64(shape[d]);
    header.u32(WRITE_TYPE[dtype]);
    header.u64(offset);
    offset += alignUp(views[i].length, alignment);
  });
  const headerBytes = header.padded(alignment);
  await writeAtomically(path, async (handle) => {
    await writeFully(handle, headerBytes);
    for (const view of views) {
      await writeFully(handle, view);
      await writeFully(handle, Buffer.alloc(alignUp(view.length, alignment) - view.length));
    }
  });
}

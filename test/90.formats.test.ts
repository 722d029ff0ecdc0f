// safetensors and GGUF readers/writers: exact round trips (bits, shapes, every GGUF metadata type, sharded
// safetensors, alignment), files built byte by byte here (independently of the writers) to pin the layouts, and
// malformed files, each of which must fail with a stable code and a message saying what is wrong, without
// allocating what a lying header asks for.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoeError, ErrorCode } from '../lib/errors';
import { GgufTypedValue, openGguf, writeGguf } from '../lib/formats/gguf';
import {
  openSafetensors,
  writeSafetensors,
  writeSafetensorsIndex,
  writeSafetensorsSharded,
} from '../lib/formats/safetensors';
import { TensorInput, TensorStore } from '../lib/formats/tensor-store';
import { FusedExpertsStore } from '../lib/model/fused-experts-store';
import { RowSplitStore } from '../lib/model/row-split-store';
import { typedArrayTag } from './helpers';
import { Rng } from './reference';

let dir: string;
let fileCounter = 0;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-formats-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A fresh path in the temporary directory. */
function tmp(name: string): string {
  return path.join(dir, `${fileCounter++}-${name}`);
}

function writeBytes(name: string, bytes: Buffer | Uint8Array): string {
  const file = tmp(name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Normal f32 values led by the special cases: signed zeros, infinities, a NaN payload, subnormals, extremes. */
function f32Data(rng: Rng, n: number): Float32Array {
  const out = rng.normalArray(n, 3);
  const special = new Uint32Array([
    0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc12345, 0x00000001, 0x807fffff, 0x7f7fffff,
  ]);
  out.set(new Float32Array(special.buffer).subarray(0, Math.min(n, special.length)));
  return out;
}

/** Arbitrary 16-bit patterns (NaNs and subnormals included): f16/bf16 data must come back bit for bit. */
function bitsData(rng: Rng, n: number): Uint16Array {
  return Uint16Array.from({ length: n }, () => rng.int(0, 0xffff));
}

function tensor(rng: Rng, name: string, dtype: TensorInput['dtype'], shape: number[]): TensorInput {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: dtype === 'f32' ? f32Data(rng, n) : bitsData(rng, n) };
}

function bytesOf(data: Float32Array | Uint16Array | Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Reads every tensor and checks it against the input bit for bit, in fresh, exactly sized, aligned memory. */
async function expectTensors(store: TensorStore, inputs: TensorInput[]): Promise<void> {
  expect(new Set(store.tensors.keys())).toEqual(new Set(inputs.map((t) => t.name)));
  for (const input of inputs) {
    const info = store.tensors.get(input.name)!;
    const { name, dtype, shape } = input;
    expect(info).toMatchObject({ name, dtype, shape, byteLength: input.data.byteLength });
    const out = await store.read(input.name);
    expect(out).toMatchObject({ name: input.name, dtype: input.dtype, shape: input.shape });
    expect(typedArrayTag(out.data)).toBe(input.dtype === 'f32' ? 'Float32Array' : 'Uint16Array');
    expect(out.data.byteOffset).toBe(0);
    expect(out.data.buffer.byteLength).toBe(input.data.byteLength);
    expect(bytesOf(out.data).equals(bytesOf(input.data))).toBe(true);
  }
}

async function expectError(promise: Promise<unknown>, code: ErrorCode, ...fragments: string[]): Promise<void> {
  let error: unknown;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(DynamoeError);
  expect((error as DynamoeError).code).toBe(code);
  for (const fragment of fragments) expect((error as DynamoeError).message).toContain(fragment);
}

/** Little-endian bytes, for building files by hand. */
class Raw {
  private readonly parts: Buffer[] = [];

  u8(v: number): this {
    return this.put(Buffer.from([v]));
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return this.put(b);
  }
  u64(v: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return this.put(b);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.u64(b.length).put(b);
  }
  put(b: Buffer | Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  padTo(alignment: number): this {
    const length = this.length;
    return this.put(Buffer.alloc(Math.ceil(length / alignment) * alignment - length));
  }
  get length(): number {
    return this.parts.reduce((sum, p) => sum + p.length, 0);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** GGUF preamble: magic, version, tensor and kv counts. */
function ggufStart(tensors: number | bigint, kvs: number | bigint, version = 3): Raw {
  return new Raw().put(Buffer.from('GGUF')).u32(version).u64(tensors).u64(kvs);
}

/** A GGUF tensor info record: ne is in ggml order (fastest first). */
function tensorInfo(raw: Raw, name: string, ne: number[], type: number, offset: number): Raw {
  raw.str(name).u32(ne.length);
  for (const n of ne) raw.u64(n);
  return raw.u32(type).u64(offset);
}

/** A sharded-checkpoint index naming `weightMap`. */
function indexFile(name: string, weightMap: Record<string, string>): string {
  return writeBytes(name, Buffer.from(JSON.stringify({ weight_map: weightMap })));
}

/** A safetensors file from a header object and a data section. */
function safetensorsBytes(header: unknown, data: Buffer = Buffer.alloc(0)): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  return new Raw().u64(json.length).put(json).put(data).bytes();
}

describe('safetensors round trips', () => {
  const rng = new Rng(90);
  const inputs = [
    tensor(rng, 'blk.0.ffn_up', 'bf16', [3, 5, 7]),
    tensor(rng, 'router', 'f32', [4, 6]),
    tensor(rng, 'odd.f16', 'f16', [1, 3]),
    tensor(rng, 'scalar', 'f32', []),
    tensor(rng, 'empty', 'f16', [0, 4]),
    tensor(rng, 'every.bf16.pattern', 'bf16', [256, 256]),
  ];
  inputs[5].data = Uint16Array.from({ length: 65536 }, (_, i) => i);

  it('writes and reads f32, f16 and bf16 tensors exactly, with shapes, metadata and aligned data', async () => {
    const file = tmp('model.safetensors');
    await writeSafetensors(file, inputs, { format: 'pt', note: 'héllo' });
    const store = await openSafetensors(file);
    expect(store.format).toBe('safetensors');
    expect(Object.fromEntries(store.metadata)).toEqual({ format: 'pt', note: 'héllo' });
    await expectTensors(store, inputs);
    for (const info of store.tensors.values()) {
      expect(info.file).toBe(file);
      expect(info.byteOffset % (info.dtype === 'f32' ? 4 : 2)).toBe(0); // largest elements first keeps all aligned
    }
    // The header is JSON padded with spaces so the data section starts 8-byte aligned; offsets are contiguous.
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'héllo' });
    expect(header.router).toEqual({ dtype: 'F32', shape: [4, 6], data_offsets: [0, 96] });
    expect(header['odd.f16'].dtype).toBe('F16');
    expect(header['every.bf16.pattern'].dtype).toBe('BF16');
    const ends = Object.values(header).flatMap((e) => ((e as { data_offsets?: number[] }).data_offsets ?? []));
    expect(Math.max(...ends)).toBe(bytes.length - 8 - headerLength);
    await store.close();
    await store.close();
    await expectError(store.read('router'), 'ERR_DYNAMOE_DISPOSED', 'closed');
  });

  it('reads a file laid out by hand: offsets in any order, __metadata__, an unsupported dtype', async () => {
    const a = Float32Array.from([1.5, -2, 3.25]);
    const b = Uint16Array.from([0x3c00, 0xbc00]);
    const data = Buffer.concat([bytesOf(b), Buffer.alloc(8), bytesOf(a)]);
    const file = writeBytes(
      'hand.safetensors',
      safetensorsBytes(
        {
          a: { dtype: 'F32', shape: [3], data_offsets: [12, 24] },
          ids: { dtype: 'I64', shape: [1], data_offsets: [4, 12] },
          b: { dtype: 'F16', shape: [2, 1], data_offsets: [0, 4] },
          __metadata__: { k: 'v' },
        },
        data,
      ),
    );
    const store = await openSafetensors(file);
    expect(store.tensors.get('ids')).toMatchObject({ dtype: 'I64', shape: [1], byteLength: 8 });
    expect(Array.from((await store.read('a')).data)).toEqual([1.5, -2, 3.25]);
    expect(Array.from((await store.read('b')).data)).toEqual([0x3c00, 0xbc00]);
    await expectError(store.read('ids'), 'ERR_DYNAMOE_UNSUPPORTED', "'ids'", 'I64', file);
    await expectError(store.read('nope'), 'ERR_DYNAMOE_FORMAT', "no tensor 'nope'", file);
    // Concurrent reads of one handle use positioned reads and do not interfere.
    const many = await Promise.all([0, 1, 2, 3].map((i) => store.read(i % 2 ? 'a' : 'b')));
    expect(many.map((t) => t.data.length)).toEqual([2, 3, 2, 3]);
    await store.close();
  });

  it('opens a directory holding model.safetensors', async () => {
    const modelDir = tmp('single');
    fs.mkdirSync(modelDir);
    await writeSafetensors(path.join(modelDir, 'model.safetensors'), inputs.slice(0, 2));
    const store = await openSafetensors(modelDir);
    await expectTensors(store, inputs.slice(0, 2));
    await store.close();
  });

  it('writes and reads a sharded checkpoint through its index (directory, index path, one shard alone)', async () => {
    const modelDir = tmp('sharded');
    const shards = await writeSafetensorsSharded(modelDir, inputs, { maxShardBytes: 200, metadata: { format: 'pt' } });
    expect(shards.map((s) => path.basename(s))).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
    ]);
    const index = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(inputs.reduce((sum, t) => sum + t.data.byteLength, 0));
    // Greedy packing in order: 210 bytes alone, then 96 + 6 + 4 + 0, then 128 KiB alone.
    expect(index.weight_map).toEqual({
      'blk.0.ffn_up': 'model-00001-of-00003.safetensors',
      router: 'model-00002-of-00003.safetensors',
      'odd.f16': 'model-00002-of-00003.safetensors',
      scalar: 'model-00002-of-00003.safetensors',
      empty: 'model-00002-of-00003.safetensors',
      'every.bf16.pattern': 'model-00003-of-00003.safetensors',
    });
    for (const target of [modelDir, path.join(modelDir, 'model.safetensors.index.json')]) {
      const store = await openSafetensors(target);
      await expectTensors(store, inputs);
      expect(store.tensors.get('router')!.file).toBe(shards[1]);
      expect(Object.fromEntries(store.metadata)).toEqual({ format: 'pt' });
      await store.close();
    }
    const one = await openSafetensors(shards[1]);
    await expectTensors(one, inputs.slice(1, 5));
    await one.close();
  });

  it('writeSafetensorsIndex ties shards written one by one', async () => {
    const modelDir = tmp('index');
    fs.mkdirSync(modelDir);
    await writeSafetensors(path.join(modelDir, 'a.safetensors'), [inputs[0]]);
    await writeSafetensors(path.join(modelDir, 'b.safetensors'), [inputs[1], inputs[2]]);
    const shards = { 'a.safetensors': ['blk.0.ffn_up'], 'b.safetensors': ['router', 'odd.f16'] };
    await writeSafetensorsIndex(modelDir, shards);
    const store = await openSafetensors(modelDir);
    await expectTensors(store, inputs.slice(0, 3));
    await expectError(store.read('nope'), 'ERR_DYNAMOE_FORMAT', "no tensor 'nope'", 'a.safetensors', 'b.safetensors');
    await store.close();
  });
});

describe('safetensors errors', () => {
  const good = { x: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] } };
  const cases: [string, () => Buffer, ErrorCode, string[]][] = [
    ['empty file', () => Buffer.alloc(0), 'ERR_DYNAMOE_FORMAT', ['0 bytes', 'too short']],
    ['truncated header length', () => Buffer.alloc(5), 'ERR_DYNAMOE_FORMAT', ['5 bytes', 'too short']],
    ['header length past the end', () => safetensorsBytes(good, Buffer.alloc(24)).subarray(0, 20),
      'ERR_DYNAMOE_FORMAT', ['past the end', '20 bytes']],
    ['header length 2^63', () => new Raw().u64(2n ** 63n).put(Buffer.alloc(64)).bytes(),
      'ERR_DYNAMOE_FORMAT', ['9223372036854775808', 'past the end']],
    ['invalid JSON', () => new Raw().u64(5).put(Buffer.from('{"x":')).bytes(),
      'ERR_DYNAMOE_FORMAT', ['not valid JSON']],
    ['header not an object', () => safetensorsBytes([1, 2]),
      'ERR_DYNAMOE_FORMAT', ['must be a JSON object', 'an array']],
    ['unknown dtype', () => safetensorsBytes({ x: { ...good.x, dtype: 'Q9' } }, Buffer.alloc(24)),
      'ERR_DYNAMOE_FORMAT', ["tensor 'x'", 'unknown dtype "Q9"']],
    ['shape / byte size mismatch', () => safetensorsBytes({ x: { ...good.x, shape: [2, 4] } }, Buffer.alloc(24)),
      'ERR_DYNAMOE_FORMAT', ["tensor 'x'", '[2, 4]', 'needs 32 bytes', 'give 24']],
    ['negative shape entry', () => safetensorsBytes({ x: { ...good.x, shape: [-2, -3] } }, Buffer.alloc(24)),
      'ERR_DYNAMOE_FORMAT', ['non-negative integers', '[-2,-3]']],
    ['data past the end', () => safetensorsBytes(good, Buffer.alloc(20)),
      'ERR_DYNAMOE_FORMAT', ["tensor 'x'", '[0, 24]', 'data section (20 bytes)']],
    ['begin after end', () => safetensorsBytes({ x: { ...good.x, data_offsets: [24, 0] } }, Buffer.alloc(24)),
      'ERR_DYNAMOE_FORMAT', ['[24, 0]', 'begin after']],
    ['bad data_offsets', () => safetensorsBytes({ x: { ...good.x, data_offsets: [0] } }, Buffer.alloc(24)),
      'ERR_DYNAMOE_FORMAT', ['data_offsets must be']],
    ['non-string metadata', () => safetensorsBytes({ ...good, __metadata__: { n: 1 } }, Buffer.alloc(24)),
      'ERR_DYNAMOE_FORMAT', ["'n' must be a string"]],
  ];
  it.each(cases)('%s', async (name, make, code, fragments) => {
    const file = writeBytes(`${name.replace(/\W+/g, '-')}.safetensors`, make());
    await expectError(openSafetensors(file), code, file, ...fragments);
  });

  it('missing file, directory without a model, index naming a missing shard: ERR_DYNAMOE_IO', async () => {
    const missing = path.join(dir, 'no-such.safetensors');
    await expectError(openSafetensors(missing), 'ERR_DYNAMOE_IO', missing, 'ENOENT');
    const emptyDir = tmp('empty-dir');
    fs.mkdirSync(emptyDir);
    await expectError(openSafetensors(emptyDir), 'ERR_DYNAMOE_IO', emptyDir, 'model.safetensors.index.json');
    const index = indexFile('missing-shard.index.json', { x: 'gone.safetensors' });
    await expectError(openSafetensors(index), 'ERR_DYNAMOE_IO', 'gone.safetensors', 'ENOENT');
  });

  it('index errors: shard outside the directory, tensor not in its shard, no weight_map', async () => {
    const escape = indexFile('escape.index.json', { x: '../x.safetensors' });
    await expectError(openSafetensors(escape), 'ERR_DYNAMOE_FORMAT', "weight_map['x']", '../x.safetensors');
    const shard = writeBytes('shard.safetensors', safetensorsBytes(good, Buffer.alloc(24)));
    const wrong = indexFile('wrong.index.json', { y: path.basename(shard) });
    await expectError(openSafetensors(wrong), 'ERR_DYNAMOE_FORMAT', "tensor 'y'", 'no such tensor');
    const none = writeBytes('none.index.json', Buffer.from('{"metadata": {}}'));
    await expectError(openSafetensors(none), 'ERR_DYNAMOE_FORMAT', 'weight_map');
  });

  it('writer input errors', async () => {
    const file = tmp('bad-input.safetensors');
    const x = { name: 'x', dtype: 'f32' as const, shape: [2], data: new Float32Array(2) };
    const write = (tensors: TensorInput[]) => writeSafetensors(file, tensors);
    await expectError(write([{ ...x, dtype: 'bf16' }]), 'ERR_DYNAMOE_DTYPE', 'Uint16Array', 'Float32Array');
    await expectError(write([{ ...x, shape: [3] }]), 'ERR_DYNAMOE_SHAPE', '[3]', '3 elements', 'data has 2');
    await expectError(write([x, x]), 'ERR_DYNAMOE_VALUE', 'duplicate');
    const sharded = writeSafetensorsSharded(tmp('d'), [x], { maxShardBytes: 0 });
    await expectError(sharded, 'ERR_DYNAMOE_VALUE', 'maxShardBytes');
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('GGUF round trips', () => {
  const rng = new Rng(91);
  const metadata: [string, GgufTypedValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: 'tëst ✓ 模型' }],
    ['u8', { type: 'u8', value: 255 }],
    ['i8', { type: 'i8', value: -128 }],
    ['u16', { type: 'u16', value: 65535 }],
    ['i16', { type: 'i16', value: -32768 }],
    ['llama.expert_count', { type: 'u32', value: 4294967295 }],
    ['i32', { type: 'i32', value: -2147483648 }],
    ['f32', { type: 'f32', value: 0.1 }],
    ['bool.true', { type: 'bool', value: true }],
    ['bool.false', { type: 'bool', value: false }],
    ['u64.safe', { type: 'u64', value: 2 ** 53 - 1 }],
    ['u64.big', { type: 'u64', value: 2n ** 64n - 1n }],
    ['i64.small', { type: 'i64', value: -(2n ** 63n) }],
    ['i64.safe', { type: 'i64', value: -5 }],
    ['f64', { type: 'f64', value: Math.PI }],
    ['tokens', { type: 'array', itemType: 'string', value: ['<s>', '', 'ünï', ' hello'] }],
    ['scores', { type: 'array', itemType: 'f32', value: [0, -1.5, 1e30] }],
    ['flags', { type: 'array', itemType: 'bool', value: [true, false, true] }],
    ['u64s', { type: 'array', itemType: 'u64', value: [0, 2n ** 64n - 1n] }],
    ['i8s', { type: 'array', itemType: 'i8', value: [-1, 0, 127] }],
    ['empty', { type: 'array', itemType: 'u32', value: [] }],
    ['nested', { type: 'array', itemType: 'array', value: [
      { type: 'array', itemType: 'string', value: ['a', 'b'] },
      { type: 'array', itemType: 'i16', value: [-3] },
      { type: 'array', itemType: 'array', value: [{ type: 'array', itemType: 'f64', value: [0.5] }] },
    ] }],
    ['big.u32s', { type: 'array', itemType: 'u32', value: Array.from({ length: 300_000 }, (_, i) => i * 7) }],
    ['many.strings', { type: 'array', itemType: 'string', value: Array.from({ length: 60_000 }, (_, i) => `t-${i}`) }],
  ];
  const expected: Record<string, unknown> = {
    u8: 255, i8: -128, u16: 65535, i16: -32768, 'llama.expert_count': 4294967295, i32: -2147483648,
    f32: Math.fround(0.1), 'bool.true': true, 'bool.false': false, 'u64.safe': 2 ** 53 - 1, 'u64.big': 2n ** 64n - 1n,
    'i64.small': -(2n ** 63n), 'i64.safe': -5, f64: Math.PI, scores: [0, -1.5, Math.fround(1e30)],
    u64s: [0, 2n ** 64n - 1n], empty: [], nested: [['a', 'b'], [-3], [[0.5]]],
  };
  const tensors = [
    tensor(rng, 'token_embd.weight', 'f32', [11, 8]),
    tensor(rng, 'blk.0.ffn_up_exps.weight', 'bf16', [4, 6, 8]),
    tensor(rng, 'blk.0.ffn_gate_inp.weight', 'f16', [4, 8]),
    tensor(rng, 'odd', 'f16', [3]),
    tensor(rng, 'four.d', 'f32', [2, 1, 3, 2]),
  ];

  it('writes and reads every metadata value type and f32/f16/bf16 tensors exactly', async () => {
    const file = tmp('model.gguf');
    await writeGguf(file, { metadata, tensors });
    const gguf = await openGguf(file);
    expect(gguf).toMatchObject({ format: 'gguf', version: 3, alignment: 32 });
    expect([...gguf.metadata.keys()]).toEqual(metadata.map(([key]) => key));
    for (const [key, typed] of metadata) {
      expect(gguf.metadataTypes.get(key)).toBe(typed.type);
      const value = gguf.metadata.get(key);
      const want = key in expected ? expected[key] : typed.value;
      if (Array.isArray(want) && want.length > 1000) {
        // Long arrays (read across several 1 MiB chunks) compared item by item: toEqual is slow on them.
        expect(Array.isArray(value) && value.length === want.length && value.every((v, i) => v === want[i])).toBe(true);
      } else {
        expect(value).toEqual(want);
      }
    }
    await expectTensors(gguf, tensors);
    expect(gguf.dataOffset % 32).toBe(0);
    for (const info of gguf.tensors.values()) expect(info.byteOffset % 32).toBe(0);
    await expectError(gguf.read('nope'), 'ERR_DYNAMOE_FORMAT', "no tensor 'nope'", file);
    await gguf.close();
  });

  it('writes the ggml layout: ne fastest first, offsets relative to the 32-aligned data section', async () => {
    const file = tmp('layout.gguf');
    const data = Float32Array.from([1, 2, 3, 4, 5, 6]);
    await writeGguf(file, { tensors: [{ name: 'w', dtype: 'f32', shape: [2, 3], data }] });
    const bytes = fs.readFileSync(file);
    const header = tensorInfo(ggufStart(1, 0), 'w', [3, 2], 0, 0).padTo(32).bytes();
    expect(bytes.subarray(0, header.length).equals(header)).toBe(true);
    expect(bytes.subarray(header.length).equals(Buffer.concat([bytesOf(data), Buffer.alloc(8)]))).toBe(true);

    // Metadata: key, u32 type id, value; arrays as item type, u64 count, items (inner arrays the same, untagged).
    await writeGguf(file, {
      metadata: [
        ['n', { type: 'array', itemType: 'array', value: [{ type: 'array', itemType: 'u8', value: [7] }] }],
        ['b', { type: 'bool', value: true }],
        ['s', { type: 'string', value: 'é' }],
        ['q', { type: 'i64', value: -2 }],
      ],
      tensors: [],
    });
    const expected = ggufStart(0, 4).str('n').u32(9).u32(9).u64(1).u32(0).u64(1).u8(7).str('b').u32(7).u8(1)
      .str('s').u32(8).str('é').str('q').u32(11).u64(2n ** 64n - 2n).padTo(32).bytes();
    expect(fs.readFileSync(file).equals(expected)).toBe(true);
  });

  it('honours a non-default alignment on write and read (general.alignment)', async () => {
    const file = tmp('align64.gguf');
    await writeGguf(file, { metadata: metadata.slice(0, 2), tensors, alignment: 64 });
    const gguf = await openGguf(file);
    expect(gguf.alignment).toBe(64);
    expect(gguf.metadata.get('general.alignment')).toBe(64);
    expect(gguf.metadataTypes.get('general.alignment')).toBe('u32');
    expect(gguf.dataOffset % 64).toBe(0);
    for (const info of gguf.tensors.values()) expect(info.byteOffset % 64).toBe(0);
    await expectTensors(gguf, tensors);
    await gguf.close();
  });

  it('reads a v2 file built by hand: alignment 16, reversed ne, quantized tensors as their blocks, others refused', async () => {
    const raw = ggufStart(4, 1, 2).str('general.alignment').u32(4).u32(16);
    tensorInfo(raw, 'w', [3, 2], 0, 0);
    tensorInfo(raw, 'q', [256, 2], 12, 32); // Q4_K: 144 bytes per 256 elements
    tensorInfo(raw, 'q8', [64], 8, 320); // Q8_0: 34 bytes per 32 elements
    tensorInfo(raw, 'q81', [32], 9, 400); // Q8_1: a type dynamoe does not run
    const w = Float32Array.from([1, 2, 3, 4, 5, 6]);
    raw.padTo(16).put(bytesOf(w)).put(Buffer.alloc(8)).put(Buffer.alloc(288, 7)).put(Buffer.alloc(68)).put(Buffer.alloc(12))
      .put(Buffer.alloc(36));
    const file = writeBytes('hand.gguf', raw.bytes());
    const gguf = await openGguf(file);
    expect(gguf.version).toBe(2);
    expect(gguf.alignment).toBe(16);
    expect(gguf.tensors.get('w')).toMatchObject({ dtype: 'f32', shape: [2, 3], byteLength: 24 });
    const q = { dtype: 'q4_k', shape: [2, 256], byteLength: 288, byteOffset: gguf.dataOffset + 32 };
    expect(gguf.tensors.get('q')).toMatchObject(q);
    expect(gguf.tensors.get('q8')).toMatchObject({ dtype: 'q8_0', shape: [64], byteLength: 68 });
    expect(gguf.tensors.get('q81')).toMatchObject({ dtype: 'Q8_1', shape: [32], byteLength: 36 });
    expect(Array.from((await gguf.read('w')).data)).toEqual([1, 2, 3, 4, 5, 6]);
    const blocks = await gguf.read('q');
    expect(blocks.dtype).toBe('q4_k');
    expect(Array.from(blocks.data as Uint8Array)).toEqual(new Array(288).fill(7));
    await expectError(gguf.read('q81'), 'ERR_DYNAMOE_UNSUPPORTED', file, "'q81'", 'Q8_1');
    await gguf.close();
  });

  it('a file truncated after it was opened fails the read with ERR_DYNAMOE_IO', async () => {
    const file = tmp('shrinks.gguf');
    await writeGguf(file, { tensors });
    const gguf = await openGguf(file);
    fs.truncateSync(file, gguf.dataOffset + 8);
    await expectError(gguf.read('token_embd.weight'), 'ERR_DYNAMOE_IO', file, 'ended');
    await gguf.close();
  });
});

describe('GGUF errors', () => {
  const kv = (raw: Raw) => raw.str('k'); // a key, before its type and value
  const oneTensor = (ne: number[], type: number, offset: number, dataBytes: number, alignment = 32) =>
    tensorInfo(ggufStart(1, 0), 'blk.0.ffn_up_exps.weight', ne, type, offset)
      .padTo(alignment)
      .put(Buffer.alloc(dataBytes))
      .bytes();
  let nested = new Raw().u32(9).u64(1);
  for (let i = 0; i < 30; i++) nested = nested.u32(9).u64(1);
  const cases: [string, () => Buffer, ErrorCode, string[]][] = [
    ['empty file', () => Buffer.alloc(0), 'ERR_DYNAMOE_FORMAT', ['empty']],
    ['truncated preamble', () => Buffer.from('GGUF\x03\x00'),
      'ERR_DYNAMOE_FORMAT', ['magic and version', 'needs 8 bytes', '6 bytes']],
    ['truncated in a key/value', () => kv(ggufStart(0, 1)).u32(4).u8(1).bytes(),
      'ERR_DYNAMOE_FORMAT', ["metadata 'k'", 'needs 4 bytes']],
    ['wrong magic', () => Buffer.from('GGML\x03\x00\x00\x00'), 'ERR_DYNAMOE_FORMAT', ['not a GGUF file', '"GGML"']],
    ['version 1', () => ggufStart(0, 0, 1).bytes(), 'ERR_DYNAMOE_UNSUPPORTED', ['version 1', 'expected 2 or 3']],
    ['version 4', () => ggufStart(0, 0, 4).bytes(), 'ERR_DYNAMOE_UNSUPPORTED', ['version 4']],
    ['big-endian', () => ggufStart(0, 0, 0x03000000).bytes(), 'ERR_DYNAMOE_UNSUPPORTED', ['big-endian']],
    ['2^60 tensors', () => ggufStart(2n ** 60n, 0).bytes(),
      'ERR_DYNAMOE_FORMAT', ['tensor count', '1152921504606846976', 'hold at most 0']],
    ['2^60 key/values', () => ggufStart(0, 2n ** 60n).put(Buffer.alloc(100)).bytes(),
      'ERR_DYNAMOE_FORMAT', ['key/value count', 'hold at most 7']],
    ['4 GiB key', () => ggufStart(0, 1).u64(2n ** 32n).put(Buffer.alloc(64)).bytes(),
      'ERR_DYNAMOE_FORMAT', ['metadata key 0 length', '4294967296']],
    ['4 GiB string value', () => kv(ggufStart(0, 1)).u32(8).u64(2n ** 32n).bytes(),
      'ERR_DYNAMOE_FORMAT', ["metadata 'k' length", '4294967296']],
    ['2^60-item array', () => kv(ggufStart(0, 1)).u32(9).u32(4).u64(2n ** 60n).put(Buffer.alloc(16)).bytes(),
      'ERR_DYNAMOE_FORMAT', ["metadata 'k' array length", 'hold at most 4']],
    ['2^60 nested arrays', () => kv(ggufStart(0, 1)).u32(9).u32(9).u64(2n ** 60n).bytes(),
      'ERR_DYNAMOE_FORMAT', ['array length']],
    ['arrays nested 32 deep', () => kv(ggufStart(0, 1)).u32(9).put(nested.bytes()).bytes(),
      'ERR_DYNAMOE_FORMAT', ['nests arrays deeper than 16']],
    ['unknown value type', () => kv(ggufStart(0, 1)).u32(13).u32(0).bytes(),
      'ERR_DYNAMOE_FORMAT', ["metadata 'k'", 'value type 13']],
    ['duplicate key', () => kv(kv(ggufStart(0, 2)).u32(0).u8(1)).u32(0).u8(2).bytes(),
      'ERR_DYNAMOE_FORMAT', ["'k' appears twice"]],
    ['alignment not a power of two', () => ggufStart(0, 1).str('general.alignment').u32(4).u32(24).bytes(),
      'ERR_DYNAMOE_FORMAT', ['general.alignment', 'u32 24']],
    ['alignment of the wrong type', () => ggufStart(0, 1).str('general.alignment').u32(5).u32(32).bytes(),
      'ERR_DYNAMOE_FORMAT', ['general.alignment', 'i32 32']],
    ['tensor data past the end', () => oneTensor([64, 16], 0, 0, 4000),
      'ERR_DYNAMOE_FORMAT',
      ["tensor 'blk.0.ffn_up_exps.weight' data [offset 96, 4096 bytes] ends past the end of the file (4096 bytes)"]],
    ['misaligned tensor offset', () => oneTensor([4], 0, 8, 64),
      'ERR_DYNAMOE_FORMAT', ['data offset 8', 'alignment 32']],
    ['5 dimensions', () => oneTensor([1, 1, 1, 1, 1], 0, 0, 4), 'ERR_DYNAMOE_FORMAT', ['5 dimensions', 'at most 4']],
    ['quantized row not whole blocks', () => oneTensor([100], 12, 0, 144),
      'ERR_DYNAMOE_FORMAT', ['Q4_K', 'ne[0] = 100', 'block size 256']],
    ['unknown ggml type', () => oneTensor([4], 200, 0, 16), 'ERR_DYNAMOE_UNSUPPORTED', ['ggml type 200']],
    ['duplicate tensor',
      () => tensorInfo(tensorInfo(ggufStart(2, 0), 't', [1], 0, 0), 't', [1], 0, 32).padTo(32).put(Buffer.alloc(64))
        .bytes(),
      'ERR_DYNAMOE_FORMAT', ["'t' appears twice"]],
  ];
  it.each(cases)('%s', async (name, make, code, fragments) => {
    const file = writeBytes(`${name.replace(/\W+/g, '-')}.gguf`, make());
    await expectError(openGguf(file), code, file, ...fragments);
  });

  it('missing file or a directory: ERR_DYNAMOE_IO naming the path and the OS error', async () => {
    const missing = path.join(dir, 'no-such.gguf');
    await expectError(openGguf(missing), 'ERR_DYNAMOE_IO', missing, 'ENOENT');
    await expectError(openGguf(dir), 'ERR_DYNAMOE_IO', dir, 'not a regular file');
  });

  it('writer input errors', async () => {
    const file = tmp('bad-input.gguf');
    const x: TensorInput = { name: 'x', dtype: 'f32', shape: [2], data: new Float32Array(2) };
    const write = (metadata: [string, GgufTypedValue][], tensors: TensorInput[] = [x], alignment?: number) =>
      writeGguf(file, { metadata, tensors, alignment });
    const notANumber = 'x' as unknown as number;
    await expectError(write([['k', { type: 'u8', value: 256 }]]), 'ERR_DYNAMOE_VALUE', "'k'", '[0, 255]', '256');
    await expectError(write([['k', { type: 'u32', value: notANumber }]]), 'ERR_DYNAMOE_TYPE', "metadata 'k'");
    await expectError(write([['k', { type: 'u64', value: -1n }]]), 'ERR_DYNAMOE_VALUE', "metadata 'k'", '-1n');
    const i8s: GgufTypedValue = { type: 'array', itemType: 'i8', value: [1, 200] };
    await expectError(write([['k', i8s]]), 'ERR_DYNAMOE_VALUE', "metadata 'k'[1]");
    await expectError(write([['k', { type: 'q' } as unknown as GgufTypedValue]]), 'ERR_DYNAMOE_TYPE', "metadata 'k'");
    const one: GgufTypedValue = { type: 'u8', value: 1 };
    await expectError(write([['k', one], ['k', one]]), 'ERR_DYNAMOE_VALUE', 'unique');
    await expectError(write([], [{ ...x, name: 'n'.repeat(64) }]), 'ERR_DYNAMOE_VALUE', '63 bytes');
    await expectError(write([], [{ ...x, shape: [1, 1, 1, 1, 2] }]), 'ERR_DYNAMOE_SHAPE', '5 dimensions');
    await expectError(write([], [x], 24), 'ERR_DYNAMOE_VALUE', 'power of two');
    const alignment64: GgufTypedValue = { type: 'u32', value: 64 };
    await expectError(write([['general.alignment', alignment64]]), 'ERR_DYNAMOE_VALUE', 'general.alignment');
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('fused tensors read as their row ranges (RowSplitStore)', () => {
  // A store over named arrays, counting the reads of each tensor.
  const memoryStore = (tensors: Array<{ name: string; dtype: string; shape: number[]; data: Float32Array | Uint16Array | Uint8Array }>) => {
    const reads = new Map<string, number>();
    const store: TensorStore = {
      format: 'memory',
      tensors: new Map(tensors.map((t) => [t.name, { name: t.name, dtype: t.dtype, shape: t.shape, file: 'memory', byteOffset: 0, byteLength: t.data.byteLength }])),
      read: async (name) => {
        reads.set(name, (reads.get(name) ?? 0) + 1);
        const t = tensors.find((x) => x.name === name);
        if (!t) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `no tensor '${name}'`);
        return { name, dtype: t.dtype as 'f32', shape: [...t.shape], data: t.data.slice() };
      },
      close: async () => undefined,
    };
    return { store, reads };
  };
  const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

  test('a matrix, a stacked matrix and a vector split into their parts, each part read as its own tensor', async () => {
    const { store, reads } = memoryStore([
      { name: 'qkv', dtype: 'f32', shape: [7, 3], data: iota(21) },
      { name: 'stacked', dtype: 'bf16', shape: [2, 4, 2], data: Uint16Array.from(iota(16)) },
      { name: 'bias', dtype: 'f32', shape: [7], data: iota(7) },
      { name: 'other', dtype: 'f32', shape: [2], data: iota(2) },
    ]);
    const split = new RowSplitStore(store, [
      { fused: 'qkv', parts: [{ name: 'q', rows: 3 }, { name: 'k', rows: 2 }, { name: 'v', rows: 2 }] },
      { fused: 'stacked', parts: [{ name: 'gate', rows: 1 }, { name: 'up', rows: 3 }] },
      { fused: 'bias', parts: [{ name: 'qb', rows: 4 }, { name: 'kb', rows: 3 }] },
    ]);
    expect([...split.tensors.keys()].sort()).toEqual(['gate', 'k', 'kb', 'other', 'q', 'qb', 'up', 'v']);
    expect(split.tensors.get('k')).toMatchObject({ shape: [2, 3], byteLength: 24 });
    expect(split.tensors.get('up')).toMatchObject({ shape: [2, 3, 2], byteLength: 24 });
    expect([...(await split.read('q')).data]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...(await split.read('k')).data]).toEqual([9, 10, 11, 12, 13, 14]);
    expect([...(await split.read('v')).data]).toEqual([15, 16, 17, 18, 19, 20]);
    // Rows 1..3 of each of the two [4][2] slices.
    const up = await split.read('up');
    expect(up.data).toBeInstanceOf(Uint16Array);
    expect([...up.data]).toEqual([2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15]);
    expect([...(await split.read('gate')).data]).toEqual([0, 1, 8, 9]);
    expect([...(await split.read('kb')).data]).toEqual([4, 5, 6]);
    expect([...(await split.read('other')).data]).toEqual([0, 1]);
    // Parts read one after the other share one read of their fused tensor.
    expect(Object.fromEntries(reads)).toEqual({ qkv: 1, stacked: 1, bias: 1, other: 1 });
  });

  test('quantized rows split whole, as bytes of whole blocks', async () => {
    // q8_0: 34 bytes a block of 32 values; 3 rows of 64 values.
    const data = Uint8Array.from({ length: 3 * 2 * 34 }, (_, i) => i % 251);
    const { store } = memoryStore([{ name: 'w', dtype: 'q8_0', shape: [3, 64], data }]);
    const split = new RowSplitStore(store, [{ fused: 'w', parts: [{ name: 'a', rows: 1 }, { name: 'b', rows: 2 }] }]);
    expect(split.tensors.get('b')).toMatchObject({ dtype: 'q8_0', shape: [2, 64], byteLength: 136 });
    expect([...(await split.read('a')).data]).toEqual([...data.subarray(0, 68)]);
    expect([...(await split.read('b')).data]).toEqual([...data.subarray(68)]);
  });

  test('a split whose rows do not add up, or whose tensor is absent, leaves the catalogue as it is', () => {
    const { store } = memoryStore([{ name: 'qkv', dtype: 'f32', shape: [7, 3], data: iota(21) }]);
    const split = new RowSplitStore(store, [
      { fused: 'qkv', parts: [{ name: 'q', rows: 3 }, { name: 'k', rows: 3 }] },
      { fused: 'absent', parts: [{ name: 'x', rows: 1 }] },
    ]);
    expect([...split.tensors.keys()]).toEqual(['qkv']);
  });
});

describe("transformers' fused experts read as stacked matrices (FusedExpertsStore)", () => {
  test('gate_up_proj [E][H][2F] gives gate and up [E][F][H], down_proj [E][F][H] gives [E][H][F]; each read once', async () => {
    const [E, H, F] = [2, 3, 2];
    const gateUp = Uint16Array.from({ length: E * H * 2 * F }, (_, i) => i);
    const down = Uint16Array.from({ length: E * F * H }, (_, i) => 100 + i);
    const reads: string[] = [];
    const data: Record<string, Uint16Array> = { gu: gateUp, d: down };
    const shapes: Record<string, number[]> = { gu: [E, H, 2 * F], d: [E, F, H] };
    const store: TensorStore = {
      format: 'memory',
      tensors: new Map(Object.keys(data).map((name) => [name, { name, dtype: 'bf16', shape: shapes[name], file: 'memory', byteOffset: 0, byteLength: data[name].byteLength }])),
      read: async (name) => (reads.push(name), { name, dtype: 'bf16', shape: shapes[name], data: data[name].slice() }),
      close: async () => undefined,
    };
    const fused = new FusedExpertsStore(store, [{ gateUp: 'gu', down: 'd', names: { gate: 'g', up: 'u', down: 'dn' } }]);
    expect([...fused.tensors.keys()].sort()).toEqual(['dn', 'g', 'u']);
    expect(fused.tensors.get('g')).toMatchObject({ shape: [E, F, H], byteLength: E * F * H * 2 });
    expect(fused.tensors.get('dn')).toMatchObject({ shape: [E, H, F] });
    const at = (e: number, h: number, c: number) => (e * H + h) * 2 * F + c;
    const gate = (await fused.read('g')).data;
    const up = (await fused.read('u')).data;
    const downT = (await fused.read('dn')).data;
    for (let e = 0; e < E; e++) {
      for (let f = 0; f < F; f++) {
        for (let h = 0; h < H; h++) {
          expect(gate[(e * F + f) * H + h]).toBe(at(e, h, f));
          expect(up[(e * F + f) * H + h]).toBe(at(e, h, F + f));
          expect(downT[(e * H + h) * F + f]).toBe(100 + (e * F + f) * H + h);
        }
      }
    }
    expect(reads).toEqual(['gu', 'd']);
  });
});

// @ts-check
// What every fuzz target shares: turning the fuzzer's bytes into model files in a scratch directory, running a
// reader on them, telling expected rejections (coded DynamoeErrors) from findings, and checking that what the reader
// allocates stays within what the files hold. Targets load the compiled library from dist/ (`npm run build`).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const v8 = require('v8');
const vm = require('vm');

/** Separates the files of a multi-file input (a sharded checkpoint, a tokenizer directory). */
const FILE_SEPARATOR = Buffer.from('\0\0NEXT-FILE\0\0', 'latin1');

/** Largest single allocation allowed beyond the input's size: readers may round up, libraries keep small buffers. */
const ALLOCATION_SLACK_BYTES = 1 << 20;
/** Retained heap per input byte and on top of it: parsed headers (JS strings, arrays, maps) outgrow their bytes. */
const HEAP_BYTES_PER_INPUT_BYTE = 64;
const HEAP_SLACK_BYTES = 64 << 20;
/** A JS array element: what `new Array(n)` / `Array.from({ length: n })` costs per slot at least. */
const ARRAY_SLOT_BYTES = 8;

const TYPED_ARRAYS = /** @type {const} */ ([
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
]);
const BUFFER_ALLOCATORS = /** @type {const} */ (['alloc', 'allocUnsafe', 'allocUnsafeSlow']);

/** True for the rejections readers promise: DynamoeErrors, checked by shape (jest runs code in another realm). */
function isExpectedRejection(error) {
  const code = /** @type {{ code?: unknown } | null} */ (error)?.code;
  return typeof code === 'string' && code.startsWith('ERR_DYNAMOE_');
}

/** Runs `work`; an expected rejection gives undefined, anything else is rethrown (a finding). @template T */
async function settle(/** @type {() => T | Promise<T>} */ work) {
  try {
    return await work();
  } catch (error) {
    if (isExpectedRejection(error)) return undefined;
    throw error;
  }
}

/** Throws a finding (a plain Error: never mistaken for an expected rejection). */
function finding(/** @type {string} */ message) {
  throw new Error(`fuzz finding: ${message}`);
}

/** @type {string | undefined} */
let scratch;

/**
 * This process's scratch directory, removed at exit: under $FUZZ_SCRATCH (run.sh's, which it removes even when
 * libFuzzer ends the process without exit handlers), else on tmpfs where there is one (every execution writes files).
 */
function scratchDir() {
  if (scratch === undefined) {
    const base = process.env.FUZZ_SCRATCH || (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
    scratch = fs.mkdtempSync(path.join(base, `dynamoe-fuzz-${process.pid}-`));
    process.once('exit', removeScratchDir);
  }
  return scratch;
}

/** Removes the scratch directory now (a later execution makes a new one). */
function removeScratchDir() {
  if (scratch !== undefined) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

/** Makes the scratch directory hold exactly `files` (name -> bytes) and returns its path. */
function writeInputFiles(/** @type {Record<string, Buffer>} */ files) {
  const dir = scratchDir();
  for (const name of fs.readdirSync(dir)) {
    if (!Object.hasOwn(files, name)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), bytes);
  return dir;
}

/** Splits a multi-file input at each {@link FILE_SEPARATOR}. */
function splitFiles(/** @type {Buffer} */ data) {
  const parts = [];
  let start = 0;
  for (let at = data.indexOf(FILE_SEPARATOR); at >= 0; at = data.indexOf(FILE_SEPARATOR, start)) {
    parts.push(data.subarray(start, at));
    start = at + FILE_SEPARATOR.length;
  }
  parts.push(data.subarray(start));
  return parts;
}

/** Joins files into one multi-file input (the inverse of {@link splitFiles}, for the seed corpus). */
function joinFiles(/** @type {Buffer[]} */ files) {
  return Buffer.concat(files.flatMap((file, i) => (i === 0 ? [file] : [FILE_SEPARATOR, file])));
}

function isGguf(/** @type {Buffer} */ data) {
  return data.subarray(0, 4).toString('latin1') === 'GGUF';
}

/**
 * Observes, while `body` runs, the allocations a lying size could blow up: ArrayBuffers, typed arrays and Buffers
 * made with a length, and JS arrays made with a length (`new Array(n)`, `Array.from({ length: n })`). The global
 * constructors are swapped for transparent proxies (same prototype, same behaviour) and restored afterwards.
 */
class AllocationWatch {
  constructor(/** @type {number} */ limit) {
    this.limit = limit;
    this.largest = 0;
    /** Where the largest allocation over the limit was made. */
    this.stack = '';
  }

  record(/** @type {number} */ bytes) {
    if (!(bytes > this.largest)) return;
    this.largest = bytes;
    if (bytes > this.limit) this.stack = String(new Error('allocated here').stack);
  }

  /** @template T @param {() => Promise<T>} body */
  async during(body) {
    const g = /** @type {Record<string, any>} */ (globalThis);
    const restore = [];
    const swap = (/** @type {Record<string, any>} */ owner, /** @type {string} */ key, /** @type {any} */ value) => {
      const original = owner[key];
      restore.push(() => (owner[key] = original));
      owner[key] = value;
    };
    const counting = (/** @type {Function} */ original, /** @type {(args: any[]) => number} */ bytesOf) =>
      new Proxy(original, {
        construct: (target, args, newTarget) => {
          this.record(bytesOf(args));
          return Reflect.construct(target, args, newTarget);
        },
        apply: (target, self, args) => {
          this.record(bytesOf(args));
          return Reflect.apply(target, self, args);
        },
      });
    const length = (/** @type {any[]} */ args) => (typeof args[0] === 'number' ? args[0] : 0);
    try {
      swap(g, 'ArrayBuffer', counting(g.ArrayBuffer, length));
      for (const name of TYPED_ARRAYS) {
        const bytesPerElement = g[name].BYTES_PER_ELEMENT;
        swap(g, name, counting(g[name], (args) => length(args) * bytesPerElement));
      }
      // Only new Array(n) sizes an array: new Array(a, b) and Array.from(iterable) list their items.
      swap(g, 'Array', counting(g.Array, (args) => (args.length === 1 ? length(args) * ARRAY_SLOT_BYTES : 0)));
      for (const name of BUFFER_ALLOCATORS) {
        const original = Buffer[name];
        swap(Buffer, name, (/** @type {number} */ size, /** @type {any[]} */ ...rest) => {
          this.record(size);
          return original.call(Buffer, size, ...rest);
        });
      }
      return await body();
    } finally {
      for (const undo of restore.reverse()) undo();
    }
  }
}

/** Heap in use now: V8's heap and the memory outside it that ArrayBuffers hold. */
function heapInUse() {
  const { used_heap_size: heap, external_memory: external } = v8.getHeapStatistics();
  return heap + external;
}

/** @type {(() => void) | undefined} */
let collectGarbage;

/** A full garbage collection (gc() is exposed at run time, so no node flag is needed). */
function fullGc() {
  if (collectGarbage === undefined) {
    v8.setFlagsFromString('--expose-gc');
    collectGarbage = vm.runInNewContext('gc');
  }
  /** @type {() => void} */ (collectGarbage)();
}

/**
 * Fails when the heap grew by more than the input can account for while what the reader built is still alive.
 * Garbage counts too, so only a growth past the limit that survives a full collection is a finding.
 */
function checkHeapGrowth(/** @type {number} */ before, /** @type {number} */ inputBytes) {
  const limit = inputBytes * HEAP_BYTES_PER_INPUT_BYTE + HEAP_SLACK_BYTES;
  if (heapInUse() - before <= limit) return;
  fullGc();
  const grown = heapInUse() - before;
  if (grown > limit) finding(`reading ${inputBytes} bytes of input retains ${grown} bytes of heap (limit ${limit})`);
}

/**
 * Makes a fuzz target.
 * @param {object} target
 * @param {(data: Buffer) => Record<string, Buffer>} target.files the files (name -> bytes) an input stands for
 * @param {(dir: string, files: Record<string, Buffer>) => Promise<unknown>} target.read runs the reader on the
 *   files, written to `dir`; returns what it built (kept alive for the heap check) or rejects with a coded error
 * @returns {(data: Buffer) => Promise<void>} resolves when the input was read or rejected as expected, rejects on
 *   a finding: an uncoded error, an allocation larger than the input allows, or heap growth it cannot explain
 */
function fuzzTarget({ files, read }) {
  return async function fuzz(data) {
    const inputs = files(data);
    const inputBytes = Object.values(inputs).reduce((sum, bytes) => sum + bytes.length, 0);
    const dir = writeInputFiles(inputs);
    const watch = new AllocationWatch(inputBytes + ALLOCATION_SLACK_BYTES);
    const heapBefore = heapInUse();
    let built;
    try {
      built = await watch.during(() => read(dir, inputs));
    } catch (error) {
      if (!isExpectedRejection(error)) throw error;
    }
    if (watch.largest > watch.limit) {
      finding(`an allocation of ${watch.largest} bytes for ${inputBytes} bytes of input (limit ${watch.limit})\n${watch.stack}`);
    }
    checkHeapGrowth(heapBefore, inputBytes);
    built = undefined; // kept alive until here on purpose
  };
}

/**
 * Checks a store's catalogue against the files (no entry may reach past the end of its file), reads every tensor it
 * lists (unsupported types are an expected rejection) and closes it.
 * @template {import('../../dist/lib/formats/tensor-store').TensorStore} S
 * @param {S} store
 */
async function readEveryTensor(store) {
  try {
    for (const [name, info] of store.tensors) {
      const end = info.byteOffset + info.byteLength;
      if (!Number.isSafeInteger(end) || info.byteOffset < 0 || info.byteLength < 0 || end > fs.statSync(info.file).size) {
        finding(`tensor '${name}' is listed at [${info.byteOffset}, +${info.byteLength}), past the end of ${info.file}`);
      }
      const tensor = await settle(() => store.read(name));
      if (tensor === undefined) continue;
      if (tensor.data.byteLength !== info.byteLength || tensor.shape.join() !== info.shape.join()) {
        finding(`tensor '${name}' read as ${tensor.data.byteLength} bytes [${tensor.shape}], listed as ${info.byteLength} [${info.shape}]`);
      }
    }
  } finally {
    await store.close();
  }
  return store;
}

module.exports = {
  fuzzTarget,
  isExpectedRejection,
  isGguf,
  joinFiles,
  readEveryTensor,
  removeScratchDir,
  settle,
  splitFiles,
  finding,
};

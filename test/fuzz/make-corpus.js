// @ts-check
// Writes the seed corpus of the fuzz targets into test/fuzz/corpus/<target>/ (replacing what is there): small valid
// files, a few KB each, made with the library's writers and the test fixtures. Deterministic: the same bytes on
// every run, so the committed corpus only changes when this script or the writers do.
// Usage: node test/fuzz/make-corpus.js
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const ts = require('typescript');

// The writers and fixtures are TypeScript: transpile them on require (no type check; tsc checks them elsewhere).
require.extensions['.ts'] = (module, filename) => {
  const source = fs.readFileSync(filename, 'utf8');
  const options = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  /** @type {any} */ (module)._compile(ts.transpileModule(source, { compilerOptions: options, fileName: filename }).outputText, filename);
};
const { writeGguf } = require('../../lib/formats/gguf');
const { writeSafetensors, writeSafetensorsSharded } = require('../../lib/formats/safetensors');
const { toBf16, toF16 } = require('../../lib/dtype');
const { ggufNaming } = require('../../lib/model/naming');
const { ARCHITECTURES, makeTinyModel } = require('../model-fixtures');
const { CHATML_TEMPLATE, INST_TEMPLATE, tinyTokenizerConfig, tinyTokenizerGgufMetadata, tinyTokenizerJson } = require('../tokenizer-fixtures');
const { joinFiles } = require('./harness');
const { TOKENIZER_FILES } = require('./tokenizer.fuzz');

const CORPUS = path.join(__dirname, 'corpus');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-corpus-'));

/** Deterministic values 0.25, 0.5, ... (exact in f16 and bf16). */
const values = (/** @type {number} */ n) => Float32Array.from({ length: n }, (_, i) => (i + 1) / 4);
const count = (/** @type {number[]} */ shape) => shape.reduce((a, b) => a * b, 1);
const f32 = (/** @type {string} */ name, /** @type {number[]} */ shape) => ({ name, dtype: 'f32', shape, data: values(count(shape)) });
const f16 = (/** @type {string} */ name, /** @type {number[]} */ shape) => ({ name, dtype: 'f16', shape, data: toF16(values(count(shape))) });
const bf16 = (/** @type {string} */ name, /** @type {number[]} */ shape) => ({ name, dtype: 'bf16', shape, data: toBf16(values(count(shape))) });
const json = (/** @type {unknown} */ value) => Buffer.from(JSON.stringify(value, null, 2));
const compactJson = (/** @type {unknown} */ value) => Buffer.from(JSON.stringify(value)); // tokenizers: keeps seeds small
const u32 = (/** @type {number} */ value) => ({ type: 'u32', value });
const str = (/** @type {string} */ value) => ({ type: 'string', value });

/** Runs a writer on a scratch file and returns the bytes it wrote. */
async function written(/** @type {(file: string) => Promise<unknown>} */ write) {
  const file = path.join(scratch, 'out');
  await write(file);
  return fs.readFileSync(file);
}

/** Sets the ggml type id of the (1-D) tensor `name` in a GGUF file written by writeGguf. */
function withGgmlType(/** @type {Buffer} */ gguf, /** @type {string} */ name, /** @type {number} */ type) {
  const nameField = Buffer.alloc(8 + name.length);
  nameField.writeBigUInt64LE(BigInt(name.length));
  nameField.write(name, 8, 'latin1');
  const at = gguf.indexOf(nameField) + nameField.length + 4 + 8; // past the name, n_dims = 1 and ne[0]
  const copy = Buffer.from(gguf);
  copy.writeUInt32LE(type, at);
  return copy;
}

/** Store reader seeds: no tensors, one, every supported dtype and rank, every metadata type, an unsupported type. */
async function ggufCorpus() {
  return {
    'empty.gguf': await written((file) => writeGguf(file, { tensors: [] })),
    'one-f32-tensor.gguf': await written((file) =>
      writeGguf(file, { metadata: [['general.name', str('one')]], tensors: [f32('weight', [2, 3])] })),
    'dtypes-and-ranks-align64.gguf': await written((file) =>
      writeGguf(file, {
        alignment: 64,
        tensors: [f32('vector', [5]), f16('matrix', [2, 3]), bf16('cube', [2, 1, 2]), f32('rank4', [1, 2, 1, 2]), f32('empty', [0, 3])],
      })),
    // Quantized blocks of a 32-value and a 256-value type: the reader sizes them by block.
    'quantized-tensors.gguf': await written((file) =>
      writeGguf(file, {
        tensors: [
          { name: 'q8', dtype: 'q8_0', shape: [2, 32], data: new Uint8Array(2 * 34).fill(1) },
          { name: 'q4k', dtype: 'q4_k', shape: [1, 256], data: new Uint8Array(144).fill(2) },
        ],
      })),
    'metadata-types.gguf': await written((file) =>
      writeGguf(file, {
        metadata: [
          ['u8', { type: 'u8', value: 255 }], ['i8', { type: 'i8', value: -128 }], ['u16', { type: 'u16', value: 65535 }],
          ['i16', { type: 'i16', value: -32768 }], ['u32', u32(4294967295)], ['i32', { type: 'i32', value: -1 }],
          ['f32', { type: 'f32', value: 0.5 }], ['f64', { type: 'f64', value: -1e300 }], ['bool', { type: 'bool', value: true }],
          ['u64.big', { type: 'u64', value: 2n ** 64n - 1n }], ['i64.small', { type: 'i64', value: -7 }],
          ['string', str('héllo ▁ 🙂')], ['strings', { type: 'array', itemType: 'string', value: ['a', '', 'bc', '<0x0A>'] }],
          ['i32s', { type: 'array', itemType: 'i32', value: [1, -2, 3] }], ['no.items', { type: 'array', itemType: 'f32', value: [] }],
          ['nested', { type: 'array', itemType: 'array', value: [{ type: 'array', itemType: 'u8', value: [1, 2] }, { type: 'array', itemType: 'string', value: ['x'] }] }],
        ],
        tensors: [f16('weight', [2, 2])],
      })),
    'unsupported-ggml-type.gguf': withGgmlType(
      await written((file) => writeGguf(file, { tensors: [f32('q8_0', [32]), f32('f32', [2])] })), 'q8_0', 8),
  };
}

/** A safetensors header and data section written by hand (for dtypes the writer does not take). */
function safetensorsBytes(/** @type {Record<string, unknown>} */ header, /** @type {number} */ dataBytes) {
  const text = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([length, text, Buffer.alloc(dataBytes, 1)]);
}

/** Store reader seeds: no tensors, one, every supported dtype with metadata, unsupported dtypes, a sharded index. */
async function safetensorsCorpus() {
  const shardDir = path.join(scratch, 'sharded');
  const shards = await writeSafetensorsSharded(shardDir, [f32('a', [2, 2]), f16('b', [4]), bf16('c', [2, 2]), f32('d', [1])], {
    maxShardBytes: 16,
    metadata: { format: 'pt' },
  });
  return {
    'empty.safetensors': await written((file) => writeSafetensors(file, [])),
    'one-tensor.safetensors': await written((file) => writeSafetensors(file, [f32('weight', [2, 2])])),
    'dtypes-metadata.safetensors': await written((file) =>
      writeSafetensors(file, [f32('vector', [3]), f16('matrix', [2, 2]), bf16('cube', [1, 2, 2]), f32('empty', [0]), f32('scalar', [])], { format: 'pt' })),
    'unsupported-dtypes.safetensors': safetensorsBytes(
      { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] }, mask: { dtype: 'BOOL', shape: [3], data_offsets: [16, 19] }, w: { dtype: 'F32', shape: [1], data_offsets: [19, 23] } },
      23),
    'sharded-index.bundle': joinFiles([fs.readFileSync(path.join(shardDir, 'model.safetensors.index.json')), ...shards.map((file) => fs.readFileSync(file))]),
  };
}

/** GGUF model metadata and the tensors ggufModelSpec reads shapes from, tiny (hidden 8, 2 experts of 4). */
async function ggufSpecFile(/** @type {string} */ arch, /** @type {{ dense?: boolean, shared?: boolean, untied?: boolean }} */ options) {
  const hidden = 8;
  const experts = 2;
  const layers = options.dense ? ['moe', 'dense'] : ['moe', 'moe'];
  const tensors = [f16(ggufNaming.embed, [16, hidden])];
  if (options.untied) tensors.push(f16(ggufNaming.lmHead, [16, hidden]));
  layers.forEach((kind, i) => {
    if (kind === 'dense') {
      tensors.push(f16(ggufNaming.layer(i, 'mlp_gate'), [6, hidden]));
      return;
    }
    tensors.push(f32(ggufNaming.layer(i, 'router'), [experts, hidden]), f16(ggufNaming.experts.name(i, 'gate'), [experts, 4, hidden]));
    if (options.shared) tensors.push(f16(ggufNaming.layer(i, 'shared_gate'), [4, hidden]), f32(ggufNaming.layer(i, 'shared_gate_weight'), [hidden]));
  });
  if (options.shared) tensors.push(f32(ggufNaming.layer(0, 'q_bias'), [hidden]));
  const metadata = [
    ['general.architecture', str(arch)], [`${arch}.block_count`, u32(layers.length)], [`${arch}.context_length`, u32(512)],
    [`${arch}.embedding_length`, u32(hidden)], [`${arch}.attention.head_count`, u32(2)], [`${arch}.attention.head_count_kv`, u32(1)],
    [`${arch}.attention.key_length`, u32(4)], [`${arch}.rope.dimension_count`, u32(4)], [`${arch}.rope.freq_base`, { type: 'f32', value: 10000 }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }], [`${arch}.expert_count`, u32(experts)],
    [`${arch}.expert_used_count`, u32(1)], [`${arch}.expert_weights_norm`, { type: 'bool', value: true }],
  ];
  return written((file) => writeGguf(file, { metadata, tensors }));
}

/** Config seeds: the config.json of every architecture's tiny model, and GGUF model metadata of each GGUF architecture. */
async function configCorpus() {
  /** @type {Record<string, Buffer>} */
  const files = {};
  for (const arch of ARCHITECTURES) files[`${arch}.config.json`] = json(makeTinyModel(arch).config);
  files['llama.gguf'] = await ggufSpecFile('llama', { untied: true });
  files['qwen2moe-shared-dense.gguf'] = await ggufSpecFile('qwen2moe', { shared: true, dense: true });
  files['qwen3moe.gguf'] = await ggufSpecFile('qwen3moe', {});
  files['olmoe.gguf'] = await ggufSpecFile('olmoe', {});
  return files;
}

/** A tokenizer directory as one multi-file input: files by name, in the target's order, absent ones empty. */
function tokenizerBundle(/** @type {Record<string, Buffer>} */ files) {
  return joinFiles(TOKENIZER_FILES.map((name) => files[name] ?? Buffer.alloc(0)));
}

/** Tokenizer seeds: both tiny tokenizers as directories (with each place a chat template can be) and as GGUF metadata. */
async function tokenizerCorpus() {
  const withoutTemplate = (/** @type {'byte-bpe' | 'spm'} */ kind) => {
    const { chat_template: _, ...config } = tinyTokenizerConfig(kind);
    return config;
  };
  return {
    'byte-bpe.bundle': tokenizerBundle({ 'tokenizer.json': compactJson(tinyTokenizerJson('byte-bpe')), 'tokenizer_config.json': json(tinyTokenizerConfig('byte-bpe')) }),
    'spm.bundle': tokenizerBundle({ 'tokenizer.json': compactJson(tinyTokenizerJson('spm')), 'tokenizer_config.json': json(tinyTokenizerConfig('spm')) }),
    'spm-generation-config-jinja.bundle': tokenizerBundle({
      'tokenizer.json': compactJson(tinyTokenizerJson('spm')),
      'tokenizer_config.json': json(withoutTemplate('spm')),
      'generation_config.json': json({ bos_token_id: 1, eos_token_id: [2, 0] }),
      'chat_template.jinja': Buffer.from(INST_TEMPLATE),
    }),
    'byte-bpe-named-templates.bundle': tokenizerBundle({
      'tokenizer.json': compactJson(tinyTokenizerJson('byte-bpe')),
      'tokenizer_config.json': json({ ...withoutTemplate('byte-bpe'), chat_template: [{ name: 'tool_use', template: '{{ tools }}' }, { name: 'default', template: CHATML_TEMPLATE }] }),
    }),
    'byte-bpe-template-json.bundle': tokenizerBundle({
      'tokenizer.json': compactJson(tinyTokenizerJson('byte-bpe')),
      'chat_template.json': json({ chat_template: CHATML_TEMPLATE }),
    }),
    'byte-bpe.gguf': await written((file) => writeGguf(file, { metadata: tinyTokenizerGgufMetadata('byte-bpe'), tensors: [] })),
    'spm.gguf': await written((file) => writeGguf(file, { metadata: tinyTokenizerGgufMetadata('spm'), tensors: [] })),
  };
}

async function main() {
  const corpora = { gguf: await ggufCorpus(), safetensors: await safetensorsCorpus(), config: await configCorpus(), tokenizer: await tokenizerCorpus() };
  for (const [target, files] of Object.entries(corpora)) {
    const dir = path.join(CORPUS, target);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), bytes);
    const sizes = Object.entries(files).map(([name, bytes]) => `${name} ${bytes.length}`);
    console.log(`${target}: ${sizes.join(', ')}`);
  }
}

main()
  .finally(() => fs.rmSync(scratch, { recursive: true, force: true }))
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });

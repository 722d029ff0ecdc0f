// @ts-check
// Fuzz target: what turns a model's configuration into a ModelSpec. A config.json goes through loadModel on a
// directory holding only it (config -> architecture -> spec; it then rejects for the missing tokenizer.json, by
// design: nothing past the spec is this target's concern). A GGUF file goes through openGguf and ggufModelSpec
// (metadata and tensor shapes -> spec), as loadModel does for .gguf files; the spec it returns must be whole.
'use strict';
const path = require('path');
const { openGguf } = require('../../dist/lib/formats/gguf');
const { ConfigReader } = require('../../dist/lib/model/config-reader');
const { ggufModelSpec } = require('../../dist/lib/model/gguf-spec');
const { loadModel } = require('../../dist/lib/model/load-model');
const { finding, fuzzTarget, isGguf } = require('./harness');

/** A spec a reader returns (not rejects) must give every size as a positive integer. */
function checkSpec(/** @type {import('../../dist/lib/model/spec').ModelSpec} */ spec) {
  const sizes = Object.entries({ vocab: spec.vocab, hidden: spec.hidden, heads: spec.heads, kvHeads: spec.kvHeads, headDim: spec.headDim });
  spec.layers.forEach((layer, i) => {
    sizes.push([`layers[${i}].ffn`, layer.ffn]);
    if (layer.kind === 'moe') sizes.push([`layers[${i}].experts`, layer.experts], [`layers[${i}].shared.ffn`, layer.shared?.ffn ?? 1]);
  });
  for (const [name, value] of sizes) {
    if (!Number.isInteger(value) || value <= 0) finding(`the spec's ${name} is ${value}`);
  }
  return spec;
}

/** @param {string} file */
async function ggufSpec(file) {
  const gguf = await openGguf(file);
  try {
    return checkSpec(ggufModelSpec(new ConfigReader(gguf.metadata, file), gguf.tensors));
  } finally {
    await gguf.close();
  }
}

module.exports.fuzz = fuzzTarget({
  files: (data) => (isGguf(data) ? { 'model.gguf': data } : { 'config.json': data }),
  read: async (dir, files) => (files['model.gguf'] ? ggufSpec(path.join(dir, 'model.gguf')) : loadModel(dir)),
});

// @ts-check
// Fuzz target: a safetensors checkpoint through openSafetensors, then every tensor it lists read back
// (lib/formats/safetensors.ts). One file is model.safetensors; a multi-file input (see harness.joinFiles) is a sharded
// checkpoint: model.safetensors.index.json, then its shards named as Hugging Face names them.
'use strict';
const { openSafetensors } = require('../../dist/lib/formats/safetensors');
const { fuzzTarget, readEveryTensor, splitFiles } = require('./harness');

/** The name of shard `i` (0-based) of `count`, as writeSafetensorsSharded and Hugging Face write it. */
function shardName(i, count) {
  const digits = (/** @type {number} */ n) => String(n).padStart(5, '0');
  return `model-${digits(i + 1)}-of-${digits(count)}.safetensors`;
}

/** @param {Buffer} data */
function checkpointFiles(data) {
  const [first, ...shards] = splitFiles(data);
  if (shards.length === 0) return { 'model.safetensors': first };
  const files = { 'model.safetensors.index.json': first };
  shards.forEach((shard, i) => (files[shardName(i, shards.length)] = shard));
  return files;
}

module.exports.fuzz = fuzzTarget({
  files: checkpointFiles,
  read: async (dir) => readEveryTensor(await openSafetensors(dir)),
});

// @ts-check
// Fuzz target: a GGUF file through openGguf, then every tensor it lists read back (lib/formats/gguf.ts).
'use strict';
const path = require('path');
const { openGguf } = require('../../dist/lib/formats/gguf');
const { fuzzTarget, readEveryTensor } = require('./harness');

const FILE = 'model.gguf';

module.exports.fuzz = fuzzTarget({
  files: (data) => ({ [FILE]: data }),
  read: async (dir) => readEveryTensor(await openGguf(path.join(dir, FILE))),
});

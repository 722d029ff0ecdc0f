// The model the server loads once at startup: a checkpoint path (argument or DYNAMOE_MODEL), else the synthetic demo.
// @ts-check
'use strict';

const path = require('path');
const { createSyntheticModel, loadModel } = require('../..');

/**
 * Where the model comes from: the first command-line argument, else DYNAMOE_MODEL, else undefined (synthetic).
 * @param {string[]} argv process.argv
 * @param {NodeJS.ProcessEnv} env
 */
function modelLocation(argv, env) {
  return argv[2] || env.DYNAMOE_MODEL || undefined;
}

/**
 * Loads a Hugging Face directory or .gguf file, or builds the seeded synthetic model (gibberish text, real routing).
 * @param {string | undefined} location
 * @param {(line: string) => void} [say] progress lines
 * @returns {Promise<import('../..').Model>}
 */
async function loadServedModel(location, say = () => undefined) {
  const started = performance.now();
  const what = location ? path.resolve(location) : 'the synthetic demo model (seeded random weights)';
  say(`loading ${what} ...`);
  const model = location ? await loadModel(location) : await createSyntheticModel();
  const info = model.info;
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  say(
    `loaded ${info.architecture}: ${info.layers.length} layers, hidden ${info.hidden}, ${info.dtype}, ` +
      `default policy ${info.defaultPolicy.join(',')} in ${seconds} s`,
  );
  return model;
}

module.exports = { modelLocation, loadServedModel };

// @ts-check
// Loads a model, runs forwards (and a short generation) and disposes it, many times; then does the same leaving
// disposal to the garbage collector. Prints one JSON line of memory samples. Run with --expose-gc (the leak test
// spawns it): `node --expose-gc test/leaks/dispose-cycle.js [iterations] [gcIterations]`.
'use strict';
const path = require('path');
const { createSyntheticModel } = require(path.join(__dirname, '..', '..', 'dist', 'lib'));

const iterations = Number(process.argv[2] ?? 1000);
const gcIterations = Number(process.argv[3] ?? 200);
const SHAPE = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64 }; // ~1 MiB of f32 weights

/** Memory after a full collection, in bytes. */
function settled() {
  const gc = /** @type {() => void} */ (globalThis.gc);
  gc();
  gc();
  const { rss, external, arrayBuffers, heapUsed } = process.memoryUsage();
  return { rss, external, arrayBuffers, heapUsed };
}

async function cycle(dispose) {
  const model = await createSyntheticModel({ ...SHAPE, seed: 7 });
  await model.forward([1, 2, 3, 4, 5, 6, 7, 8]);
  await model.score([1, 2, 3, 4], { stats: true });
  for await (const _ of model.generate(Int32Array.of(1, 2), { maxTokens: 3 })) void _;
  if (dispose) model.dispose();
}

async function phase(count, dispose) {
  const samples = [];
  const every = Math.max(1, Math.floor(count / 10));
  for (let i = 1; i <= count; i++) {
    await cycle(dispose);
    if (i % every === 0) samples.push({ iteration: i, ...settled() });
  }
  return samples;
}

(async () => {
  const started = Date.now();
  const before = settled();
  const disposed = await phase(iterations, true);
  const collected = await phase(gcIterations, false);
  const after = settled();
  process.stdout.write(`${JSON.stringify({ iterations, gcIterations, before, disposed, collected, after, ms: Date.now() - started })}\n`);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});

// Loading, running and disposing a model 1,000 times (then 200 more left to the garbage collector) keeps the
// process's memory flat: native weights, KV caches and workers are all freed. Runs in a child process with
// --expose-gc so collections can be forced and the numbers are not mixed with jest's own memory.
import { execFile } from 'child_process';
import * as path from 'path';
import { promisify } from 'util';

interface Sample {
  iteration: number;
  rss: number;
  external: number;
  arrayBuffers: number;
  heapUsed: number;
}

const MiB = 2 ** 20;
// One model holds ~1 MiB of packed weights: a leak of one model per cycle would add ~1 GiB over 1,000 cycles.
// RSS settles after ~400 cycles (allocator arenas, JIT); from cycle 500 on it must stay within this.
const RSS_GROWTH_LIMIT = 12 * MiB;
const EXTERNAL_GROWTH_LIMIT = 1 * MiB;

jest.setTimeout(180_000);

// AddressSanitizer keeps freed memory in quarantine, so RSS is no measure there; its LeakSanitizer run covers leaks.
const underAsan = /libasan/.test(process.env.LD_PRELOAD ?? '');
if (underAsan) console.warn('leak test skipped: running under AddressSanitizer (its quarantine holds freed memory)');

(underAsan ? test.skip : test)('1,000 load/forward/generate/dispose cycles and 200 GC-disposed models leave RSS and external memory flat', async () => {
  const script = path.join(__dirname, 'leaks', 'dispose-cycle.js');
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', script, '1000', '200'], {
    maxBuffer: 1 << 20,
    env: process.env, // DYNAMOE_ADDON and sanitizer preloads reach the child too
  });
  const result = JSON.parse(stdout.trim().split('\n').pop()!) as {
    disposed: Sample[];
    collected: Sample[];
    after: Sample;
  };
  const warm = result.disposed[4]; // cycle 500: allocator pools and JIT caches have settled
  const lastDisposed = result.disposed[result.disposed.length - 1];
  const lastCollected = result.collected[result.collected.length - 1];
  const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
  console.log(
    `leak check: RSS ${mib(warm.rss)} at cycle ${warm.iteration}, ${mib(lastDisposed.rss)} at ${lastDisposed.iteration}, ` +
      `${mib(lastCollected.rss)} after ${lastCollected.iteration} GC-disposed models; ` +
      `external ${mib(warm.external)} -> ${mib(lastDisposed.external)} -> ${mib(result.after.external)}`,
  );
  expect(lastDisposed.iteration).toBe(1000);
  expect(lastDisposed.rss - warm.rss).toBeLessThan(RSS_GROWTH_LIMIT);
  expect(lastCollected.rss - warm.rss).toBeLessThan(RSS_GROWTH_LIMIT);
  expect(Math.abs(lastDisposed.external - warm.external)).toBeLessThan(EXTERNAL_GROWTH_LIMIT);
  expect(Math.abs(result.after.external - warm.external)).toBeLessThan(EXTERNAL_GROWTH_LIMIT);
  expect(lastDisposed.heapUsed - warm.heapUsed).toBeLessThan(8 * MiB);
});

// Replays the fuzzers' seed corpus (test/fuzz/corpus/<target>/) and every input a fuzzer found
// (test/fuzz/regressions/<target>/) through the same fuzz targets: each must be read, or rejected with a coded
// DynamoeError, within the targets' allocation and heap limits and well within the fuzzers' time limit per input. The targets load the compiled library from dist/
// (`npm test` builds it first); test/fuzz/run.sh is what fuzzes them.
import * as fs from 'fs';
import * as path from 'path';

interface FuzzTarget {
  fuzz(data: Buffer): Promise<void>;
}

const FUZZ_DIR = path.join(__dirname, 'fuzz');
const TARGETS = ['gguf', 'safetensors', 'config', 'tokenizer'];
/** Each input takes milliseconds; run.sh's fuzzers report one taking over 10 s (some findings were slow, not failing). */
const TIME_LIMIT_MS = 5000;

/** [file name, path] of each input of a target in test/fuzz/<kind>/<target>/. */
function inputsOf(kind: 'corpus' | 'regressions', target: string): [string, string][] {
  const dir = path.join(FUZZ_DIR, kind, target);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().map((name): [string, string] => [name, path.join(dir, name)]);
}

const harness = require(path.join(FUZZ_DIR, 'harness.js')) as { removeScratchDir(): void };
afterAll(() => harness.removeScratchDir());

it('keeps inputs only under the names of fuzz targets', () => {
  for (const kind of ['corpus', 'regressions']) {
    const dir = path.join(FUZZ_DIR, kind);
    const found = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    expect(found.filter((name) => !TARGETS.includes(name))).toEqual([]);
  }
});

describe.each(TARGETS)('fuzz target %s', (target) => {
  const { fuzz } = require(path.join(FUZZ_DIR, `${target}.fuzz.js`)) as FuzzTarget;
  const seeds = inputsOf('corpus', target);
  const regressions = inputsOf('regressions', target);

  it('has a seed corpus', () => {
    expect(seeds.length).toBeGreaterThan(0);
  });

  /** Runs the target on a file: it must resolve (read, or rejected as expected), and in time. */
  const replay = async (file: string) => {
    const started = Date.now();
    await expect(fuzz(fs.readFileSync(file))).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(TIME_LIMIT_MS);
  };

  it.each(seeds)('reads seed %s', (_name, file) => replay(file));

  if (regressions.length > 0) {
    it.each(regressions)('survives regression %s', (_name, file) => replay(file));
  }
});

// The native layers of DESIGN.md, held against the code: native/core includes nothing outside itself, the CPU
// backend (native/cpu) and the CUDA backend (cuda/) include only the core and themselves, only native/napi includes
// napi.h, and the one source list (native/sources.js) builds every native source exactly once.
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..');
const SOURCE = /\.(h|cuh|cpp|cu)$/;

/** Every `#include "..."` of the native files under `dir`, resolved to paths relative to the repository. */
function quotedIncludes(dir: string): { file: string; target: string }[] {
  const found: { file: string; target: string }[] = [];
  for (const name of fs.readdirSync(path.join(ROOT, dir))) {
    if (!SOURCE.test(name)) continue;
    const file = `${dir}/${name}`;
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const match of text.matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)) {
      found.push({ file, target: path.posix.normalize(path.posix.join(dir, match[1])) });
    }
  }
  return found;
}

/** The includes of `dir` that reach outside `allowed` folders. */
function crossings(dir: string, allowed: string[]): string[] {
  return quotedIncludes(dir)
    .filter(({ target }) => !allowed.some((folder) => target.startsWith(`${folder}/`)))
    .map(({ file, target }) => `${file} includes ${target}`);
}

describe('native layers', () => {
  it('native/core includes only native/core', () => {
    expect(crossings('native/core', ['native/core'])).toEqual([]);
  });

  it('the CPU backend includes only native/cpu and native/core', () => {
    expect(crossings('native/cpu', ['native/cpu', 'native/core'])).toEqual([]);
  });

  it('the CUDA backend includes only cuda/ and native/core', () => {
    expect(crossings('cuda', ['cuda', 'native/core'])).toEqual([]);
  });

  it('every quoted include names a file that exists', () => {
    const missing = ['native/core', 'native/cpu', 'native/napi', 'cuda']
      .flatMap(quotedIncludes)
      .filter(({ target }) => !fs.existsSync(path.join(ROOT, target)))
      .map(({ file, target }) => `${file} includes ${target}`);
    expect(missing).toEqual([]);
  });

  it('only native/napi includes napi.h', () => {
    const offenders = ['native/core', 'native/cpu', 'cuda'].flatMap((dir) =>
      fs
        .readdirSync(path.join(ROOT, dir))
        .filter((name) => SOURCE.test(name))
        .filter((name) => /#\s*include\s*<napi\.h>/.test(fs.readFileSync(path.join(ROOT, dir, name), 'utf8')))
        .map((name) => `${dir}/${name}`),
    );
    expect(offenders).toEqual([]);
  });

  it('no native source sits outside the layers', () => {
    const loose = fs.readdirSync(path.join(ROOT, 'native')).filter((name) => SOURCE.test(name));
    expect(loose).toEqual([]);
  });

  it('native/sources.js lists every .cpp and .cu once, in the groups the builds read', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { groups } = require(path.join(ROOT, 'native/sources.js')) as { groups: Record<string, () => string[]> };
    const listed = Object.values(groups).flatMap((group) => group());
    expect(new Set(listed).size).toBe(listed.length);
    const onDisk = ['native/core', 'native/cpu', 'native/napi', 'cuda'].flatMap((dir) =>
      fs
        .readdirSync(path.join(ROOT, dir))
        .filter((name) => /\.(cpp|cu)$/.test(name))
        .map((name) => `${dir}/${name}`),
    );
    expect([...listed].sort()).toEqual(onDisk.sort());
    expect(groups.addon()).not.toContain('cuda/cuda_unavailable.cpp');
    expect(groups.addon().every((file) => !/_avx(2|512|512bf16)\.cpp$/.test(file))).toBe(true);
  });
});

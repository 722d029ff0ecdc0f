// Loads benchmark peers from bench/peers (installed by `npm run bench:peers`, never a dependency of dynamoe).
import * as fs from 'fs';
import * as path from 'path';

/** The bench/peers folder, whether this runs from bench/ or dist/bench/. */
export function peersDir(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'bench', 'peers', 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('bench/peers not found');
    dir = parent;
  }
  return path.join(dir, 'bench', 'peers');
}

// A real dynamic import: TypeScript's CommonJS output would turn `import()` into require(), which ESM-only peers refuse.
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

/** Imports an installed peer package, or returns null (with the reason) when it is not installed. */
export async function importPeer<T>(name: string): Promise<{ module: T } | { missing: string }> {
  const entry = path.join(peersDir(), 'node_modules', name);
  if (!fs.existsSync(entry)) return { missing: `${name} is not installed: run \`npm run bench:peers\`` };
  const resolved = require.resolve(name, { paths: [peersDir()] });
  const namespace = (await importEsm(`file://${resolved}`)) as { default?: unknown };
  // A CommonJS peer arrives as `default`; an ES module's exports are the namespace itself.
  return { module: (resolved.endsWith('.mjs') || namespace.default === undefined ? namespace : namespace.default) as T };
}

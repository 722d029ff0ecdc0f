// Finds dynamoe's native binaries and picks one for a device: 'cuda' and 'auto' try the CUDA binary and keep it only
// when it finds a usable GPU and driver; 'cpu' never loads it. Pure decisions over cached load outcomes, so the
// loader and `dynamoe doctor` reach the same answer.
import * as fs from 'fs';
import * as path from 'path';
import type { Device } from '../device';
import type { NativeAddon } from './native-surface';

export type BinaryKind = 'cpu' | 'cuda';

/** Where a binary came from: shipped in the package, compiled on this machine, or named by DYNAMOE_ADDON. */
export type BinarySource = 'prebuild' | 'compiled' | 'DYNAMOE_ADDON';

export interface BinaryCandidate {
  path: string;
  kind: BinaryKind;
  source: BinarySource;
}

/** A binary that was found but not used, and why. */
export interface SkippedBinary extends BinaryCandidate {
  reason: string;
}

/** The CUDA binary is kept in a directory node-gyp-build ignores (three-part names), so it is never picked by chance. */
export function cudaPrebuildDir(root: string): string {
  return path.join(root, 'prebuilds', `${process.platform}-${process.arch}-cuda`);
}

// The package root holds binding.gyp whether this file runs from lib/addon/ (ts-jest) or dist/lib/addon/ (compiled).
export function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'binding.gyp'))) {
    const parent = path.dirname(dir);
    if (parent === dir) return path.join(__dirname, '..', '..');
    dir = parent;
  }
  return dir;
}

function sourceOf(root: string, file: string): BinarySource {
  return path.relative(root, file).split(path.sep)[0] === 'prebuilds' ? 'prebuild' : 'compiled';
}

/** The CUDA binaries present, best first: one compiled here (`npm run build:cuda`), then the shipped prebuild. */
export function cudaCandidates(root: string): BinaryCandidate[] {
  const files = [path.join(root, 'build-cuda', 'Release', 'dynamoe.node'), path.join(cudaPrebuildDir(root), 'dynamoe.node')];
  return files.filter((file) => fs.existsSync(file)).map((file) => ({ path: file, kind: 'cuda', source: sourceOf(root, file) }));
}

/** The CPU binary node-gyp-build would load (a local build first, then the matching prebuild), or why there is none. */
export function cpuCandidate(root: string): BinaryCandidate | { missing: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
    const file = nodeGypBuild.resolve(root);
    return { path: file, kind: 'cpu', source: sourceOf(root, file) };
  } catch (error) {
    return { missing: firstLine((error as Error).message) };
  }
}

export interface LoadOutcome {
  addon?: NativeAddon;
  /** The loader's message when the file did not load (a missing glibc symbol version, a wrong architecture...). */
  error?: string;
}

function firstLine(text: string): string {
  return text.split('\n')[0].trim();
}

const outcomes = new Map<string, LoadOutcome>();

/** Loads a .node file once per process (a loaded shared object cannot be unloaded, so the outcome is cached). */
export function tryLoad(file: string): LoadOutcome {
  const key = path.resolve(file);
  let outcome = outcomes.get(key);
  if (outcome === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      outcome = { addon: require(key) as NativeAddon };
    } catch (error) {
      outcome = { error: firstLine((error as Error).message) };
    }
    outcomes.set(key, outcome);
  }
  return outcome;
}

/** Why a loaded CUDA binary cannot run on a GPU here, or undefined when it can. */
export function cudaUnusableReason(addon: NativeAddon): string | undefined {
  const info = addon.backendInfo();
  if (info.backend === 'cuda') return undefined;
  return `${info.cudaError ?? 'unknown'}${info.cudaErrorMessage ? ` (${info.cudaErrorMessage})` : ''}`;
}

export interface BinaryChoice {
  /** The binary to use, with its loaded addon; absent when none fits the request. */
  chosen?: BinaryCandidate & { addon: NativeAddon };
  skipped: SkippedBinary[];
  /** Why nothing was chosen (the last reason), when nothing was. */
  failure?: { kind: BinaryKind; reason: string };
}

/**
 * Picks a binary for `device` from the ones present. `load` is called lazily, only for binaries the request may use:
 * a 'cpu' request never loads a CUDA binary, and 'auto' loads the CPU one only when no CUDA binary is usable.
 */
export function chooseBinary(
  device: Device,
  cuda: BinaryCandidate[],
  cpu: BinaryCandidate | { missing: string },
  load: (file: string) => LoadOutcome = tryLoad,
): BinaryChoice {
  const skipped: SkippedBinary[] = [];
  if (device !== 'cpu') {
    for (const candidate of cuda) {
      const outcome = load(candidate.path);
      const reason = outcome.addon ? cudaUnusableReason(outcome.addon) : `did not load: ${outcome.error}`;
      if (outcome.addon && reason === undefined) return { chosen: { ...candidate, addon: outcome.addon }, skipped };
      skipped.push({ ...candidate, reason: reason! });
    }
    if (device === 'cuda') {
      const reason = skipped.length > 0 ? skipped[skipped.length - 1].reason : 'no CUDA binary was found';
      return { skipped, failure: { kind: 'cuda', reason } };
    }
  }
  if ('missing' in cpu) return { skipped, failure: { kind: 'cpu', reason: cpu.missing } };
  const outcome = load(cpu.path);
  if (outcome.addon) return { chosen: { ...cpu, addon: outcome.addon }, skipped };
  skipped.push({ ...cpu, reason: `did not load: ${outcome.error}` });
  return { skipped, failure: { kind: 'cpu', reason: `did not load: ${outcome.error}` } };
}

/** The glibc version a loader error says is missing (`version 'GLIBC_2.34' not found`), if that is the error. */
export function missingGlibc(reason: string): string | undefined {
  return /GLIBC_(\d+\.\d+(?:\.\d+)?)'? not found/.exec(reason)?.[1];
}

// Explains binary choices in words: the exact fix for each way a binary can be missing or unusable, the error the
// loader throws when nothing fits, and the `dynamoe doctor` report.
import * as fs from 'fs';
import * as path from 'path';
import { Device, isDevice } from '../device';
import { DynamoeError } from '../errors';
import {
  BinaryCandidate,
  BinaryChoice,
  chooseBinary,
  cpuCandidate,
  cudaCandidates,
  cudaPrebuildDir,
  missingGlibc,
  SkippedBinary,
  tryLoad,
} from './binary-choice';
import { describeSystem, SystemFacts, systemFacts } from './system-facts';

const REBUILD = 'npm rebuild dynamoe --build-from-source';
const COMPILERS = 'python3, make and a C++17 compiler (g++ 9 or newer)';

/** What one shipped binary needs, as `npm run prebuildify` recorded it in prebuilds/manifest.json. */
export interface ManifestEntry {
  file: string;
  kind: 'cpu' | 'cuda';
  /** The newest GLIBC symbol version it imports (the glibc it needs). */
  glibc: string;
  /** The newest GLIBCXX version it imports, 'none' when libstdc++ is linked in. */
  glibcxx: string;
  bytes: number;
  sha256: string;
}

export function readManifest(root: string): ManifestEntry[] {
  try {
    const parsed = JSON.parse(fs.readFileSync(path.join(root, 'prebuilds', 'manifest.json'), 'utf8')) as {
      binaries?: ManifestEntry[];
    };
    return Array.isArray(parsed.binaries) ? parsed.binaries : [];
  } catch {
    return [];
  }
}

function glibcFix(needed: string, facts: SystemFacts): string {
  return (
    `this binary needs glibc ${needed} or newer and this system has ${facts.glibcVersion ?? 'another libc'}: ` +
    `run \`${REBUILD}\` to compile one for this system (needs ${COMPILERS}), or upgrade the OS`
  );
}

/** The fix when the CPU binary is missing or does not load. */
export function cpuFix(reason: string, facts: SystemFacts): string {
  const glibc = missingGlibc(reason);
  if (glibc !== undefined) return glibcFix(glibc, facts);
  if (reason.startsWith('did not load')) {
    return `run \`${REBUILD}\` (needs ${COMPILERS}); if it persists, report it with the output of \`npx dynamoe doctor\``;
  }
  const shipped =
    facts.platform === 'linux' && facts.arch === 'x64' && facts.libc === 'glibc'
      ? 'this install has none (a git checkout, or an install with --ignore-scripts?)'
      : `prebuilt binaries ship for linux-x64 with glibc only, not ${facts.platform}-${facts.arch}` +
        (facts.libc === 'musl' ? ' with musl' : '');
  return `${shipped}: run \`${REBUILD}\` to compile the CPU addon (needs ${COMPILERS})`;
}

/** The fix when no CUDA binary is usable. */
export function cudaFix(reason: string, facts: SystemFacts): string {
  const glibc = missingGlibc(reason);
  if (glibc !== undefined) {
    return `the CUDA binary needs glibc ${glibc} or newer and this system has ${facts.glibcVersion ?? 'another libc'}: upgrade the OS, or use device 'cpu'`;
  }
  if (reason === 'no CUDA binary was found') {
    return facts.platform === 'linux' && facts.arch === 'x64'
      ? 'this install has no CUDA binary (prebuilds/linux-x64-cuda/dynamoe.node): reinstall dynamoe from npm, or build ' +
          'one in a source checkout with `npm run build:cuda` (needs the CUDA toolkit and cmake)'
      : `dynamoe ships its CUDA binary for linux-x64 only: on ${facts.platform}-${facts.arch} build one in a source ` +
          'checkout with `npm run build:cuda` (needs the CUDA toolkit and cmake), or use device \'cpu\'';
  }
  if (reason.startsWith('cudaErrorInsufficientDriver')) {
    return facts.nvidiaDriver === undefined
      ? 'no NVIDIA driver is loaded: install the NVIDIA driver (R580 or newer, for CUDA 13) on a machine with an NVIDIA GPU'
      : `the NVIDIA driver ${facts.nvidiaDriver} is older than this binary's CUDA 13 runtime needs: update it to R580 or newer`;
  }
  if (reason.startsWith('cudaErrorNoDevice')) {
    return 'the driver shows this process no GPU: check `nvidia-smi` and CUDA_VISIBLE_DEVICES';
  }
  if (reason.startsWith('cudaErrorUnsupportedComputeCapability') || reason.startsWith('cudaErrorNoKernelImageForDevice')) {
    return "the CUDA kernels need an Ampere GPU or newer (compute capability 8.0+): use device 'cpu' on this GPU";
  }
  return 'run `npx dynamoe doctor` for the full diagnosis';
}

function skippedLines(skipped: SkippedBinary[]): string[] {
  return skipped.map((s) => `  ${s.kind} binary ${s.path} (${s.source}): ${s.reason}`);
}

/** The error for a request no binary fits: what was tried, the machine's facts, and the fix. */
export function noBinaryError(device: Device, requestedBy: string, choice: BinaryChoice): DynamoeError {
  const facts = systemFacts();
  const failure = choice.failure!;
  const what =
    failure.kind === 'cuda'
      ? `device 'cuda' was requested (${requestedBy}) but no usable CUDA binary was found`
      : `could not load the dynamoe native addon (device '${device}', ${requestedBy})`;
  const fix = failure.kind === 'cuda' ? cudaFix(failure.reason, facts) : cpuFix(failure.reason, facts);
  const tried = choice.skipped.length > 0 ? ['tried:', ...skippedLines(choice.skipped)] : [`  ${failure.reason}`];
  const message = [`${what}.`, ...tried, ...describeSystem(facts), `Fix: ${fix}.`].join('\n');
  return new DynamoeError(failure.kind === 'cuda' ? 'ERR_DYNAMOE_DEVICE' : 'ERR_DYNAMOE_BINDING', message);
}

function binaryLine(candidate: BinaryCandidate, manifest: ManifestEntry[], root: string): string {
  const relative = path.relative(root, candidate.path);
  const entry = manifest.find((m) => path.join('prebuilds', m.file) === relative);
  const libstdcxx = entry && entry.glibcxx !== 'none' ? `, libstdc++ GLIBCXX_${entry.glibcxx}` : '';
  const needs = entry ? `needs glibc ${entry.glibc}${libstdcxx}, ${(entry.bytes / 1024 / 1024).toFixed(1)} MiB` : candidate.source;
  const outcome = tryLoad(candidate.path);
  const loads = outcome.addon ? 'loads' : `does not load: ${outcome.error}`;
  return `  ${candidate.kind.padEnd(4)}  ${relative} (${needs}): ${loads}`;
}

function choiceLine(device: Device, choice: BinaryChoice, facts: SystemFacts, requested: boolean): string {
  const label = `${requested ? '*' : ' '} device '${device}'`.padEnd(18);
  if (choice.chosen) {
    const info = choice.chosen.addon.backendInfo();
    const cpu = choice.chosen.addon.cpuInfo();
    const runs = info.backend === 'cuda' && device !== 'cpu' ? `CUDA on ${info.gpu?.name ?? 'GPU 0'}` : `CPU, ${cpu.isa} kernels, ${cpu.threads} threads`;
    const fallback = device === 'auto' && choice.skipped.length > 0 ? ` (CUDA not usable: ${choice.skipped[0].reason})` : '';
    return `${label}-> ${choice.chosen.kind} binary: ${runs}${fallback}`;
  }
  const failure = choice.failure!;
  const fix = failure.kind === 'cuda' ? cudaFix(failure.reason, facts) : cpuFix(failure.reason, facts);
  return `${label}-> fails: ${failure.reason}\n${' '.repeat(20)}fix: ${fix}`;
}

/** `dynamoe doctor`: the machine, every binary found and whether it loads, and what each device request would do. */
export function doctorReport(root: string, env: NodeJS.ProcessEnv = process.env): { text: string; ok: boolean } {
  const facts = systemFacts();
  const manifest = readManifest(root);
  const cuda = cudaCandidates(root);
  const cpu = cpuCandidate(root);
  const lines = [`dynamoe doctor (package at ${root})`, ...describeSystem(facts)];
  const setting = env.DYNAMOE_DEVICE;
  const valid = setting === undefined || setting === '' || isDevice(setting);
  const requested: Device = isDevice(setting) ? setting : 'auto';
  lines.push(
    !valid
      ? `requested DYNAMOE_DEVICE=${setting} is not one of cpu, cuda, auto: dynamoe refuses to load (ERR_DYNAMOE_VALUE)`
      : `requested ${setting ? `DYNAMOE_DEVICE=${setting}` : "DYNAMOE_DEVICE unset: 'auto'"}`,
  );
  if (env.DYNAMOE_ADDON) lines.push(`override  DYNAMOE_ADDON=${env.DYNAMOE_ADDON}: that file is loaded instead of any below`);
  lines.push('binaries');
  if (cuda.length === 0) lines.push(`  cuda  none (looked in build-cuda/Release and ${path.relative(root, cudaPrebuildDir(root))})`);
  for (const candidate of cuda) lines.push(binaryLine(candidate, manifest, root));
  lines.push('missing' in cpu ? `  cpu   none: ${cpu.missing}` : binaryLine(cpu, manifest, root));
  lines.push('what each device would do (* = this environment\'s request)');
  let ok = valid;
  for (const device of ['auto', 'cpu', 'cuda'] as const) {
    const choice = chooseBinary(device, cuda, cpu);
    if (device === requested && !choice.chosen) ok = false;
    lines.push(choiceLine(device, choice, facts, device === requested));
  }
  return { text: lines.join('\n'), ok };
}

// What this machine is, learned without the native addon (which may be what failed to load): platform, libc and
// its version, CPU features and the NVIDIA driver. Used by the loader's errors and by `dynamoe doctor`.
import * as fs from 'fs';

export interface SystemFacts {
  platform: string;
  arch: string;
  /** 'glibc', 'musl', or 'n/a' off Linux. */
  libc: 'glibc' | 'musl' | 'n/a';
  /** e.g. '2.36'; undefined where not glibc. */
  glibcVersion?: string;
  node: string;
  napiVersion: number;
  cpuModel?: string;
  /** The SIMD features the kernels dispatch on, as the kernel reports them (/proc/cpuinfo on Linux). */
  cpuFeatures: { avx2: boolean; fma: boolean; f16c: boolean; avx512f: boolean; avx512bf16: boolean } | undefined;
  /** The NVIDIA kernel driver's version (e.g. '580.65.06'), or undefined when no NVIDIA driver is loaded. */
  nvidiaDriver?: string;
  /** GPU names the driver lists (/proc/driver/nvidia/gpus/<bus id>/information). */
  nvidiaGpus: string[];
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function glibcVersion(): string | undefined {
  // The process report's header names the glibc the process runs with; absent on musl and off Linux.
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime;
}

function libcFamily(glibc: string | undefined): SystemFacts['libc'] {
  if (process.platform !== 'linux') return 'n/a';
  if (glibc !== undefined) return 'glibc';
  return 'musl';
}

function cpuFacts(): Pick<SystemFacts, 'cpuModel' | 'cpuFeatures'> {
  const info = readText('/proc/cpuinfo');
  if (info === undefined) return { cpuFeatures: undefined };
  const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim();
  const flags = new Set((/^flags\s*:\s*(.+)$/m.exec(info)?.[1] ?? '').split(/\s+/));
  return {
    cpuModel: model,
    cpuFeatures: {
      avx2: flags.has('avx2'),
      fma: flags.has('fma'),
      f16c: flags.has('f16c'),
      avx512f: flags.has('avx512f'),
      avx512bf16: flags.has('avx512_bf16'),
    },
  };
}

function nvidiaFacts(): Pick<SystemFacts, 'nvidiaDriver' | 'nvidiaGpus'> {
  const version = readText('/proc/driver/nvidia/version');
  const driver = version === undefined ? undefined : (/Kernel Module\s+(?:for\s+\S+\s+)?(\d+(?:\.\d+)+)/.exec(version)?.[1] ?? 'unknown');
  const gpus: string[] = [];
  let busIds: string[] = [];
  try {
    busIds = fs.readdirSync('/proc/driver/nvidia/gpus');
  } catch {
    // no driver, or not Linux
  }
  for (const id of busIds) {
    const text = readText(`/proc/driver/nvidia/gpus/${id}/information`);
    gpus.push(/^Model:\s*(.+)$/m.exec(text ?? '')?.[1]?.trim() ?? `GPU at ${id}`);
  }
  return { nvidiaDriver: driver, nvidiaGpus: gpus };
}

/** This machine's facts, read fresh (cheap enough for error paths and the doctor, not meant for hot paths). */
export function systemFacts(): SystemFacts {
  const glibc = process.platform === 'linux' ? glibcVersion() : undefined;
  return {
    platform: process.platform,
    arch: process.arch,
    libc: libcFamily(glibc),
    glibcVersion: glibc,
    node: process.version,
    napiVersion: Number(process.versions.napi),
    ...cpuFacts(),
    ...nvidiaFacts(),
  };
}

/** One line per fact, for error messages and the doctor. */
export function describeSystem(facts: SystemFacts): string[] {
  const libc = facts.libc === 'glibc' ? `glibc ${facts.glibcVersion}` : facts.libc;
  const features = facts.cpuFeatures
    ? Object.entries(facts.cpuFeatures)
        .filter(([, has]) => has)
        .map(([name]) => name)
        .join(' ') || 'none of avx2/fma/f16c/avx512f/avx512bf16'
    : 'unknown (no /proc/cpuinfo)';
  const driver = facts.nvidiaDriver === undefined ? 'none loaded' : facts.nvidiaDriver;
  const gpus = facts.nvidiaGpus.length > 0 ? facts.nvidiaGpus.join(', ') : 'none listed';
  return [
    `system    ${facts.platform}-${facts.arch}, ${libc}, Node ${facts.node} (N-API ${facts.napiVersion})`,
    `cpu       ${facts.cpuModel ?? 'unknown model'}; features: ${features}`,
    `nvidia    driver: ${driver}; GPUs: ${gpus}`,
  ];
}

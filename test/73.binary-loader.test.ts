// The binary loader: which .node file each device request loads (the decision rule on fake binaries, then whole
// processes on a temporary package laid out like an installed one), the errors and fixes when nothing fits,
// `dynamoe doctor`, and several worker threads loading the addon at once.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { backendInfo } from '../lib';
import { cpuFix, cudaFix } from '../lib/addon/binary-diagnosis';
import { BinaryCandidate, chooseBinary, LoadOutcome, missingGlibc } from '../lib/addon/binary-choice';
import type { NativeAddon } from '../lib/addon/native-surface';
import type { SystemFacts } from '../lib/addon/system-facts';

const root = path.resolve(__dirname, '..');

/** A stand-in for a loaded addon: only backendInfo() matters to the decision. */
function fakeAddon(backend: 'cpu' | 'cuda', cudaError?: string): NativeAddon {
  const info = { backend, cudaBuilt: cudaError !== 'notBuilt', cudaError, cudaErrorMessage: cudaError && 'message', cudaArchitectures: [] };
  return { backendInfo: () => info } as unknown as NativeAddon;
}

const CUDA_A: BinaryCandidate = { path: '/p/build-cuda/Release/dynamoe.node', kind: 'cuda', source: 'compiled' };
const CUDA_B: BinaryCandidate = { path: '/p/prebuilds/linux-x64-cuda/dynamoe.node', kind: 'cuda', source: 'prebuild' };
const CPU: BinaryCandidate = { path: '/p/prebuilds/linux-x64/dynamoe.glibc.node', kind: 'cpu', source: 'prebuild' };

/** A load function over a table of outcomes that records every file it was asked to load. */
function loader(table: Record<string, LoadOutcome>): { load: (file: string) => LoadOutcome; loaded: string[] } {
  const loaded: string[] = [];
  return {
    loaded,
    load: (file) => {
      loaded.push(file);
      return table[file] ?? { error: 'ENOENT' };
    },
  };
}

describe('chooseBinary: the decision rule', () => {
  const gpu = { [CUDA_A.path]: { addon: fakeAddon('cuda') }, [CPU.path]: { addon: fakeAddon('cpu', 'notBuilt') } };
  const noGpu = {
    [CUDA_A.path]: { addon: fakeAddon('cpu', 'cudaErrorInsufficientDriver') },
    [CUDA_B.path]: { addon: fakeAddon('cpu', 'cudaErrorInsufficientDriver') },
    [CPU.path]: { addon: fakeAddon('cpu', 'notBuilt') },
  };

  it("'cpu' never loads a CUDA binary", () => {
    const { load, loaded } = loader(gpu);
    const choice = chooseBinary('cpu', [CUDA_A, CUDA_B], CPU, load);
    expect(choice.chosen?.path).toBe(CPU.path);
    expect(loaded).toEqual([CPU.path]);
    expect(choice.skipped).toEqual([]);
  });

  it("'auto' keeps a CUDA binary that finds a GPU and never loads the CPU one", () => {
    const { load, loaded } = loader(gpu);
    const choice = chooseBinary('auto', [CUDA_A, CUDA_B], CPU, load);
    expect(choice.chosen).toMatchObject({ path: CUDA_A.path, kind: 'cuda' });
    expect(loaded).toEqual([CUDA_A.path]);
  });

  it("'auto' without a usable GPU tries every CUDA binary, then uses the CPU one, saying why", () => {
    const { load, loaded } = loader(noGpu);
    const choice = chooseBinary('auto', [CUDA_A, CUDA_B], CPU, load);
    expect(choice.chosen?.path).toBe(CPU.path);
    expect(loaded).toEqual([CUDA_A.path, CUDA_B.path, CPU.path]);
    expect(choice.skipped.map((s) => [s.path, s.reason])).toEqual([
      [CUDA_A.path, 'cudaErrorInsufficientDriver (message)'],
      [CUDA_B.path, 'cudaErrorInsufficientDriver (message)'],
    ]);
  });

  it("'auto' passes over a CUDA binary that does not load, with the loader's message", () => {
    const { load } = loader({ [CUDA_B.path]: { error: "version `GLIBC_2.34' not found" }, [CPU.path]: gpu[CPU.path] });
    const choice = chooseBinary('auto', [CUDA_B], CPU, load);
    expect(choice.chosen?.path).toBe(CPU.path);
    expect(choice.skipped[0].reason).toBe("did not load: version `GLIBC_2.34' not found");
  });

  it("'cuda' fails with the last reason and never falls back to the CPU binary", () => {
    const { load, loaded } = loader(noGpu);
    const choice = chooseBinary('cuda', [CUDA_A], CPU, load);
    expect(choice.chosen).toBeUndefined();
    expect(choice.failure).toEqual({ kind: 'cuda', reason: 'cudaErrorInsufficientDriver (message)' });
    expect(loaded).toEqual([CUDA_A.path]);
    expect(chooseBinary('cuda', [], CPU, load).failure).toEqual({ kind: 'cuda', reason: 'no CUDA binary was found' });
  });

  it('a missing or unloadable CPU binary is a failure of kind cpu', () => {
    const { load } = loader({});
    expect(chooseBinary('cpu', [], { missing: 'No native build was found' }, load).failure).toEqual({
      kind: 'cpu',
      reason: 'No native build was found',
    });
    expect(chooseBinary('auto', [], CPU, load).failure).toEqual({ kind: 'cpu', reason: 'did not load: ENOENT' });
  });
});

describe('fixes', () => {
  const facts: SystemFacts = {
    platform: 'linux',
    arch: 'x64',
    libc: 'glibc',
    glibcVersion: '2.31',
    node: 'v20.0.0',
    napiVersion: 9,
    cpuFeatures: { avx2: true, fma: true, f16c: true, avx512f: false, avx512bf16: false },
    nvidiaGpus: [],
  };

  it('reads the glibc version a loader error says is missing', () => {
    const error = "did not load: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by x.node)";
    expect(missingGlibc(error)).toBe('2.34');
    expect(missingGlibc('did not load: invalid ELF header')).toBeUndefined();
    expect(cpuFix(error, facts)).toMatch(/needs glibc 2\.34 or newer and this system has 2\.31.*--build-from-source/);
    expect(cudaFix(error, facts)).toMatch(/needs glibc 2\.34 or newer and this system has 2\.31/);
  });

  it('names the fix for each way CUDA is unusable', () => {
    expect(cudaFix('cudaErrorInsufficientDriver (x)', facts)).toMatch(/no NVIDIA driver is loaded: install/);
    expect(cudaFix('cudaErrorInsufficientDriver (x)', { ...facts, nvidiaDriver: '470.1' })).toMatch(/driver 470\.1 is older.*R580/);
    expect(cudaFix('cudaErrorNoDevice (x)', facts)).toMatch(/CUDA_VISIBLE_DEVICES/);
    expect(cudaFix('cudaErrorUnsupportedComputeCapability (x)', facts)).toMatch(/compute capability 8\.0/);
    expect(cudaFix('no CUDA binary was found', facts)).toMatch(/npm run build:cuda/);
    expect(cudaFix('no CUDA binary was found', { ...facts, arch: 'arm64' })).toMatch(/linux-x64 only: on linux-arm64/);
  });

  it('tells musl and other platforms that the prebuilt binaries are linux-x64 glibc, and how to compile', () => {
    expect(cpuFix('No native build was found', { ...facts, libc: 'musl', glibcVersion: undefined })).toMatch(
      /linux-x64 with glibc only, not linux-x64 with musl: run `npm rebuild dynamoe --build-from-source`/,
    );
    expect(cpuFix('No native build was found', { ...facts, platform: 'darwin', arch: 'arm64', libc: 'n/a' })).toMatch(/darwin-arm64/);
  });
});

// What a child process reports about its loaded binary, or its error.
const PROBE = `
  const d = require('./dist/lib');
  const out = {};
  try {
    const info = d.backendInfo();
    out.binary = info.binary;
    out.cudaError = info.cudaError;
    const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
    out.mapped = [...new Set(maps.split('\\n').map((l) => l.split(/\\s+/)[5]).filter((f) => f && f.endsWith('.node')))];
    if (process.argv[1]) {
      try { d.loadBackend(process.argv[1]); out.second = 'ok'; } catch (e) { out.second = e.code; out.secondMessage = e.message; }
    }
    try {
      d.MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 1, dtype: 'f32', router: new Float32Array(2),
        gate: new Float32Array(2), up: new Float32Array(2), down: new Float32Array(2) }, { device: 'cuda' });
      out.cudaLayer = 'ok';
    } catch (e) { out.cudaLayer = e.code; out.cudaLayerMessage = e.message; }
  } catch (e) { out.code = e.code; out.message = e.message; }
  console.log(JSON.stringify(out));
`;

interface Probe {
  binary?: { path: string; kind: string; source: string; requested: string; requestedBy: string; skipped: Array<{ path: string; kind: string; reason: string }> };
  cudaError?: string;
  mapped?: string[];
  second?: string;
  secondMessage?: string;
  cudaLayer?: string;
  cudaLayerMessage?: string;
  code?: string;
  message?: string;
}

describe('a package laid out like an installed one', () => {
  // The binary this process runs (the CPU build, or the sanitizer build in CI) stands in for both shipped binaries.
  const cpuBinary = backendInfo().binary.path;
  let dir: string;
  let childEnv: NodeJS.ProcessEnv;

  /** A package with the given files under prebuilds/ (copies of the CPU binary, or text for a broken binary). */
  function layout(files: Record<string, 'cpu' | 'garbage'>): void {
    fs.rmSync(path.join(dir, 'prebuilds'), { recursive: true, force: true });
    for (const [file, what] of Object.entries(files)) {
      const target = path.join(dir, 'prebuilds', file);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (what === 'cpu') fs.copyFileSync(cpuBinary, target);
      else fs.writeFileSync(target, 'not a shared object\n');
    }
  }

  function probe(env: Record<string, string>, second?: string): Probe {
    const args = ['-e', PROBE, ...(second ? [second] : [])];
    const output = execFileSync(process.execPath, args, { cwd: dir, env: { ...childEnv, ...env }, encoding: 'utf8' });
    return JSON.parse(output) as Probe;
  }

  const CPU_FILE = `${process.platform}-${process.arch}/dynamoe.glibc.node`;
  const CUDA_FILE = `${process.platform}-${process.arch}-cuda/dynamoe.node`;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-package-'));
    fs.cpSync(path.join(root, 'dist', 'lib'), path.join(dir, 'dist', 'lib'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
    fs.copyFileSync(path.join(root, 'binding.gyp'), path.join(dir, 'binding.gyp'));
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    childEnv = { ...process.env };
    delete childEnv.DYNAMOE_ADDON;
    delete childEnv.DYNAMOE_DEVICE;
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("'auto' passes over a CUDA binary without a usable GPU and says why; 'cuda' on a layer then names that reason", () => {
    layout({ [CPU_FILE]: 'cpu', [CUDA_FILE]: 'cpu' }); // a CPU-only build in the CUDA slot: loads, reports notBuilt
    const result = probe({});
    expect(result.binary).toMatchObject({ kind: 'cpu', source: 'prebuild', requested: 'auto', requestedBy: "the default, 'auto'" });
    expect(result.binary!.path).toBe(path.join(dir, 'prebuilds', CPU_FILE));
    expect(result.binary!.skipped).toEqual([{ path: path.join(dir, 'prebuilds', CUDA_FILE), kind: 'cuda', reason: expect.stringMatching(/^notBuilt \(/) }]);
    expect(result.cudaLayer).toBe('ERR_DYNAMOE_DEVICE');
    expect(result.cudaLayerMessage).toMatch(/CUDA binary .*dynamoe\.node was passed over: notBuilt/);
    expect(result.cudaLayerMessage).toMatch(/Fix: /);
  });

  it('DYNAMOE_DEVICE=cpu never maps the CUDA binary into the process', () => {
    layout({ [CPU_FILE]: 'cpu', [CUDA_FILE]: 'cpu' });
    const result = probe({ DYNAMOE_DEVICE: 'cpu' });
    expect(result.binary).toMatchObject({ kind: 'cpu', requested: 'cpu', requestedBy: 'DYNAMOE_DEVICE=cpu', skipped: [] });
    expect(result.mapped).toContain(path.join(dir, 'prebuilds', CPU_FILE));
    expect(result.mapped).not.toContain(path.join(dir, 'prebuilds', CUDA_FILE));
    expect(result.cudaLayerMessage).toMatch(/because DYNAMOE_DEVICE=cpu chose it\. Fix: set DYNAMOE_DEVICE=auto or cuda/);
  });

  it("'auto' passes over a CUDA binary that does not load", () => {
    layout({ [CPU_FILE]: 'cpu', [CUDA_FILE]: 'garbage' });
    const result = probe({});
    expect(result.binary!.kind).toBe('cpu');
    expect(result.binary!.skipped[0].reason).toMatch(/^did not load: .*(invalid ELF header|too short)/);
  });

  // A CPU-only build in the CUDA slot is never usable for CUDA, so this holds on GPU machines too.
  it('DYNAMOE_DEVICE=cuda without a usable GPU: ERR_DYNAMOE_DEVICE listing what was tried, the machine and the fix', () => {
    layout({ [CPU_FILE]: 'cpu', [CUDA_FILE]: 'cpu' });
    const result = probe({ DYNAMOE_DEVICE: 'cuda' });
    expect(result.code).toBe('ERR_DYNAMOE_DEVICE');
    expect(result.message).toMatch(/^device 'cuda' was requested \(DYNAMOE_DEVICE=cuda\) but no usable CUDA binary was found\./);
    expect(result.message).toMatch(/tried:\n {2}cuda binary .*linux-x64-cuda\/dynamoe\.node \(prebuild\): notBuilt/);
    expect(result.message).toMatch(/\nsystem {4}linux-x64, glibc \d+\.\d+, Node v\d+/);
    expect(result.message).toMatch(/\ncpu {7}.*features: /);
    expect(result.message).toMatch(/\nnvidia {4}driver: /);
    expect(result.message).toMatch(/\nFix: .+\.$/);
  });

  it('a process keeps its first binary: asking for CUDA after the CPU binary loaded is ERR_DYNAMOE_DEVICE', () => {
    layout({ [CPU_FILE]: 'cpu' });
    const result = probe({ DYNAMOE_DEVICE: 'cpu' }, 'cuda');
    expect(result.second).toBe('ERR_DYNAMOE_DEVICE');
    expect(probe({ DYNAMOE_DEVICE: 'cpu' }, 'cpu').second).toBe('ok');
    expect(probe({}, 'auto').second).toBe('ok');
    expect(probe({}, 'gpu').second).toBe('ERR_DYNAMOE_VALUE');
  });

  it('an unknown DYNAMOE_DEVICE is ERR_DYNAMOE_VALUE naming it', () => {
    layout({ [CPU_FILE]: 'cpu' });
    const result = probe({ DYNAMOE_DEVICE: 'gpu' });
    expect(result.code).toBe('ERR_DYNAMOE_VALUE');
    expect(result.message).toBe("DYNAMOE_DEVICE must be cpu, cuda or auto, got 'gpu'");
  });

  it('no binary at all: ERR_DYNAMOE_BINDING with platform, libc, CPU features, driver and the exact fix', () => {
    layout({});
    const result = probe({});
    expect(result.code).toBe('ERR_DYNAMOE_BINDING');
    expect(result.message).toMatch(/^could not load the dynamoe native addon \(device 'auto', the default, 'auto'\)\./);
    expect(result.message).toMatch(/No native build was found for platform=linux arch=x64/);
    expect(result.message).toMatch(/\nsystem {4}linux-x64, glibc /);
    expect(result.message).toMatch(/\ncpu {7}.*features: .*avx2|\ncpu {7}.*features: none/);
    expect(result.message).toMatch(/Fix: this install has none .*: run `npm rebuild dynamoe --build-from-source` to compile the CPU addon/);
  });

  it('`dynamoe doctor` lists the binaries and what each device would do; exit 1 when the request cannot run', () => {
    layout({ [CPU_FILE]: 'cpu', [CUDA_FILE]: 'garbage' });
    const cli = path.join(dir, 'dist', 'lib', 'cli.js');
    const ok = spawnSync(process.execPath, [cli, 'doctor'], { cwd: dir, env: childEnv, encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^dynamoe doctor \(package at /);
    expect(ok.stdout).toMatch(/\n {2}cuda {2}prebuilds\/linux-x64-cuda\/dynamoe\.node \(prebuild\): does not load: /);
    expect(ok.stdout).toMatch(/\n {2}cpu {3}prebuilds\/linux-x64\/dynamoe\.glibc\.node \(prebuild\): loads/);
    expect(ok.stdout).toMatch(/\n\* device 'auto' +-> cpu binary: CPU, \w+ kernels, \d+ threads \(CUDA not usable: did not load/);
    expect(ok.stdout).toMatch(/\n {2}device 'cuda' +-> fails: did not load/);
    const failed = spawnSync(process.execPath, [cli, 'doctor'], { cwd: dir, env: { ...childEnv, DYNAMOE_DEVICE: 'cuda' }, encoding: 'utf8' });
    expect(failed.status).toBe(1);
    expect(failed.stdout).toMatch(/\n\* device 'cuda' +-> fails: .*\n +fix: /);
    const bogus = spawnSync(process.execPath, [cli, 'doctor'], { cwd: dir, env: { ...childEnv, DYNAMOE_DEVICE: 'gpu' }, encoding: 'utf8' });
    expect(bogus.status).toBe(1);
    expect(bogus.stdout).toMatch(/DYNAMOE_DEVICE=gpu is not one of cpu, cuda, auto/);
  });
});

describe('worker_threads', () => {
  it('several threads load the addon at once and compute what the main thread does', () => {
    const script = `
      const { Worker, isMainThread, parentPort } = require('worker_threads');
      async function job() {
        const d = require(${JSON.stringify(path.join(root, 'dist', 'lib'))});
        const layer = d.MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 2, dtype: 'f32', router: new Float32Array([1, 0, 0, 1]),
          gate: new Float32Array([1, 0, 0, 1]), up: new Float32Array([0, 1, 1, 0]), down: new Float32Array([1, 1, 2, -1]) });
        const { output } = await layer.forward(new Float32Array([1, 2, -1, 3]), { tokens: 2, policy: { kind: 'top-p', p: 0.6 } });
        const r = await d.route(new Float32Array([0.2, 1.0, 0.0, 0.8]), { tokens: 1, experts: 4, policy: { kind: 'top-p', p: 0.4 } });
        layer.dispose();
        return { output: Array.from(output), ids: Array.from(r.ids), binary: d.backendInfo().binary.path };
      }
      if (isMainThread) {
        const workers = Array.from({ length: 6 }, () => new Promise((resolve, reject) => {
          const w = new Worker(__filename);
          w.on('message', resolve); w.on('error', reject); w.on('exit', (c) => c && reject(new Error('worker exit ' + c)));
        }));
        job().then(async (main) => console.log(JSON.stringify({ main, workers: await Promise.all(workers) })));
      } else job().then((r) => parentPort.postMessage(r));
    `;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-workers-'));
    try {
      const file = path.join(dir, 'workers.js');
      fs.writeFileSync(file, script);
      const result = JSON.parse(execFileSync(process.execPath, [file], { encoding: 'utf8' })) as { main: unknown; workers: unknown[] };
      expect(result.workers).toHaveLength(6);
      for (const worker of result.workers) expect(worker).toEqual(result.main);
      expect((result.main as { ids: number[] }).ids).toEqual([1, 3, -1, -1]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

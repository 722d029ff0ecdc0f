// The npm package as users get it: `npm pack`, then `npm install <tarball>` into a fresh project with no compiler on
// PATH (the prebuild must load; nothing may compile), a forward from CommonJS and from ESM, the types from a
// TypeScript consumer, `npx dynamoe doctor`, and `--build-from-source` compiling from the packaged sources (against
// the running Node's headers, with nothing downloaded).
// Needs the prebuilds: run with `npm run prebuildify && npm run test:package` (a CI step, not part of `npm test`).
import { execFileSync, spawnSync, SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MoELayer } from '../../lib';

const root = path.resolve(__dirname, '..', '..');
const platformArch = `${process.platform}-${process.arch}`;
const INSTALL_TIMEOUT_MS = 600_000;
jest.setTimeout(INSTALL_TIMEOUT_MS);

const FORWARD = `
  const layer = MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 2, dtype: 'f32', router: new Float32Array([1, 0, 0, 1]),
    gate: new Float32Array([1, 0, 0, 1]), up: new Float32Array([0, 1, 1, 0]), down: new Float32Array([1, 1, 2, -1]) });
  const { output } = await layer.forward(new Float32Array([1, 2, -1, 3]), { tokens: 2, policy: { kind: 'top-p', p: 0.6 } });
  console.log(JSON.stringify({ output: Array.from(output), binary: backendInfo().binary }));
`;

// The same forward in this process (the kernels are checked against the float64 reference in test/30).
async function expectedOutput(): Promise<number[]> {
  const layer = MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 2, dtype: 'f32', router: new Float32Array([1, 0, 0, 1]),
    gate: new Float32Array([1, 0, 0, 1]), up: new Float32Array([0, 1, 1, 0]), down: new Float32Array([1, 1, 2, -1]) });
  const { output } = await layer.forward(new Float32Array([1, 2, -1, 3]), { tokens: 2, policy: { kind: 'top-p', p: 0.6 } });
  return Array.from(output);
}

/** A PATH directory holding only node, npm, npx and sh (npm runs scripts with it): no cc, c++, make or python. */
function nodeOnlyBin(dir: string): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  for (const tool of ['npm', 'npx', 'sh']) {
    const found = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    fs.symlinkSync(fs.realpathSync(found), path.join(bin, tool));
  }
  return bin;
}

/** The environment of a fresh shell: no npm_* settings inherited from the npm that runs this test. */
function cleanEnv(pathValue: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.toLowerCase().startsWith('npm_') && key !== 'DYNAMOE_ADDON' && key !== 'DYNAMOE_DEVICE') env[key] = value;
  }
  return { ...env, PATH: pathValue, npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false' };
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS });
}

function expectSuccess(result: SpawnSyncReturns<string>): void {
  if (result.status !== 0) throw new Error(`exit ${result.status}:\n${result.stdout}\n${result.stderr}`);
}

function newProject(parent: string, name: string): string {
  const dir = path.join(parent, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  return dir;
}

interface ForwardReport {
  output: number[];
  binary: { path: string; kind: string; source: string; skipped: Array<{ kind: string; reason: string }> };
}

describe('npm pack + npm install <tarball>', () => {
  let work: string;
  let tarball: string;
  let project: string;
  let env: NodeJS.ProcessEnv;
  let manifest: { binaries: Array<{ file: string; kind: string; glibc: string }> };

  beforeAll(() => {
    const manifestFile = path.join(root, 'prebuilds', 'manifest.json');
    if (!fs.existsSync(manifestFile)) throw new Error('no prebuilds/manifest.json: run `npm run prebuildify` first');
    manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-pack-'));
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }),
    ) as Array<{ filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> }>;
    tarball = path.join(work, packed[0].filename);
    const files = packed[0].files.map((f) => f.path);
    console.log(`tarball ${packed[0].filename}: ${(packed[0].size / 1e6).toFixed(2)} MB packed, ` +
      `${(packed[0].unpackedSize / 1e6).toFixed(2)} MB unpacked, ${files.length} files`);
    // Only what users need: compiled JS and types, the prebuilds, and the sources binding.gyp compiles.
    for (const file of files) expect(file).toMatch(/^(dist\/lib\/.*\.(js|d\.ts)|native\/.*|cuda\/cuda_(backend\.h|unavailable\.cpp)|prebuilds\/.*|models\/.*|binding\.gyp|package\.json|README\.md|LICENSE)$/);
    // The trained model `npm start`, `run --demo` and `serve` default to.
    expect(files).toContain('models/dynamoe-tiny-topp/model.safetensors');
    expect(files).toContain(`prebuilds/${platformArch}/dynamoe.glibc.node`);

    const bin = nodeOnlyBin(work);
    env = cleanEnv(bin);
    for (const tool of ['cc', 'gcc', 'c++', 'g++', 'clang', 'make', 'python3']) {
      expect(run('sh', ['-c', `command -v ${tool}`], work, env).status).not.toBe(0);
    }
    project = newProject(work, 'consumer');
    const install = run('npm', ['install', tarball], project, env);
    expectSuccess(install);
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('installs from the prebuild without compiling anything', () => {
    const installed = path.join(project, 'node_modules', 'dynamoe');
    expect(fs.existsSync(path.join(installed, 'prebuilds', platformArch, 'dynamoe.glibc.node'))).toBe(true);
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
  });

  async function checkOutput(report: ForwardReport): Promise<void> {
    const expected = await expectedOutput();
    report.output.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  }

  async function checkReport(report: ForwardReport): Promise<void> {
    await checkOutput(report);
    expect(report.binary.source).toBe('prebuild');
    const prebuilds = path.join(project, 'node_modules', 'dynamoe', 'prebuilds');
    if (report.binary.kind === 'cpu') {
      expect(report.binary.path).toBe(path.join(prebuilds, platformArch, 'dynamoe.glibc.node'));
      // the shipped CUDA binary, when there is one, was tried first and passed over with its reason
      if (manifest.binaries.some((b) => b.kind === 'cuda')) expect(report.binary.skipped[0]).toMatchObject({ kind: 'cuda' });
    } else {
      expect(report.binary.path).toBe(path.join(prebuilds, `${platformArch}-cuda`, 'dynamoe.node'));
    }
  }

  it('runs a forward from CommonJS', async () => {
    fs.writeFileSync(path.join(project, 'forward.cjs'), `const { MoELayer, backendInfo } = require('dynamoe');\n(async () => {${FORWARD}})();\n`);
    const result = run('node', ['forward.cjs'], project, env);
    expectSuccess(result);
    await checkReport(JSON.parse(result.stdout) as ForwardReport);
  });

  it('runs a forward from ESM', async () => {
    fs.writeFileSync(path.join(project, 'forward.mjs'), `import { MoELayer, backendInfo } from 'dynamoe';\n${FORWARD}\n`);
    const result = run('node', ['forward.mjs'], project, env);
    expectSuccess(result);
    await checkReport(JSON.parse(result.stdout) as ForwardReport);
  });

  it('type-checks a TypeScript consumer, CommonJS and ESM, and rejects misuse', () => {
    const consumer = `
      import { MoELayer, route, loadBackend, DynamoeError } from 'dynamoe';
      import type { RoutingPolicy, BackendInfo, MoEForwardResult, ErrorCode } from 'dynamoe';
      export async function main(): Promise<number> {
        const info: BackendInfo = loadBackend('cpu');
        const kind: 'cpu' | 'cuda' = info.binary.kind;
        const policy: RoutingPolicy = { kind: 'top-p', p: 0.5, maxExperts: 4 };
        const layer = MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 1, dtype: 'f32', router: new Float32Array(2),
          gate: new Float32Array(2), up: new Float32Array(2), down: new Float32Array(2) });
        const result: MoEForwardResult = await layer.forward(new Float32Array(2), { tokens: 1, policy });
        const routed = await route(new Float32Array(4), { tokens: 1, experts: 4, policy });
        const code: ErrorCode | undefined = result instanceof DynamoeError ? result.code : undefined;
        // @ts-expect-error: not a policy kind
        const wrong: RoutingPolicy = { kind: 'top-z', p: 0.5 };
        // @ts-expect-error: not a dtype
        MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 1, dtype: 'int8', router: new Float32Array(2), gate: new Float32Array(2), up: new Float32Array(2), down: new Float32Array(2) });
        // @ts-expect-error: not a device
        loadBackend('tpu');
        return result.output.length + routed.ids.length + kind.length + (code ? 1 : 0) + (wrong ? 0 : 1);
      }
    `;
    fs.writeFileSync(path.join(project, 'consumer.cts'), consumer);
    fs.writeFileSync(path.join(project, 'consumer.mts'), consumer);
    const tsconfig = {
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        typeRoots: [path.join(root, 'node_modules', '@types')],
        types: ['node'],
      },
      files: ['consumer.cts', 'consumer.mts'],
    };
    fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify(tsconfig));
    const result = run('node', [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project, env);
    expectSuccess(result);
  });

  it('`npx dynamoe doctor` shows the shipped binaries with the glibc each needs', () => {
    const result = run('npx', ['--no-install', 'dynamoe', 'doctor'], project, env);
    expectSuccess(result);
    const cpu = manifest.binaries.find((b) => b.kind === 'cpu')!;
    expect(result.stdout).toContain(`cpu   prebuilds/${cpu.file} (needs glibc ${cpu.glibc}, `);
    expect(result.stdout).toMatch(/\* device 'auto' +-> (cpu|cuda) binary/);
  });

  it('--build-from-source compiles the CPU addon from the packaged sources against local Node headers, and uses it', () => {
    const fromSource = newProject(work, 'from-source');
    // No ~/.npmrc (so no nodedir setting) and no way to reach nodejs.org: the headers must come from this Node.
    const home = fs.mkdtempSync(path.join(work, 'home-'));
    const cache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
    const sourceEnv = { ...cleanEnv(process.env.PATH ?? ''), HOME: home, npm_config_cache: cache };
    const install = run('npm', ['install', tarball, '--build-from-source', '--foreground-scripts'], fromSource, sourceEnv);
    expectSuccess(install);
    expect(install.stdout).toMatch(/dynamoe: compiling the CPU addon: .*node-gyp\S* rebuild --nodedir=\S+/);
    const built = path.join(fromSource, 'node_modules', 'dynamoe', 'build', 'Release', 'dynamoe.node');
    expect(fs.existsSync(built)).toBe(true);
    fs.writeFileSync(path.join(fromSource, 'forward.cjs'), `const { MoELayer, backendInfo } = require('dynamoe');\n(async () => {${FORWARD}})();\n`);
    const result = run('node', ['forward.cjs'], fromSource, { ...env, DYNAMOE_DEVICE: 'cpu' });
    expectSuccess(result);
    const report = JSON.parse(result.stdout) as ForwardReport;
    expect(report.binary).toMatchObject({ path: built, kind: 'cpu', source: 'compiled' });
    return checkOutput(report);
  });
});

// The compiled package (dist/, built by `npm test` before jest) loads from CommonJS and from ESM by its name.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const script = `
  const r = await route(new Float32Array([0.2, 1.0, 0.0, 0.8, 0.4, 0.6]), { tokens: 1, experts: 6, policy: { kind: 'top-p', p: 0.4 } });
  const layer = MoELayer.fromWeights({ hidden: 2, ffn: 1, experts: 1, dtype: 'f32', router: new Float32Array(2),
    gate: new Float32Array([1, 0]), up: new Float32Array([0, 1]), down: new Float32Array([1, 1]) });
  const { output } = await layer.forward(new Float32Array([1, 2]), { tokens: 1, policy: { kind: 'top-k', k: 1 } });
  console.log(JSON.stringify({ ids: Array.from(r.ids.slice(0, 3)), output: Array.from(output), error: new DynamoeError('ERR_DYNAMOE_TYPE', 'x').code }));
`;

describe('module formats', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-consumer-'));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(root, path.join(dir, 'node_modules', 'dynamoe'), 'dir');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  // silu(1) * 2 = 1.4621172; down = [1, 1]; one expert with weight 1.
  const expected = { ids: [1, 3, -1], output: [1.4621171951293945, 1.4621171951293945], error: 'ERR_DYNAMOE_TYPE' };

  it('require("dynamoe") works from CommonJS', () => {
    const file = path.join(dir, 'consumer.cjs');
    fs.writeFileSync(file, `const { route, MoELayer, DynamoeError } = require('dynamoe');\n(async () => {${script}})();\n`);
    expect(JSON.parse(execFileSync(process.execPath, [file], { encoding: 'utf8' }))).toEqual(expected);
  });

  it('import { ... } from "dynamoe" works from ESM (named exports)', () => {
    const file = path.join(dir, 'consumer.mjs');
    fs.writeFileSync(file, `import { route, MoELayer, DynamoeError } from 'dynamoe';\n${script}\n`);
    expect(JSON.parse(execFileSync(process.execPath, [file], { encoding: 'utf8' }))).toEqual(expected);
  });

  it('ships type declarations for the public API', () => {
    const types = fs.readFileSync(path.join(root, 'dist/lib/index.d.ts'), 'utf8');
    for (const name of ['route', 'MoELayer', 'RoutingPolicy', 'RoutingResult', 'DynamoeError', 'setThreads']) {
      expect(types).toContain(name);
    }
  });
});

// The families' routers in whole models: dynamic policies on a GLM-4.5-style sigmoid router (group-limited, with a
// selection bias) against the float64 reference, and zero-computation experts counted apart in the statistics and
// the sweep's FLOPs.
import * as path from 'path';
import { createSyntheticModel, loadModel } from '../lib';
import { runSweep } from '../lib/toolkit/sweep';
import { maxRelativeError } from './reference/layer';
import { refModelForward } from './reference/model';
import { RefPolicy } from './reference/policy';
import { makeTinyModel, tempDir, writeHfCheckpoint } from './model-fixtures';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11];

let temp: ReturnType<typeof tempDir>;
beforeAll(() => {
  temp = tempDir('dynamoe-families-');
});
afterAll(() => temp.cleanup());

describe('glm4-moe (sigmoid router, selection bias, best 2 of 4 groups)', () => {
  const model = makeTinyModel('glm4-moe', 11);
  const policies: Array<[string, RefPolicy]> = [
    ['top-p:0.5', { kind: 'top-p', p: 0.5 }],
    ['threshold:0.2', { kind: 'threshold', tau: 0.2 }],
    ['top-k:1', { kind: 'top-k', k: 1 }],
  ];

  test.each(policies)('%s runs on the candidates\' share and matches the float64 reference', async (label, policy) => {
    const dir = path.join(temp.dir, 'glm');
    await writeHfCheckpoint(dir, model, 'f32');
    const loaded = await loadModel(dir);
    try {
      expect(loaded.info.defaultPolicy).toEqual(['top-k:3', 'top-k:3']);
      const withPolicy = {
        ...model,
        layers: model.layers.map((l) => (l.ffn.kind === 'moe' ? { ...l, ffn: { ...l.ffn, policy } } : l)),
      };
      const reference = refModelForward(withPolicy, TOKENS);
      const { logits, stats } = await loaded.forward(TOKENS, { policy: label, stats: true });
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
      expect(stats!.layers.map((l) => l.histogram.reduce((s, n, c) => s + n * c, 0))).toEqual(
        reference.counts.map((c) => c.reduce((s, n) => s + n, 0)),
      );
      expect(stats!.policy).toBe(label);
    } finally {
      loaded.dispose();
    }
  });

  test('a policy needing more experts than the kept groups hold is refused', async () => {
    const dir = path.join(temp.dir, 'glm');
    await writeHfCheckpoint(dir, model, 'f32');
    const loaded = await loadModel(dir);
    try {
      // 2 of 4 groups of 2 experts: 4 candidates.
      await expect(loaded.forward(TOKENS, { policy: 'top-k:5' })).rejects.toMatchObject({ code: 'ERR_DYNAMOE_POLICY' });
    } finally {
      loaded.dispose();
    }
  });
});

test('zero-computation experts: statistics count FFN experts apart, the sweep counts only their FLOPs', async () => {
  const model = await createSyntheticModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64, zeroExperts: 4 });
  try {
    const moe = model.info.layers[0];
    expect(moe.kind === 'moe' && moe.zeroExperts).toEqual({ count: 4, kind: 'identity' });
    const tokens = Array.from({ length: 40 }, (_, i) => (i * 37) % 256);
    const { stats } = await model.forward(tokens, { stats: true, policy: 'top-k:4' });
    for (const layer of stats!.layers) {
      expect(layer.expertsPerToken).toBe(4);
      expect(layer.expertLoad.length).toBe(12);
      // FFN experts = the routed slots whose ids are below 8.
      const ffnPairs = layer.expertLoad.slice(0, 8).reduce((a, b) => a + b, 0);
      expect(layer.ffnExpertsPerToken).toBeCloseTo(ffnPairs / tokens.length, 12);
      expect(layer.ffnExpertsPerToken).toBeLessThan(4);
    }
    const report = await runSweep(model, [Int32Array.from(tokens)], [{ kind: 'top-k', k: 4 }]);
    const point = report.points[0];
    // The trained policy is top-2: top-4's FLOPs follow its FFN experts, not its 4 slots.
    const ratio = point.stats.ffnExpertsPerToken / report.trained.stats.ffnExpertsPerToken;
    expect(point.expertFlopsSaved).toBeCloseTo(1 - ratio, 9);
  } finally {
    model.dispose();
  }
});

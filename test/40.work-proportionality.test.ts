// Dynamic routing must cost what it uses: the rows the expert kernels multiply (work.gateUpRows / downRows) are
// exactly the (token, expert) pairs the router kept, expert by expert, for every policy on the same layer.
import { MoEForwardResult, RoutingPolicy } from '../lib';
import { buildLayer, LayerSpec, makeInput, makeRawWeights, referenceWeights } from './layer-fixtures';
import { fragileToken, idHistogram, refRoute, refRouterLogits, sumOf } from './reference';

const spec: LayerSpec = { hidden: 72, ffn: 40, experts: 16, dtype: 'f32', seed: 4040, routerScale: 4 };
const tokens = 256;
const raw = makeRawWeights(spec);
const layer = buildLayer(spec, raw);
const x = makeInput(4041, tokens, spec.hidden);
afterAll(() => layer.dispose());

const POLICIES: [string, RoutingPolicy][] = [
  ['top-1', { kind: 'top-k', k: 1 }],
  ['top-2', { kind: 'top-k', k: 2 }],
  ['top-p 0.4', { kind: 'top-p', p: 0.4 }],
  ['top-p 0.8, maxExperts 3', { kind: 'top-p', p: 0.8, maxExperts: 3 }],
  ['threshold 0.2', { kind: 'threshold', tau: 0.2 }],
  ['top-p 1 (all experts)', { kind: 'top-p', p: 1 }],
];

const results = new Map<string, MoEForwardResult>();
async function run(name: string, policy: RoutingPolicy): Promise<MoEForwardResult> {
  if (!results.has(name)) results.set(name, await layer.forward(x, { tokens, policy }));
  return results.get(name)!;
}

describe('work follows the routing, expert by expert', () => {
  it.each(POLICIES)('%s: sum(counts) == sum(expertLoad) == sum(gateUpRows) == sum(downRows)', async (name, policy) => {
    const { routing, work } = await run(name, policy);
    const slots = sumOf(routing.counts);
    expect(sumOf(routing.expertLoad)).toBe(slots);
    expect(sumOf(work.gateUpRows)).toBe(slots);
    expect(sumOf(work.downRows)).toBe(slots);
    expect(work.gateUpRows.length).toBe(spec.experts);
    expect(work.downRows.length).toBe(spec.experts);
  });

  it.each(POLICIES)('%s: per-expert rows equal expertLoad, the histogram of the ids; idle experts do no work', async (name, policy) => {
    const { routing, work } = await run(name, policy);
    const histogram = Array.from(idHistogram(routing.ids, spec.experts));
    expect(Array.from(routing.expertLoad)).toEqual(histogram);
    expect(Array.from(work.gateUpRows)).toEqual(histogram);
    expect(Array.from(work.downRows)).toEqual(histogram);
    histogram.forEach((load, e) => {
      if (load === 0) {
        expect([e, work.gateUpRows[e], work.downRows[e]]).toEqual([e, 0, 0]);
      }
    });
  });

  it('top-1 does T rows, top-2 does 2T rows, top-p 1 does E*T rows', async () => {
    expect(sumOf((await run('top-1', POLICIES[0][1])).work.gateUpRows)).toBe(tokens);
    expect(sumOf((await run('top-2', POLICIES[1][1])).work.gateUpRows)).toBe(2 * tokens);
    expect(sumOf((await run('top-p 1 (all experts)', POLICIES[5][1])).work.downRows)).toBe(spec.experts * tokens);
  });

  it('top-p 0.4 does exactly the rows the float64 reference routes (between top-1 and top-2 on this peaked router)', async () => {
    const policy = POLICIES[2][1];
    const { routing, work } = await run('top-p 0.4', policy);
    const ref = referenceWeights(spec, raw);
    const { logits } = refRouterLogits(ref, x, tokens);
    const expected = refRoute(logits, tokens, spec.experts, policy);
    let fragile = 0;
    for (let t = 0; t < tokens; t++) {
      const E = spec.experts;
      if (fragileToken(expected.probs.subarray(t * E, (t + 1) * E), policy, { logits: logits.subarray(t * E, (t + 1) * E), logitError: 1e-4 })) fragile++;
    }
    expect(fragile).toBeLessThanOrEqual(3);
    const rows = sumOf(work.gateUpRows);
    expect(Math.abs(rows - sumOf(expected.counts))).toBeLessThanOrEqual(fragile * spec.experts);
    if (fragile === 0) expect(Array.from(work.gateUpRows)).toEqual(Array.from(expected.expertLoad));
    // the point of dynamic routing on this layer: fewer expert rows than top-2, more than top-1
    expect(rows).toBeGreaterThan(tokens);
    expect(rows).toBeLessThan(2 * tokens);
    expect(sumOf(routing.counts)).toBe(rows);
  });

  it('a bigger p never does less work on the same input', async () => {
    let previous = 0;
    for (const p of [0.1, 0.3, 0.5, 0.7, 0.9, 1]) {
      const { work } = await layer.forward(x, { tokens, policy: { kind: 'top-p', p } });
      const rows = sumOf(work.gateUpRows);
      expect(rows).toBeGreaterThanOrEqual(previous);
      previous = rows;
    }
    expect(previous).toBe(spec.experts * tokens);
  });
});

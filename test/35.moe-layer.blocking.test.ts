// Shapes large enough to take every blocking path of the CPU kernels: several K slices per panel (f32 slices
// hold 128 k, 16-bit ones 256), several row chunks per expert, many row tiles, a shared expert, and a partial
// last panel (ffn and hidden not multiples of 16 / 32). Checked against the float64 reference on every ISA.
import { cpuInfo, MoELayer, RoutingPolicy } from '../lib';
import { setCpuIsa } from '../lib/native-internals';
import { buildLayer, checkCpuForward, LayerSpec, makeInput, makeRawWeights, referenceWeights } from './layer-fixtures';
import { WeightDtype } from './reference';

const ISAS = cpuInfo().supportedIsas;
const ORIGINAL_ISA = cpuInfo().isa;
const TOKENS = 700;  // each expert gets more rows than one row chunk (256)
const POLICY: RoutingPolicy = { kind: 'top-k', k: 1 };

describe.each(['f32', 'bf16', 'f16'] as WeightDtype[])('blocking paths, %s weights', (dtype) => {
  const spec: LayerSpec = { hidden: 530, ffn: 301, experts: 2, dtype, shared: { ffn: 45, gated: true }, seed: 97 };
  const raw = makeRawWeights(spec);
  const ref = referenceWeights(spec, raw);
  const x = makeInput(5, TOKENS, spec.hidden);
  let layer: MoELayer;
  beforeAll(() => {
    layer = buildLayer(spec, raw);
  });
  afterAll(() => {
    layer.dispose();
    setCpuIsa(ORIGINAL_ISA);
  });

  // Within 1e-4, or for kernels that round activations, within the rounding's bounds (checkCpuForward).
  it.each(ISAS.map((isa) => [isa]))('%s kernels agree with the float64 reference', async (isa) => {
    setCpuIsa(isa);
    const result = await layer.forward(x, { tokens: TOKENS, policy: POLICY });
    // ~200 rows per expert: more than one row chunk at hidden 530 (about 90 rows fit the chunk budget).
    expect(Math.max(...result.routing.expertLoad)).toBeGreaterThan(120);
    checkCpuForward(isa, dtype, ref, x, TOKENS, POLICY, result, 1e-4);
  });
});

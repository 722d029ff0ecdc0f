// Shapes large enough to take every blocking path of the CPU kernels: several K slices per panel (f32 slices
// hold 128 k, 16-bit ones 256), several row chunks per expert, many row tiles, a shared expert, and a partial
// last panel (ffn and hidden not multiples of 16 / 32), and rows 2 KiB apart, which the GEMMs stage once per GEMM.
// Checked against the float64 reference on every ISA.
import { cpuInfo, MoELayer, RoutingPolicy } from '../lib';
import { setCpuIsa } from '../lib/backend/internals';
import { buildLayer, checkCpuForward, LayerSpec, makeInput, makeRawWeights, referenceWeights } from './layer-fixtures';
import { WeightDtype } from './reference';

const ISAS = cpuInfo().supportedIsas;
const ORIGINAL_ISA = cpuInfo().isa;
const TOKENS = 700;  // each expert gets more rows than one row chunk (256)
const POLICY: RoutingPolicy = { kind: 'top-k', k: 1 };

/** Runs `spec` at `tokens` on every supported ISA against the float64 reference; `minLoad`: rows the busiest expert
 * must get, so the paths the shape is meant to take are taken. */
function checkEveryIsa(title: string, makeSpec: (dtype: WeightDtype) => LayerSpec, tokens: number, policy: RoutingPolicy,
  minLoad: number): void {
  describe.each(['f32', 'bf16', 'f16'] as WeightDtype[])(`${title}, %s weights`, (dtype) => {
    const spec = makeSpec(dtype);
    const raw = makeRawWeights(spec);
    const ref = referenceWeights(spec, raw);
    const x = makeInput(5, tokens, spec.hidden);
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
      const result = await layer.forward(x, { tokens, policy });
      expect(Math.max(...result.routing.expertLoad)).toBeGreaterThan(minLoad);
      checkCpuForward(isa, dtype, ref, x, tokens, policy, result, 1e-4);
    });
  });
}

// ~200 rows per expert: more than one row chunk at hidden 530 (about 90 rows fit the chunk budget).
checkEveryIsa(
  'blocking paths',
  (dtype) => ({ hidden: 530, ffn: 301, experts: 2, dtype, shared: { ffn: 45, gated: true }, seed: 97 }),
  TOKENS,
  POLICY,
  120,
);

// f32 rows 2 KiB apart (hidden 512, and the 512-wide intermediate the down projection reads): both GEMMs read a
// copy of their rows staged once per GEMM, gathered by token for the gate/up projection.
checkEveryIsa(
  'rows staged once per GEMM',
  (dtype) => ({ hidden: 512, ffn: 512, experts: 3, dtype, shared: { ffn: 64, gated: false }, seed: 41 }),
  300,
  { kind: 'top-k', k: 2, normalize: true },
  150,
);

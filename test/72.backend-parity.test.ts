// Backend parity, in the spirit of llama.cpp's test-backend-ops: every row of test/parity's table (op x shape x
// dtype x policy, inputs from a seed) runs on every backend present, and is held to the float64 reference of
// test/reference.ts and, off the CPU, to the CPU backend on the same inputs:
//  route: bit-identical to the CPU (ids, weight bits, counts, expertLoad): random shapes up to 300 experts x 5000
//    tokens, every policy, ties, ulp-neighbours, extreme logits, probabilities with zeros; ROUTING.md's examples;
//    4096 experts (and 4097, which CUDA may refuse);
//  moe_layer: f32/f16/bf16, with and without a (gated) shared expert, top-k/top-p/threshold, tokens 1..16384;
//    experts nobody picks, one expert taking every token, one expert, kMax = experts, 4096 experts (4097: CUDA
//    refuses); the dtype really used; f16/bf16 weights in every accepted form.
// One jest test per (row, backend). CPU rows are the table's smaller rows (CI has no GPU: they keep this file
// short there); every CUDA row runs the CPU as its baseline. Without a GPU the CUDA rows are reported as skipped
// and one line says why (test/71 covers the no-GPU behaviour; test/74 the CUDA layer's own behaviour).
import {
  ALL_BACKENDS,
  checkRow,
  describeOn,
  disposeLayers,
  DISTRIBUTIONS,
  DTYPES,
  layerTally,
  OPS,
  PARITY_TABLE,
  randomRouteRows,
  rowsFor,
  SHARED_MODES,
  sharedMode,
  TOKEN_COUNTS,
  layerRows,
  warnIfCudaAbsent,
} from './parity';

warnIfCudaAbsent('CUDA backend-parity rows');

describe('the parity table', () => {
  it('route: random rows for every policy kind and distribution, 1..300 experts, 1..5000 tokens', () => {
    const rows = randomRouteRows();
    expect(rows.length).toBeGreaterThan(130);
    expect(new Set(rows.map((c) => c.policy.kind))).toEqual(new Set(['top-k', 'top-p', 'threshold']));
    expect(new Set(rows.map((c) => ('distribution' in c.scores ? c.scores.distribution : undefined)))).toEqual(new Set(DISTRIBUTIONS));
    expect(Math.min(...rows.map((c) => c.shape.experts))).toBe(1);
    expect(Math.max(...rows.map((c) => c.shape.experts))).toBe(300);
    expect(Math.min(...rows.map((c) => c.shape.tokens))).toBe(1);
    expect(Math.max(...rows.map((c) => c.shape.tokens))).toBe(5000);
  });

  it('moe_layer: every dtype, shared mode, policy kind and token count of the brief, and 16384 tokens', () => {
    const rows = layerRows();
    for (const dtype of DTYPES) {
      for (const tokens of [...TOKEN_COUNTS, 16384]) {
        if (tokens === 16384 && dtype === 'f16') continue;
        expect([dtype, tokens, rows.some((c) => c.dtype === dtype && c.shape.tokens === tokens)]).toEqual([dtype, tokens, true]);
      }
    }
    expect(new Set(rows.map((c) => sharedMode(c.shape)))).toEqual(new Set(SHARED_MODES));
    expect(new Set(rows.map((c) => c.policy.kind))).toEqual(new Set(['top-k', 'top-p', 'threshold']));
  });

  it('names are unique within an op, and every op has CPU rows of every policy kind', () => {
    for (const op of OPS) {
      const names = PARITY_TABLE[op].map((row) => row.name);
      expect(new Set(names).size).toBe(names.length);
      expect(new Set(rowsFor(op, 'cpu').map((row) => row.policy.kind))).toEqual(new Set(['top-k', 'top-p', 'threshold']));
    }
  });
});

for (const backend of ALL_BACKENDS) {
  describeOn(backend)(`on ${backend}`, () => {
    afterAll(disposeLayers);

    for (const op of OPS) {
      describe(op, () => {
        it.each(rowsFor(op, backend).map((row) => [row.name, row] as const))('%s', (_, row) => checkRow(row, backend));
      });
    }

    it('moe_layer: few tokens were fragile, and the backend and the CPU chose differently only on those', () => {
      // every layer row ran to the end (a row the backend must refuse runs on the CPU, untallied)
      const rows = rowsFor('moe_layer', backend).filter((row) => !row.refusedOn?.[backend] || row.refusedOn[backend]?.optional);
      const tally = layerTally[backend];
      expect(tally.rows).toBe(rows.length);
      expect(tally.tokens).toBe(rows.reduce((sum, row) => sum + row.shape.tokens, 0));
      if (backend !== 'cpu') expect(tally.tokens).toBeGreaterThan(30000);
      expect(tally.fragile / tally.tokens).toBeLessThan(0.02);
      // every differing token was fragile (compareLayerWithCpu), so there cannot be more of them
      expect(tally.differing).toBeLessThanOrEqual(tally.fragile);
    });
  });
}

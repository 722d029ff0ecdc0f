// Runs one row of the parity table on one backend through the public API and checks it: against the float64
// reference always, and against the CPU backend (run on the same inputs) when the backend is not the CPU.
import { MoEForwardResult, MoELayer, MoELayerWeights, route, RoutingResult } from '../../lib';
import { expectDynamoeError, expectRejection, expectThrow } from '../helpers';
import { layerWeights, LayerSpec, makeInput, makeRawWeights, RawWeights, referenceWeights } from '../layer-fixtures';
import { makeScores, maxRelativeError, RefLayerWeights, Rng, toBitsArray } from '../reference';
import { Backend } from './backends';
import { bytes, compareLayerWithCpu, digest, expectIdenticalRouting } from './compare';
import { checkRouteAgainstReference } from '../route-checks';
import { checkLayerAgainstReference, fragileRoute, layerTolerance } from './reference-checks';
import { LayerRow, ParityRow, Refusal, RouteRow } from './table';

// The CPU layer is within 1e-4 of the reference (test 30): another backend is within its own bound + 1e-4 of it.
const CPU_TOLERANCE = 1e-4;

/** Fragile and differing tokens of the layer rows, per backend: the tally test holds them to "few, and only those". */
export interface Tally {
  rows: number;
  tokens: number;
  fragile: number;
  differing: number;
}
export const layerTally: Record<Backend, Tally> = {
  cpu: { rows: 0, tokens: 0, fragile: 0, differing: 0 },
  cuda: { rows: 0, tokens: 0, fragile: 0, differing: 0 },
};

/** Runs `row` on `backend` and checks it (jest expectations); rejects with the API's error when a call fails. */
export async function checkRow(row: ParityRow, backend: Backend): Promise<void> {
  switch (row.op) {
    case 'route':
      return checkRouteRow(row, backend);
    case 'moe_layer':
      return checkLayerRow(row, backend);
  }
}

/** The result of `run`, or undefined where it failed with the refusal the row allows; any other error is thrown. */
async function attempt<T>(run: () => Promise<T>, refusal: Refusal | undefined): Promise<T | undefined> {
  let result: T;
  try {
    result = await run();
  } catch (error) {
    if (!refusal || (error as { code?: unknown }).code !== refusal.code) throw error;
    expectDynamoeError(error, refusal.code, refusal.message);
    return undefined;
  }
  if (refusal && !refusal.optional) throw new Error(`it ran, but must refuse with ${refusal.code}`);
  return result;
}

// ---- route ------------------------------------------------------------------------------------------------------
export function routeScores(row: RouteRow): Float32Array {
  const { tokens, experts } = row.shape;
  if ('values' in row.scores) return Float32Array.from(row.scores.values);
  if ('normalStd' in row.scores) return new Rng(row.seed).normalArray(tokens * experts, row.scores.normalStd);
  return makeScores(new Rng(row.seed), row.scores.distribution, tokens, experts);
}

function runRoute(row: RouteRow, scores: Float32Array, device: Backend): Promise<RoutingResult> {
  return route(scores, { tokens: row.shape.tokens, experts: row.shape.experts, policy: row.policy, input: row.input, device });
}

async function checkRouteRow(row: RouteRow, backend: Backend): Promise<void> {
  const { tokens, experts } = row.shape;
  const scores = routeScores(row);
  const copy = scores.slice();
  const result = await attempt(() => runRoute(row, scores, backend), row.refusedOn?.[backend]);
  expect(bytes(scores).equals(bytes(copy))).toBe(true); // the caller's array is not modified
  if (!result) return;
  checkRouteAgainstReference(scores, tokens, experts, row.policy, row.input, result, fragileRoute);
  if (row.expected) {
    const { ids, weights } = row.expected;
    expect(result.kMax).toBe(experts);
    expect(Array.from(result.ids)).toEqual([...ids, ...new Array(experts - ids.length).fill(-1)]);
    expect(result.counts[0]).toBe(ids.length);
    weights.forEach((w, s) => expect(result.weights[s]).toBeCloseTo(w, 3));
    expect(Array.from(result.weights.subarray(ids.length))).toEqual(new Array(experts - ids.length).fill(0));
  }
  if (backend !== 'cpu') expectIdenticalRouting(result, await runRoute(row, scores, 'cpu'), scores, experts);
}

// ---- moe_layer --------------------------------------------------------------------------------------------------
export function layerSpec(row: LayerRow): LayerSpec {
  const { hidden, ffn, experts, shared, routerScale } = row.shape;
  return {
    hidden,
    ffn,
    experts,
    dtype: row.dtype,
    seed: row.weightSeed,
    ...(shared ? { shared } : {}),
    ...(routerScale === undefined ? {} : { routerScale }),
  };
}

interface Weights {
  raw: RawWeights;
  ref: RefLayerWeights;
}
// Rows on the same layer share its weights, their float64 copy and the built layers (rounding to f16/bf16 in JS,
// and uploads, are not free); disposeLayers() empties the cache.
const weightCache = new Map<string, Weights>();
const layerCache = new Map<string, MoELayer>();

function weightsOf(row: LayerRow): Weights & { spec: LayerSpec; key: string } {
  const spec = layerSpec(row);
  const key = JSON.stringify([spec, row.winners ?? null]);
  let entry = weightCache.get(key);
  if (!entry) {
    const raw = makeRawWeights(spec);
    if (row.winners) biasedRouter(raw, spec.experts, spec.hidden, new Map(row.winners));
    weightCache.set(key, (entry = { raw, ref: referenceWeights(spec, raw) }));
  }
  return { ...entry, spec, key };
}

/** A router whose listed experts always win on positive inputs (rows of `score`, the others -1). */
function biasedRouter(raw: RawWeights, experts: number, hidden: number, winners: Map<number, number>): void {
  for (let e = 0; e < experts; e++) {
    for (let h = 0; h < hidden; h++) raw.router[e * hidden + h] = (winners.get(e) ?? -1) + 0.01 * Math.sin(e + h);
  }
}

function layerOn(row: LayerRow, backend: Backend): MoELayer {
  const { raw, spec, key } = weightsOf(row);
  let layer = layerCache.get(`${backend} ${key}`);
  if (!layer) {
    layer = MoELayer.fromWeights(layerWeights(spec, raw), { device: backend });
    expect(layer.device).toBe(backend);
    layerCache.set(`${backend} ${key}`, layer);
  }
  return layer;
}

export function disposeLayers(): void {
  layerCache.forEach((layer) => layer.dispose());
  layerCache.clear();
  weightCache.clear();
}

export function layerInput(row: LayerRow): Float32Array {
  const { tokens, hidden } = row.shape;
  return row.winners ? new Rng(row.seed).uniformArray(tokens * hidden, 0.1, 1) : makeInput(row.seed, tokens, hidden);
}

async function forward(layer: MoELayer, row: LayerRow, x: Float32Array): Promise<MoEForwardResult> {
  return layer.forward(x, { tokens: row.shape.tokens, policy: row.policy });
}

async function checkLayerRow(row: LayerRow, backend: Backend, tallied = true): Promise<void> {
  const { raw, ref, spec } = weightsOf(row);
  const { tokens } = row.shape;
  const x = layerInput(row);
  const refusal = row.refusedOn?.[backend];
  if (refusal && !refusal.optional) {
    // a backend past its limits refuses the layer both ways, and the CPU still runs it
    const weights = layerWeights(spec, raw);
    expectThrow(() => MoELayer.fromWeights(weights, { device: backend }), refusal.code, refusal.message);
    await expectRejection(() => MoELayer.load(weights, { device: backend }), refusal.code, refusal.message);
    return checkLayerRow({ ...row, refusedOn: undefined }, 'cpu', false);
  }
  const layer = await attempt(async () => layerOn(row, backend), refusal);
  if (!layer) return;
  const xCopy = x.slice();
  const result = await forward(layer, row, x);
  expect(bytes(x).equals(bytes(xCopy))).toBe(true); // the input is not modified
  const fragile = checkLayerAgainstReference(backend, row.dtype, ref, x, tokens, row.policy, result);
  row.expectations?.(result, tokens);
  let differing = 0;
  if (backend !== 'cpu') {
    const cpu = await forward(layerOn(row, 'cpu'), row, x);
    const tolerance = layerTolerance(backend, row.dtype) + CPU_TOLERANCE;
    differing = compareLayerWithCpu(ref, x, tokens, row.policy, result, cpu, tolerance);
    if (row.sameIdsAsCpu) expect(Array.from(result.routing.ids)).toEqual(Array.from(cpu.routing.ids));
  }
  if (row.contrast) {
    // the same weights as an f32 layer on the same backend: the dtype really changes the arithmetic
    const f32 = MoELayer.fromWeights(layerWeights({ ...spec, dtype: 'f32' }, raw), { device: backend });
    const difference = maxRelativeError(result.output, (await forward(f32, row, x)).output);
    f32.dispose();
    expect(difference).toBeGreaterThan(row.contrast.min);
    expect(difference).toBeLessThan(row.contrast.max);
  }
  if (row.weightForms) await checkWeightForms(row, backend, raw, x, digest(result));
  if (!tallied) return;
  const tally = layerTally[backend];
  tally.rows++;
  tally.tokens += tokens;
  tally.fragile += fragile;
  tally.differing += differing;
}

/** f16/bf16 weights given as f32 values, Uint16Array bits or per-expert bit arrays build layers with the same bits. */
async function checkWeightForms(
  row: LayerRow,
  backend: Backend,
  raw: RawWeights,
  x: Float32Array,
  expected: object,
): Promise<void> {
  const { dtype } = row;
  if (dtype === 'f32') throw new Error(`${row.name}: weight forms are for f16/bf16 rows`);
  const { hidden, ffn, experts } = row.shape;
  const per = (a: Uint16Array) => a.length / experts;
  const split = (a: Uint16Array) => Array.from({ length: experts }, (_, e) => a.slice(e * per(a), (e + 1) * per(a)));
  const base = { hidden, ffn, experts, dtype, router: raw.router };
  const bits = { gate: toBitsArray(raw.gate, dtype), up: toBitsArray(raw.up, dtype), down: toBitsArray(raw.down, dtype) };
  const variants: MoELayerWeights[] = [
    { ...base, gate: raw.gate, up: raw.up, down: raw.down },
    { ...base, ...bits },
    { ...base, gate: split(bits.gate), up: split(bits.up), down: split(bits.down) },
  ];
  for (const weights of variants) {
    const layer = MoELayer.fromWeights(weights, { device: backend });
    expect(digest(await forward(layer, row, x))).toEqual(expected);
    layer.dispose();
  }
}

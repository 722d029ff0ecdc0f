// CUDA MoE-layer benchmark: kernel time of each stage (route, plan, grouped GEMM 1 + SwiGLU, grouped GEMM 2,
// finalize) from CUDA events, expert TFLOP/s, weight-streaming GB/s for decode, each as a fraction of the GPU's
// limits and next to the goals of the CUDA issue; top-p rows say what dynamic routing saves against top-k.
// Run with `npm run bench:cuda` (compiled to dist/bench) with the CUDA addon loaded:
//   npm run build:cuda && DYNAMOE_ADDON=build-cuda/Release/dynamoe.node npm run bench:cuda
// Without a usable GPU it prints why on one line and exits 0. Profiling with Nsight: cuda/PROFILING.md.
import { backendInfo, MoELayer, MoELayerWeights, route, RoutingPolicy, StageTimes } from '../lib';
import { policyLabel } from '../lib/policy/short-form';
import { SeededRandom } from '../lib/seeded-random';

interface Shape {
  name: string;
  hidden: number;
  ffn: number;
  experts: number;
  topK: number;
  /** Slot cap of the top-p policy: bounds the routing result and the GEMM scratch to tokens * maxExperts rows. */
  topPMaxExperts: number;
  /** Std of the router logits (unit-variance inputs): chosen so top-p 0.4 keeps about 1.5-3 experts per token. */
  routerLogitStd: number;
}

// Router std by simulation of iid Gaussian logits: E=8, std 1.0 -> top-p 0.4 keeps 1.75 experts per token on
// average (top-1 probability 0.36); E=128, std 2.5 -> 2.4 (top-1 0.33); E=256, std 2.75 -> about 2.6.
const SHAPES: Shape[] = [
  { name: 'Mixtral-8x7B-like', hidden: 4096, ffn: 14336, experts: 8, topK: 2, topPMaxExperts: 8, routerLogitStd: 1.0 },
  {
    name: 'Qwen3-30B-A3B-like',
    hidden: 2048,
    ffn: 768,
    experts: 128,
    topK: 8,
    topPMaxExperts: 16,
    routerLogitStd: 2.5,
  },
];
const TOP_P = 0.4;
const DECODE_TOKENS = [1, 2, 4, 8, 16, 32, 64];
const PREFILL_TOKENS = [256, 1024, 4096, 16384];
const DECODE_MAX_TOKENS = 64;

// Routing-only figure: the goal is route + plan <= 15 µs for 8192 tokens x 256 experts, top-8.
const ROUTING = {
  tokens: 8192,
  experts: 256,
  topK: 8,
  topPMaxExperts: 16,
  routerLogitStd: 2.75,
  hidden: 128,
  ffn: 128,
};

const GOALS = { routingUs: 15, decodeGBps: 2500, prefillTflops: 300 };
// Whole run (weights upload included) should stay under ~5 minutes on an H100; rows that would pass this are skipped.
const BUDGET_S = Number(process.env.DYNAMOE_BENCH_BUDGET_S ?? 270);
const BF16_BYTES = 2;

// ---- GPU limits: published peaks by GPU name (not measured: the addon has no device bandwidth/FLOP probe) -------
interface GpuLimits {
  label: string;
  /** HBM bandwidth, GB/s (1e9 bytes). */
  memoryGBps: number;
  /** Dense bf16 tensor-core peak, TFLOP/s. */
  bf16Tflops: number;
  /** L2 cache size: weights smaller than this may stay in L2 across the profiled runs. */
  l2Bytes: number;
  note: string;
}

const HOPPER_NOTE =
  'dense bf16 peak is the wgmma rate; these kernels use mma.sync, whose practical ceiling on Hopper is well below ' +
  '(commonly ~60-70% of it)';
const GPU_TABLE: Array<{ match: RegExp; limits: GpuLimits }> = [
  {
    match: /H200(?!.*NVL)/i,
    limits: { label: 'H200 SXM', memoryGBps: 4800, bf16Tflops: 989, l2Bytes: 50 * 2 ** 20, note: HOPPER_NOTE },
  },
  {
    match: /H100.*PCIe/i,
    limits: { label: 'H100 PCIe', memoryGBps: 2000, bf16Tflops: 756, l2Bytes: 50 * 2 ** 20, note: HOPPER_NOTE },
  },
  {
    match: /H100(?!.*(NVL|PCIe))/i,
    limits: { label: 'H100 SXM', memoryGBps: 3350, bf16Tflops: 989, l2Bytes: 50 * 2 ** 20, note: HOPPER_NOTE },
  },
  {
    match: /A100.*80GB/i,
    limits: {
      label: 'A100 80GB',
      memoryGBps: 2000,
      bf16Tflops: 312,
      l2Bytes: 40 * 2 ** 20,
      note: 'dense bf16 peak of mma.sync, the instruction these kernels use',
    },
  },
];

function gpuLimits(name: string): GpuLimits | undefined {
  return GPU_TABLE.find((entry) => entry.match.test(name))?.limits;
}

// ---- fast random data (xorshift32): weights for a 2.6 GiB layer in well under a second -------------------------
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) * 2.3283064365386963e-10; // [0, 1)
  };
}

/** `count` values uniform in [-amplitude, amplitude). */
function uniformF32(count: number, amplitude: number, seed: number): Float32Array {
  const next = xorshift(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (2 * next() - 1) * amplitude;
  return out;
}

/** `count` bf16 bit patterns of values uniform in [-amplitude, amplitude) (truncated, as good as rounded here). */
function uniformBf16(count: number, amplitude: number, seed: number): Uint16Array {
  const next = xorshift(seed);
  const out = new Uint16Array(count);
  const chunk = new Float32Array(1 << 16);
  const bits = new Uint32Array(chunk.buffer);
  for (let start = 0; start < count; start += chunk.length) {
    const n = Math.min(chunk.length, count - start);
    for (let i = 0; i < n; i++) chunk[i] = (2 * next() - 1) * amplitude;
    for (let i = 0; i < n; i++) out[start + i] = bits[i] >>> 16;
  }
  return out;
}

/**
 * bf16 weights for a layer: one random [ffn][hidden] matrix, reused as every expert's gate, up and down (down is
 * [hidden][ffn], the same element count). Each expert is still uploaded to its own GPU memory, and kernel time does
 * not depend on the values, so this only saves generating gigabytes of random numbers.
 */
function benchWeights(
  shape: { hidden: number; ffn: number; experts: number; routerLogitStd: number },
  seed: number,
): MoELayerWeights {
  const { hidden, ffn, experts } = shape;
  const matrix = uniformBf16(ffn * hidden, Math.sqrt(3 / Math.max(hidden, ffn)), seed);
  const perExpert = Array.from({ length: experts }, () => matrix);
  return {
    hidden,
    ffn,
    experts,
    dtype: 'bf16',
    // Unit-variance inputs give router logits with std routerLogitStd (iid across experts and tokens).
    router: new SeededRandom(seed + 1).normals(experts * hidden, shape.routerLogitStd / Math.sqrt(hidden)),
    gate: perExpert,
    up: perExpert,
    down: perExpert,
  };
}

/** Activations with unit variance (uniform: the router logits are sums of many terms, Gaussian all the same). */
function benchActivations(tokens: number, hidden: number, seed: number): Float32Array {
  return uniformF32(tokens * hidden, Math.sqrt(3), seed);
}

// ---- measuring --------------------------------------------------------------------------------------------------
interface Measured extends StageTimes {
  calls: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function clamp(value: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, value));
}

/**
 * Stage times: each stage's median over `calls` profile() calls, each the mean of `runs` runs after a warm-up.
 * A first short call sizes `runs` so that one call takes about `targetMs` of kernel time.
 */
async function profileMedian(
  layer: MoELayer,
  x: Float32Array,
  tokens: number,
  policy: RoutingPolicy,
  calls: number,
  targetMs: number,
  maxRuns: number,
): Promise<Measured> {
  const probe: StageTimes = await layer.profile(x, { tokens, policy, runs: 2 });
  const runs = clamp(Math.round((targetMs * 1e3) / Math.max(probe.totalUs, 1)), 2, maxRuns);
  const samples: StageTimes[] = [];
  for (let i = 0; i < calls; i++) samples.push(await layer.profile(x, { tokens, policy, runs }));
  const pick = (key: keyof StageTimes): number => median(samples.map((s) => s[key]));
  return {
    routeUs: pick('routeUs'),
    planUs: pick('planUs'),
    gemm1Us: pick('gemm1Us'),
    gemm2Us: pick('gemm2Us'),
    finalizeUs: pick('finalizeUs'),
    totalUs: pick('totalUs'),
    runs,
    calls,
  };
}

/** Routed (token, expert) pairs and experts with at least one token, from a forward on the same input. */
async function routedWork(
  layer: MoELayer,
  x: Float32Array,
  tokens: number,
  policy: RoutingPolicy,
): Promise<{ pairs: number; used: number }> {
  const { routing } = await layer.forward(x, { tokens, policy });
  return {
    pairs: routing.counts.reduce((a, b) => a + b, 0),
    used: routing.expertLoad.filter((load) => load > 0).length,
  };
}

// ---- printing ---------------------------------------------------------------------------------------------------
function table(widths: number[]): (cells: string[]) => void {
  return (cells) => console.log(cells.map((cell, i) => cell.padEnd(widths[i])).join(' ').trimEnd());
}

function us(value: number): string {
  return value >= 1000 ? value.toFixed(0) : value >= 100 ? value.toFixed(1) : value.toFixed(2);
}

function percent(value: number, limit: number | undefined): string {
  return limit === undefined ? 'n/a' : `${((100 * value) / limit).toFixed(0)}%`;
}

function label(policy: RoutingPolicy): string {
  return policyLabel(policy) + (policy.kind !== 'top-k' && policy.maxExperts ? `,max${policy.maxExperts}` : '');
}

function cudaVersion(version: number | undefined): string {
  return version ? `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}` : 'n/a';
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

function elapsedS(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

// ---- routing only -----------------------------------------------------------------------------------------------
async function benchRouting(): Promise<void> {
  const { tokens, experts, hidden, ffn } = ROUTING;
  const policies: RoutingPolicy[] = [
    { kind: 'top-k', k: ROUTING.topK, normalize: true },
    { kind: 'top-p', p: TOP_P, maxExperts: ROUTING.topPMaxExperts },
  ];
  console.log(
    `\nrouting only: ${tokens} tokens x ${experts} experts on a layer with hidden=${hidden} ffn=${ffn} bf16. ` +
      `route+plan = routeUs + planUs, nothing subtracted: routeUs also holds the input conversion and the fp32 ` +
      `router GEMM (${tokens}x${experts}x${hidden}, ${((2 * tokens * experts * hidden) / 1e9).toFixed(2)} GFLOP; ` +
      `hidden sizes are padded to 128 on the device, so no layer has a smaller one), so this is an upper bound on ` +
      `softmax + selection + plan.`,
  );
  const layer = await MoELayer.load(benchWeights(ROUTING, 3), { device: 'cuda' });
  const row = table([18, 9, 9, 9, 11, 12]);
  row(['policy', 'pairs/tok', 'route µs', 'plan µs', 'route+plan', `goal <= ${GOALS.routingUs} µs`]);
  try {
    const x = benchActivations(tokens, hidden, 5);
    for (const policy of policies) {
      const { pairs } = await routedWork(layer, x, tokens, policy);
      const t = await profileMedian(layer, x, tokens, policy, 9, 20, 500);
      const routing = t.routeUs + t.planUs;
      row([
        label(policy),
        (pairs / tokens).toFixed(2),
        us(t.routeUs),
        us(t.planUs),
        us(routing),
        policy.kind === 'top-k' ? (routing <= GOALS.routingUs ? 'ok' : 'MISS') : '-',
      ]);
    }
  } finally {
    layer.dispose();
  }
  // route() on the GPU from host logits: wall time of the call, copies and the Promise included (for scale only).
  const scores = new SeededRandom(9).normals(tokens * experts, ROUTING.routerLogitStd);
  const policy: RoutingPolicy = { kind: 'top-k', k: ROUTING.topK, normalize: true };
  await route(scores, { tokens, experts, policy, device: 'cuda' });
  const wall: number[] = [];
  for (let i = 0; i < 15; i++) {
    const start = process.hrtime.bigint();
    await route(scores, { tokens, experts, policy, device: 'cuda' });
    wall.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  console.log(
    `route(logits, { device: 'cuda' }) ${label(policy)}: ${us(median(wall))} µs wall per call (host copies of ` +
      `${((tokens * experts * 4) / 2 ** 20).toFixed(0)} MiB logits in and the result out, plus the Promise; ` +
      `not the goal's figure)`,
  );
}

// ---- one model shape --------------------------------------------------------------------------------------------
async function benchShape(
  shape: Shape,
  limits: GpuLimits | undefined,
  deadlineS: number,
  started: bigint,
): Promise<string[]> {
  const { hidden, ffn, experts } = shape;
  const skipped: string[] = [];
  const loadStart = process.hrtime.bigint();
  const layer = await MoELayer.load(benchWeights(shape, 17), { device: 'cuda' });
  const expertBytes = 3 * hidden * ffn * BF16_BYTES;
  const routerBytes = experts * hidden * 4;
  const policies: RoutingPolicy[] = [
    { kind: 'top-k', k: shape.topK, normalize: true },
    { kind: 'top-p', p: TOP_P, maxExperts: shape.topPMaxExperts },
  ];
  console.log(
    `\n${shape.name}: hidden=${hidden} ffn=${ffn} experts=${experts} bf16, ${label(policies[0])} and ` +
      `${label(policies[1])} (maxExperts caps the slots, so routing results and GEMM scratch stay tokens x ` +
      `${shape.topPMaxExperts}); GPU weights ${gib(layer.weightBytes)} (layer.weightBytes), uploaded in ` +
      `${elapsedS(loadStart).toFixed(1)} s`,
  );
  const row = table([6, 18, 7, 5, 8, 8, 9, 9, 8, 9, 7, 5, 8, 8, 5, 9, 7, 7]);
  row([
    'T', 'policy', 'pairs', 'used', 'route', 'plan', 'gemm1', 'gemm2', 'final', 'total µs',
    'TF/s', '%pk', 'gemmTF/s', 'GB/s', '%bw', 'goal', 't ratio', 'p ratio',
  ]);
  const maxTokens = PREFILL_TOKENS[PREFILL_TOKENS.length - 1];
  const xAll = benchActivations(maxTokens, hidden, 23);
  // Wall time of the last measured row per policy, to estimate (linearly in tokens) whether the next one fits.
  const last = new Map<string, { tokens: number; seconds: number }>();
  let l2Flag = false;
  try {
    for (const tokens of [...DECODE_TOKENS, ...PREFILL_TOKENS]) {
      const decode = tokens <= DECODE_MAX_TOKENS;
      const x = xAll.subarray(0, tokens * hidden);
      let base: { totalUs: number; pairs: number } | undefined;
      for (const policy of policies) {
        const name = label(policy);
        const previous = last.get(name);
        const estimateS = previous ? (previous.seconds * tokens) / previous.tokens : 0;
        const remainingS = deadlineS - elapsedS(started);
        if (estimateS > remainingS) {
          skipped.push(`${shape.name} T=${tokens} ${name}`);
          row([
            String(tokens),
            name,
            `skipped: ~${estimateS.toFixed(0)} s estimated, ${remainingS.toFixed(0)} s left of the budget`,
          ]);
          continue;
        }
        const rowStart = process.hrtime.bigint();
        const { pairs, used } = await routedWork(layer, x, tokens, policy);
        const t = decode
          ? await profileMedian(layer, x, tokens, policy, 7, 20, 200)
          : await profileMedian(layer, x, tokens, policy, 5, 100, 50);
        last.set(name, { tokens, seconds: elapsedS(rowStart) });

        const flops = 2 * pairs * 3 * hidden * ffn;
        const tflops = flops / (t.totalUs * 1e6);
        const gemmTflops = flops / ((t.gemm1Us + t.gemm2Us) * 1e6);
        const streamedBytes = used * expertBytes + routerBytes;
        const gbps = streamedBytes / (t.totalUs * 1e3);
        const inL2 = limits !== undefined && streamedBytes <= limits.l2Bytes;
        l2Flag ||= decode && inL2;
        const goal = decode
          ? gbps >= GOALS.decodeGBps ? 'ok' : 'MISS'
          : tflops >= GOALS.prefillTflops ? 'ok' : 'MISS';
        base ??= policy.kind === 'top-k' ? { totalUs: t.totalUs, pairs } : undefined;
        const ratios = policy.kind !== 'top-k' && base !== undefined;
        row([
          String(tokens),
          name,
          String(pairs),
          String(used),
          us(t.routeUs),
          us(t.planUs),
          us(t.gemm1Us),
          us(t.gemm2Us),
          us(t.finalizeUs),
          us(t.totalUs),
          tflops.toFixed(tflops >= 10 ? 0 : 2),
          percent(tflops, limits?.bf16Tflops),
          gemmTflops.toFixed(gemmTflops >= 10 ? 0 : 2),
          decode ? `${gbps.toFixed(0)}${inL2 ? '*' : ''}` : '-',
          decode ? percent(gbps, limits?.memoryGBps) : '-',
          goal,
          ratios ? (t.totalUs / base!.totalUs).toFixed(2) : '-',
          ratios ? (pairs / base!.pairs).toFixed(2) : '-',
        ]);
      }
    }
  } finally {
    layer.dispose();
  }
  if (l2Flag) {
    console.log(
      '* the experts this row streams fit in L2: profile() repeats the same input, so later runs may read them from ' +
        'L2 and GB/s can exceed what HBM delivers',
    );
  }
  return skipped;
}

// ---- main -------------------------------------------------------------------------------------------------------
async function main(): Promise<void> {
  const started = process.hrtime.bigint();
  const info = backendInfo();
  if (info.backend !== 'cuda' || info.gpu === undefined) {
    const why = `${info.cudaError ?? 'unknown'}: ${info.cudaErrorMessage ?? 'no CUDA device'}`;
    const how = info.cudaBuilt
      ? 'this binary has the CUDA kernels but found no usable GPU or driver'
      : 'to benchmark CUDA: `npm run build:cuda`, then ' +
        '`DYNAMOE_ADDON=build-cuda/Release/dynamoe.node npm run bench:cuda`';
    console.log(`bench:cuda skipped: backend is '${info.backend}', not 'cuda' (${why}); ${how}`);
    return;
  }
  const gpu = info.gpu;
  const limits = gpuLimits(gpu.name);
  console.log(
    `CUDA MoE layer: ${gpu.name} (sm ${gpu.computeCapability}, ${gpu.multiprocessors} SMs, ${gib(gpu.memoryBytes)}), ` +
      `CUDA runtime ${cudaVersion(info.cudaRuntimeVersion)}, driver ${cudaVersion(info.cudaDriverVersion)}, ` +
      `device code ${info.cudaArchitectures.join(' ')}`,
  );
  console.log(
    limits
      ? `GPU limits (published peaks for ${limits.label}, not measured: the addon has no device bandwidth probe): ` +
          `HBM ${(limits.memoryGBps / 1000).toFixed(2)} TB/s, dense bf16 ${limits.bf16Tflops} TFLOP/s (${limits.note})`
      : `GPU limits: n/a (no published peaks in the table for '${gpu.name}'; add it to GPU_TABLE)`,
  );
  console.log(
    `goals (issue): route+plan <= ${GOALS.routingUs} µs at 8192 tokens x 256 experts; decode (T <= ` +
      `${DECODE_MAX_TOKENS}) weight streaming >= ${(GOALS.decodeGBps / 1000).toFixed(1)} TB/s; prefill >= ` +
      `${GOALS.prefillTflops} TFLOP/s`,
  );
  console.log(
    'µs: kernel time per stage from CUDA events (layer.profile: mean over runs after a warm-up, host copies ' +
      'excluded), median of 5-9 profile() calls per row, each stage its own median. route includes the input ' +
      'conversion and the router GEMM; total runs from the first stage start to the last stage end (forwards too ' +
      'big for the scratch run in several passes). pairs: routed (token, expert) pairs; used: experts with ' +
      'load > 0. ' +
      'TF/s = 2*pairs*3*H*F / total (useful FLOPs, tile padding not counted), gemmTF/s the same over gemm1+gemm2. ' +
      'GB/s (decode) = (used*3*H*F*2 + router E*H*4 bytes) / total. %pk, %bw: of the peaks above. goal: decode ' +
      'rows against GB/s, prefill rows against TF/s. t ratio, p ratio: total time and pairs of top-p over top-k.',
  );
  console.log(`budget: rows estimated to end after ${BUDGET_S} s are skipped (DYNAMOE_BENCH_BUDGET_S to change)`);

  await benchRouting();
  const skipped: string[] = [];
  for (let i = 0; i < SHAPES.length; i++) {
    // Each shape gets an equal share of what is left, so a slow first shape cannot starve the second.
    const now = elapsedS(started);
    const deadline = now + (BUDGET_S - now) / (SHAPES.length - i);
    skipped.push(...(await benchShape(SHAPES[i], limits, deadline, started)));
  }
  if (skipped.length > 0) {
    console.log(
      `\n${skipped.length} rows skipped to stay within ${BUDGET_S} s (largest token counts go first): ` +
        skipped.join('; '),
    );
  }
  console.log(
    `\npeak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB, wall ${elapsedS(started).toFixed(0)} s`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

// MoE-layer benchmark: ms per layer, GFLOP/s on the expert GEMMs and GB/s of expert weights read, each also as a
// fraction of this machine's measured limits (roofline probe); the peers on the same weights — ONNX Runtime's fused
// CPU MoE op (f32), llama.cpp's MoE share of a one-layer model (f32, bf16) and, where a Python with torch is
// installed, PyTorch's bf16 layer on oneDNN — in interleaved runs, medians, ratio peer/dynamoe; and what dynamic
// routing saves (top-p vs top-2).
// Run with `npm run bench` (compiled to dist/bench); `npm run bench:peers` installs the peers first.
// BENCH_SHAPES=small keeps only the H=1024 shapes.
import { cpuInfo, CpuIsa, MoELayer, RoutingPolicy, setCpuIsa } from '../lib';
import { DType } from '../lib/dtype';
import { measureRoofline } from '../lib/backend/internals';
import { policyLabel } from '../lib/policy/short-form';
import { syntheticActivations, syntheticLayerWeights } from '../lib/layer/synthetic-layer';
import { maxRelativeError } from '../test/reference/layer';
import { createLlamaCppMoe, LlamaCppMoe } from './llama-cpp-moe-peer';
import { createOrtMoeLayer, OrtMoeLayer } from './onnx-moe-peer';
import { createTorchMoeLayer, TorchMoeLayer } from './torch-moe-peer';
import { quantile, timeMs } from './timing';

interface Shape {
  hidden: number;
  ffn: number;
  tokens: number[];
}

const EXPERTS = 8;
const INPUT_BATCHES = 8;
// BENCH_SHAPES=small: hidden 1024 only; BENCH_SHAPES=large: hidden 2048 only; unset: both.
const SHAPES: Shape[] = [
  ...(process.env.BENCH_SHAPES === 'large' ? [] : [{ hidden: 1024, ffn: 2816, tokens: [1, 16, 256, 512] }]),
  ...(process.env.BENCH_SHAPES === 'small' ? [] : [{ hidden: 2048, ffn: 5632, tokens: [256, 512] }]),
];
const TOP2: RoutingPolicy = { kind: 'top-k', k: 2, normalize: true };
const TOP_P: RoutingPolicy = { kind: 'top-p', p: 0.4 };

/** A run's time as the runner measured it itself: a peer in another process, whose pipe round trip is not its time. */
function selfTimedMs(result: unknown): number | undefined {
  return typeof result === 'object' && result !== null && 'ms' in result && typeof result.ms === 'number' ? result.ms : undefined;
}

/**
 * ms of the runs of each runner, the runners taking turns so drifting machine load hits them alike. A turn is
 * `block` timed runs after block / 4 (at least one) untimed ones: a peer's threads still spinning from its last
 * turn would otherwise be charged to whoever runs next (it matters for the short decode runs).
 */
async function interleavedTimes(runners: Array<() => Promise<unknown>>, turns: number, block: number): Promise<number[][]> {
  const times: number[][] = runners.map(() => []);
  for (let turn = 0; turn < turns; turn++) {
    for (let r = 0; r < runners.length; r++) {
      for (let i = 0; i < Math.max(1, block >> 2); i++) await runners[r]();
      for (let i = 0; i < block; i++) {
        let result: unknown;
        const wallMs = await timeMs(async () => (result = await runners[r]()));
        times[r].push(selfTimedMs(result) ?? wallMs);
      }
    }
  }
  return times;
}

const COLUMNS = [
  ['dtype', 8], ['hidden', 6], ['ffn', 5], ['tokens', 6], ['policy', 14], ['pairs', 7], ['ms', 8], ['GFLOP/s', 8],
  ['%peak', 6], ['weight GB/s', 12], ['%read', 6], ['ORT ms', 8], ['ORT/dynamoe', 12], ['llama.cpp ms', 13],
  ['llama/dynamoe', 14], ['PyTorch ms', 11], ['torch/dynamoe', 14], ['time ratio', 11],
  ['pairs ratio', 0],
] as const;
const row = (cells: string[]) => cells.map((cell, i) => cell.padEnd(COLUMNS[i][1])).join(' ');

async function main(): Promise<void> {
  const info = cpuInfo();
  const roofline = await measureRoofline();
  console.log(
    `machine limits (${roofline.threads} threads): fp32 FMA ${roofline.fmaGflops.toFixed(0)} GFLOP/s ` +
      `(${roofline.isa}), memory read ${roofline.readGBps.toFixed(1)} GB/s`,
  );
  if (roofline.bf16DotGflops > 0) console.log(`bf16 dot products (AVX512_BF16): ${roofline.bf16DotGflops.toFixed(0)} GFLOP/s`);
  console.log(`MoE layer, ${EXPERTS} experts, SwiGLU, ${info.threads} threads, ${info.isa} kernels`);
  // On CPUs with AVX512_BF16, bf16 layers also run on the family the default passed over: the 'avx512bf16' kernels
  // (bf16 dot products on activations rounded to bf16) as dtype "bf16dot", or where those are the default, the
  // 'avx512' kernels (bf16 widened exactly to f32) as "bf16wide". bf16 on dot products is held to the bf16
  // dot-product peak, everything else to the FMA peak.
  const variants: Array<{ dtype: DType; isa: CpuIsa; label: string }> = [
    { dtype: 'f32', isa: info.isa, label: 'f32' },
    { dtype: 'bf16', isa: info.isa, label: 'bf16' },
  ];
  if (info.isa === 'avx512bf16') variants.push({ dtype: 'bf16', isa: 'avx512', label: 'bf16wide' });
  else if (info.supportedIsas.includes('avx512bf16')) variants.push({ dtype: 'bf16', isa: 'avx512bf16', label: 'bf16dot' });
  console.log('ORT: onnxruntime-node, com.microsoft.MoE (fused SwiGLU, f32 only), top-2 renormalised; same weights');
  console.log(
    'llama.cpp: node-llama-cpp CPU, MoE share = one-layer model minus the same model with tiny experts ' +
      '(lower quartiles of interleaved runs; every other figure is a median); "noise": the difference came out ' +
      'below the time to read the experts at the measured bandwidth',
  );
  console.log('PyTorch: bench/torch-moe-peer.py, bf16 only (oneDNN matmuls), top-2 renormalised; same weights');
  console.log('time ratio / pairs ratio: top-p 0.4 against top-2 (dynamic routing should cost what it uses)');
  console.log(row(COLUMNS.map(([name]) => name)));
  let ortMissing: string | undefined;
  let llamaMissing: string | undefined;
  let torchMissing: string | undefined;
  for (const { dtype, isa, label } of variants) {
    setCpuIsa(isa);
    const peakGflops = isa === 'avx512bf16' && dtype === 'bf16' ? roofline.bf16DotGflops : roofline.fmaGflops;
    for (const shape of SHAPES) {
      const weights = syntheticLayerWeights({ ...shape, experts: EXPERTS, dtype, routerLogitStd: 2.5 }, 7);
      const layer = await MoELayer.load(weights);
      let ort: OrtMoeLayer | undefined;
      if (dtype === 'f32' && ortMissing === undefined) {
        const created = await createOrtMoeLayer(weights, 2, info.threads);
        if ('missing' in created) ortMissing = created.missing;
        else ort = created;
      }
      let llama: LlamaCppMoe | undefined;
      if (llamaMissing === undefined) {
        const created = await createLlamaCppMoe(weights, dtype, info.threads, Math.max(...shape.tokens));
        if ('missing' in created) llamaMissing = created.missing;
        else llama = created;
      }
      let torch: TorchMoeLayer | undefined;
      if (dtype === 'bf16' && torchMissing === undefined) {
        const created = await createTorchMoeLayer(weights, 2, info.threads);
        if ('missing' in created) torchMissing = created.missing;
        else torch = created;
      }
      for (const tokens of shape.tokens) {
        // Several batches, cycled: decode steps pick different experts, as real tokens do, instead of re-reading
        // two experts' weights that the last-level cache may still hold.
        const batches = Array.from({ length: INPUT_BATCHES }, (_, i) => syntheticActivations(tokens, shape.hidden, 11 + i));
        // Short runs: 6 turns of 20 runs; long ones: turns of one run.
        const [turns, block] = tokens < 64 ? [6, 20] : [shape.hidden > 1024 ? 5 : 8, 1];
        await torch?.setInputs(batches, tokens);
        let base: { ms: number; pairs: number } | undefined;
        for (const policy of [TOP2, TOP_P]) {
          let pairsTotal = 0;
          let expertsUsedTotal = 0;
          for (const x of batches) {
            const { routing } = await layer.forward(x, { tokens, policy });
            pairsTotal += routing.counts.reduce((a, b) => a + b, 0);
            // Each expert that got a token has its three matrices read at least once.
            expertsUsedTotal += routing.expertLoad.filter((load) => load > 0).length;
          }
          const pairs = pairsTotal / batches.length;
          let next = 0;
          let nextOrt = 0;
          let nextTorch = 0;
          const runDynamoe = () => layer.forward(batches[next++ % batches.length], { tokens, policy });
          const peer = policy === TOP2 ? ort : undefined;
          const torchPeer = policy === TOP2 ? torch : undefined;
          const ours = peer || torchPeer ? (await layer.forward(batches[0], { tokens, policy })).output : new Float32Array();
          const agreement = (theirs: Float32Array) => ` (max diff ${maxRelativeError(theirs, ours).toExponential(0)})`;
          const ortAgreement = peer ? agreement(await peer.forward(batches[0], tokens)) : '';
          const torchAgreement = torchPeer ? agreement(await torchPeer.output(0)) : '';
          const runners: Array<() => Promise<unknown>> = [runDynamoe];
          const ortIndex = peer ? runners.push(() => peer.forward(batches[nextOrt++ % batches.length], tokens)) - 1 : -1;
          const llamaPeer = policy === TOP2 ? llama : undefined;
          const llamaIndex = llamaPeer ? runners.push(() => llamaPeer.runFull(tokens), () => llamaPeer.runTiny(tokens)) - 2 : -1;
          const torchIndex = torchPeer ? runners.push(() => torchPeer.forward(nextTorch++ % batches.length)) - 1 : -1;
          const times = await interleavedTimes(runners, turns, block);
          const ms = quantile(times[0], 0.5);
          const ortMs = peer ? quantile(times[ortIndex], 0.5) : undefined;
          const torchMs = torchPeer ? quantile(times[torchIndex], 0.5) : undefined;
          // Lower quartiles for llama.cpp: its small runs often stall 4-30 ms (its threads going to sleep), which
          // would inflate the tiny-expert baseline; the quartile keeps the stalls out and can only favour the peer.
          const llamaMs = llamaPeer
            ? quantile(times[llamaIndex], 0.25) - quantile(times[llamaIndex + 1], 0.25)
            : undefined;
          const gflops = ((2 * pairs * 3 * shape.hidden * shape.ffn) / 1e9 / ms) * 1e3;
          const expertBytes = 3 * shape.hidden * shape.ffn * (dtype === 'f32' ? 4 : 2);
          const weightGB = ((expertsUsedTotal / batches.length) * expertBytes) / 1e9;
          const weightGBps = (weightGB / ms) * 1e3;
          // A llama.cpp share shorter than reading (about) the same experts' weights at the measured bandwidth is
          // noise in the difference of two runs, not a time.
          const llamaResolved = llamaMs !== undefined && llamaMs > (0.8 * weightGB * 1e3) / roofline.readGBps;
          base ??= { ms, pairs };
          console.log(
            row([
              label,
              String(shape.hidden),
              String(shape.ffn),
              String(tokens),
              policyLabel(policy),
              pairs.toFixed(1),
              ms.toFixed(2),
              gflops.toFixed(1),
              `${((100 * gflops) / peakGflops).toFixed(0)}%`,
              weightGBps.toFixed(1),
              `${((100 * weightGBps) / roofline.readGBps).toFixed(0)}%`,
              ortMs === undefined ? '-' : ortMs.toFixed(2),
              ortMs === undefined ? '-' : `${(ortMs / ms).toFixed(2)}x${ortAgreement}`,
              llamaMs === undefined ? '-' : llamaResolved ? llamaMs.toFixed(2) : `(${llamaMs.toFixed(2)})`,
              llamaMs === undefined ? '-' : llamaResolved ? `${(llamaMs / ms).toFixed(2)}x` : 'noise',
              torchMs === undefined ? '-' : torchMs.toFixed(2),
              torchMs === undefined ? '-' : `${(torchMs / ms).toFixed(2)}x${torchAgreement}`,
              (ms / base.ms).toFixed(2),
              (pairs / base.pairs).toFixed(2),
            ]),
          );
        }
      }
      await ort?.release();
      await llama?.release();
      await torch?.release();
      layer.dispose();
    }
  }
  setCpuIsa(info.isa);
  if (ortMissing) console.log(`ONNX Runtime not measured: ${ortMissing}`);
  if (llamaMissing) console.log(`llama.cpp not measured: ${llamaMissing}`);
  if (torchMissing) console.log(`PyTorch not measured: ${torchMissing}`);
  console.log(
    `peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB (dynamoe, ONNX Runtime and llama.cpp in this process; ` +
      'PyTorch runs in its own)',
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
